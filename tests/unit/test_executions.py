"""The execution store on the table template.yaml defines (moto): records survive the round trip, expire
by TTL, are listed per flow newest first (chunks excluded), and cursors cannot be forged."""

import base64
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import boto3
import pytest
from botocore.stub import Stubber

from hilos_runner import factories
from hilos_runner.errors import DependencyUnavailableError, InvalidRequestError
from hilos_runner.execution_records import ExecutionCounters, ExecutionRecord, Resolution, RunSource, RunStatus
from hilos_runner.execution_store import SYNC_SHARDS, ExecutionStore
from tests.helpers import FLOW_ID, HILOS_EXECUTION_ID
from tests.helpers import execution_record as record

OTHER_FLOW_ID = UUID("0d6f3b0e-86a1-4f4f-9a2e-5b7d1c2e3f40")
CREATED_AT = datetime(2024, 1, 1, 12, 30, 15, 250_000, tzinfo=UTC)


@pytest.fixture
def table(aws: Any) -> str:
    return str(aws.physical_ids["ExecutionsTable"])


@pytest.fixture
def store(table: str) -> ExecutionStore:
    return ExecutionStore(boto3.client("dynamodb"), table, ttl_days=7)


@pytest.fixture
def stubbed() -> Iterator[tuple[ExecutionStore, Stubber]]:
    """A store whose client answers only what the test queues (no AWS, not even moto)."""
    client = boto3.client("dynamodb")
    with Stubber(client) as stubber:
        yield ExecutionStore(client, "executions", ttl_days=7), stubber


def raw_item(table: str, run_id: UUID | str) -> dict[str, Any]:
    item: dict[str, Any] = boto3.client("dynamodb").get_item(TableName=table, Key={"run_id": {"S": str(run_id)}})[
        "Item"
    ]
    return item


def cursor_of(key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


# --- records --------------------------------------------------------------------------------------


def test_a_full_record_survives_the_round_trip(store: ExecutionStore):
    original = record(
        source=RunSource.QUEUE,
        status=RunStatus.REJECTED,
        num_contacts=250,
        idempotency_key="order-42#3",
        hilos_execution_id=HILOS_EXECUTION_ID,
        hilos_status="PROCESSING",
        attempts=3,
        last_error="Hilos rejected the run (HTTP 400): contact_list.0.phone: Enter a valid phone number.",
        parent_id=uuid4(),
        chunk_index=2,
        created_at=CREATED_AT,
        updated_at=CREATED_AT + timedelta(seconds=3),
    )

    store.put(original)

    assert store.get(original.run_id) == original


def test_a_minimal_record_survives_the_round_trip(store: ExecutionStore):
    original = record(status=RunStatus.QUEUED, created_at=CREATED_AT)
    store.put(original)
    assert store.get(original.run_id) == original


def test_an_unknown_run_is_none(store: ExecutionStore):
    assert store.get(uuid4()) is None


def test_items_are_flat_strings_and_numbers_without_empty_attributes(store: ExecutionStore, table: str):
    original = record(num_contacts=3, attempts=2, created_at=CREATED_AT)
    store.put(original)

    item = raw_item(table, original.run_id)

    assert item["num_contacts"] == {"N": "3"}
    assert item["attempts"] == {"N": "2"}
    assert item["flow_id"] == {"S": FLOW_ID}
    assert item["created_at"]["S"].startswith("2024-01-01T12:30:15.25")
    assert "last_error" not in item  # None is left out, not stored as an empty or NULL attribute
    assert "parent_id" not in item


def test_expires_at_is_created_at_plus_the_ttl_in_epoch_seconds(store: ExecutionStore, table: str):
    original = record(created_at=CREATED_AT, updated_at=CREATED_AT + timedelta(days=3))
    store.put(original)

    expires_at = int(raw_item(table, original.run_id)["expires_at"]["N"])

    assert expires_at == int((CREATED_AT + timedelta(days=7)).timestamp())


def test_the_deployed_store_uses_record_ttl_days_from_the_template(aws: Any, table: str):
    # The `aws` fixture gives the function the environment template.yaml gives it (RecordTtlDays).
    days = int(aws.function_environment("RunApiFunction")["RECORD_TTL_DAYS"])
    original = record(created_at=CREATED_AT)

    factories.execution_store().put(original)

    assert int(raw_item(table, original.run_id)["expires_at"]["N"]) == int(
        (CREATED_AT + timedelta(days=days)).timestamp()
    )


def test_only_top_level_runs_carry_listed_flow_id(store: ExecutionStore, table: str):
    parent = record(created_at=CREATED_AT)
    chunk = record(parent_id=parent.run_id, chunk_index=0, created_at=CREATED_AT + timedelta(seconds=1))
    store.put(parent)
    store.put(chunk)

    assert raw_item(table, parent.run_id)["listed_flow_id"] == {"S": FLOW_ID}
    assert "listed_flow_id" not in raw_item(table, chunk.run_id)
    assert [r.run_id for r in store.list_for_flow(UUID(FLOW_ID), limit=10, cursor=None).items] == [parent.run_id]


# --- listing and cursors --------------------------------------------------------------------------


@pytest.fixture
def five_runs(store: ExecutionStore) -> list[ExecutionRecord]:
    runs = [record(num_contacts=n + 1, created_at=CREATED_AT + timedelta(minutes=n)) for n in range(5)]
    for run in runs:
        store.put(run)
    store.put(record(flow_id=OTHER_FLOW_ID, created_at=CREATED_AT + timedelta(minutes=9)))
    return runs


def test_runs_of_a_flow_page_newest_first_and_the_cursor_round_trips(
    store: ExecutionStore, five_runs: list[ExecutionRecord]
):
    pages = []
    cursor = None
    for _ in range(5):  # bounded: three pages are expected
        page = store.list_for_flow(UUID(FLOW_ID), limit=2, cursor=cursor)
        pages.append(page)
        cursor = page.next_cursor
        if cursor is None:
            break

    assert [len(page.items) for page in pages] == [2, 2, 1]
    assert [r.run_id for page in pages for r in page.items] == [r.run_id for r in reversed(five_runs)]
    assert all(isinstance(page.next_cursor, str) and "=" not in page.next_cursor for page in pages[:-1])


def test_a_cursor_of_another_flow_is_refused(store: ExecutionStore, five_runs: list[ExecutionRecord]):
    cursor = store.list_for_flow(UUID(FLOW_ID), limit=2, cursor=None).next_cursor
    assert cursor

    with pytest.raises(InvalidRequestError) as info:
        store.list_for_flow(OTHER_FLOW_ID, limit=2, cursor=cursor)

    assert info.value.details == [{"field": "query.cursor", "reason": "not a cursor returned by this listing"}]


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64 at all!",
        "bm90LWEtY3Vyc29y",  # base64 of "not-a-cursor"
        cursor_of(["listed_flow_id", FLOW_ID]),
        cursor_of({"listed_flow_id": FLOW_ID}),  # not in DynamoDB's attribute-value shape
        cursor_of({"listed_flow_id": {"S": str(OTHER_FLOW_ID)}, "run_id": {"S": str(uuid4())}}),
        base64.urlsafe_b64encode(b"\xff\xfe\x00").decode(),
        cursor_of({"listed_flow_id": {"S": FLOW_ID}}),  # an incomplete key
    ],
    ids=["not base64", "not json", "json list", "wrong shape", "other flow", "not utf-8", "incomplete key"],
)
def test_a_forged_cursor_is_refused_before_dynamodb_is_asked(stubbed: tuple[ExecutionStore, Stubber], cursor: str):
    store, _ = stubbed  # nothing queued: a DynamoDB call would raise the stubber's error, not this one
    with pytest.raises(InvalidRequestError) as info:
        store.list_for_flow(UUID(FLOW_ID), limit=2, cursor=cursor)

    assert info.value.details[0]["field"] == "query.cursor"


def test_a_cursor_dynamodb_refuses_is_an_invalid_request(stubbed: tuple[ExecutionStore, Stubber]):
    store, stubber = stubbed
    # The right shape and flow, but not a key DynamoDB issued.
    forged = cursor_of({"listed_flow_id": {"S": FLOW_ID}, "run_id": {"S": "x"}, "created_at": {"S": "y"}})
    stubber.add_client_error("query", "ValidationException", "The provided starting key is invalid")

    with pytest.raises(InvalidRequestError) as info:
        store.list_for_flow(UUID(FLOW_ID), limit=2, cursor=forged)

    assert info.value.details[0]["field"] == "query.cursor"


@pytest.mark.parametrize(
    ("operation", "code", "call"),
    [
        ("put_item", "ProvisionedThroughputExceededException", lambda s: s.put(record())),
        ("get_item", "ResourceNotFoundException", lambda s: s.get(uuid4())),
        ("query", "ThrottlingException", lambda s: s.list_for_flow(UUID(FLOW_ID), limit=1, cursor=None)),
        ("query", "ValidationException", lambda s: s.list_for_flow(UUID(FLOW_ID), limit=1, cursor=None)),
    ],
)
def test_dynamodb_failures_are_dependency_failures_naming_the_operation(
    stubbed: tuple[ExecutionStore, Stubber], operation: str, code: str, call: Any
):
    store, stubber = stubbed
    stubber.add_client_error(operation, code)

    with pytest.raises(DependencyUnavailableError) as info:
        call(store)

    assert operation in info.value.message
    assert code in info.value.message
    assert info.value.retryable


def test_timestamps_are_stored_fixed_width_so_the_index_sorts_them_in_time_order():
    from datetime import UTC, datetime

    from hilos_runner.execution_records import ExecutionRecord, RunSource, RunStatus

    whole_second = datetime(2026, 1, 2, 3, 4, 15, tzinfo=UTC)
    later = datetime(2026, 1, 2, 3, 4, 15, 500_000, tzinfo=UTC)
    stored = [
        ExecutionRecord(
            flow_id=UUID(FLOW_ID), source=RunSource.API, status=RunStatus.QUEUED, num_contacts=1, created_at=moment
        ).model_dump(mode="json")["created_at"]
        for moment in (whole_second, later)
    ]
    assert stored == ["2026-01-02T03:04:15.000000Z", "2026-01-02T03:04:15.500000Z"]
    assert sorted(stored) == stored


# --- the status sync's index -----------------------------------------------------------------------------


def test_synced_fields_and_counters_survive_the_round_trip_as_a_map_of_numbers(store: ExecutionStore, table: str):
    original = record(
        status=RunStatus.RUNNING,
        hilos_execution_id=HILOS_EXECUTION_ID,
        hilos_status="PAUSED",
        counters=ExecutionCounters(running=3, completed=2, failed=1),
        synced_at=CREATED_AT,
        next_sync_at=CREATED_AT + timedelta(minutes=1),
        sync_error="Hilos is unavailable (HTTP 503)",
        created_at=CREATED_AT,
    )
    store.put(original)

    assert store.get(original.run_id) == original
    assert raw_item(table, original.run_id)["counters"] == {
        "M": {name: {"N": str(value)} for name, value in original.counters.model_dump().items()}  # type: ignore[union-attr]
    }


@pytest.mark.parametrize(
    ("fields", "pending"),
    [
        ({"status": RunStatus.SUBMITTED, "hilos_execution_id": HILOS_EXECUTION_ID}, True),
        ({"status": RunStatus.RUNNING, "hilos_execution_id": HILOS_EXECUTION_ID}, True),
        ({"status": RunStatus.COMPLETED, "hilos_execution_id": HILOS_EXECUTION_ID}, True),  # event not yet out
        (
            {"status": RunStatus.CANCELED, "hilos_execution_id": HILOS_EXECUTION_ID, "event_published_at": CREATED_AT},
            False,
        ),
        ({"status": RunStatus.SUBMITTED}, False),  # Hilos' answer had no id: nothing to read
        ({"status": RunStatus.UNKNOWN}, True),  # answer lost: reconciliation looks it up
        ({"status": RunStatus.SENDING}, True),  # ... as it does for a writer that stopped before recording it
        ({"status": RunStatus.QUEUED, "resolution": Resolution.RESENT}, True),  # known not started: to resend
        ({"status": RunStatus.QUEUED}, False),
        ({"status": RunStatus.FAILED}, False),
        # A bulk run's parent: followed until every chunk is done, then until its event is out.
        ({"status": RunStatus.QUEUED, "num_chunks": 3}, True),
        ({"status": RunStatus.IN_PROGRESS, "num_chunks": 3}, True),
        ({"status": RunStatus.COMPLETED_WITH_ERRORS, "num_chunks": 3}, True),
        ({"status": RunStatus.COMPLETED_WITH_ERRORS, "num_chunks": 3, "event_published_at": CREATED_AT}, False),
    ],
)
def test_only_records_the_sync_still_has_work_on_are_in_its_index(
    store: ExecutionStore, table: str, fields: dict[str, Any], pending: bool
):
    original = record(**fields, synced_at=CREATED_AT, next_sync_at=CREATED_AT, created_at=CREATED_AT)
    store.put(original)

    item = raw_item(table, original.run_id)

    assert ("sync_pending" in item) is pending
    assert ("next_sync_at" in item) is pending
    assert [found.run_id for found in store.due_for_sync(CREATED_AT, limit=10)] == (
        [original.run_id] if pending else []
    )


def test_due_records_come_longest_overdue_first_up_to_the_limit_and_not_before_their_time(store: ExecutionStore):
    due_times = [CREATED_AT + timedelta(seconds=offset) for offset in (30, 10, 20, 90)]
    records = [
        record(hilos_execution_id=HILOS_EXECUTION_ID, next_sync_at=due, created_at=CREATED_AT) for due in due_times
    ]
    store.put_many(records)
    now = CREATED_AT + timedelta(seconds=60)

    assert [r.next_sync_at for r in store.due_for_sync(now, limit=10)] == sorted(due_times[:3])
    assert [r.next_sync_at for r in store.due_for_sync(now, limit=2)] == sorted(due_times[:3])[:2]


def test_pending_records_spread_over_the_index_shards_and_come_back_merged_oldest_due_first(
    store: ExecutionStore, table: str
):
    due_times = [CREATED_AT + timedelta(seconds=offset) for offset in range(40)]
    records = [
        record(hilos_execution_id=HILOS_EXECUTION_ID, next_sync_at=due, created_at=CREATED_AT) for due in due_times
    ]
    store.put_many(records)

    shards = {raw_item(table, r.run_id)["sync_pending"]["S"] for r in records}
    assert shards == {f"PENDING#{shard}" for shard in range(SYNC_SHARDS)}  # 40 random ids: every shard used
    assert [r.next_sync_at for r in store.due_for_sync(CREATED_AT + timedelta(hours=1), limit=25)] == due_times[:25]


def test_the_body_sent_to_hilos_is_kept_whole_beside_the_record_and_not_listed(store: ExecutionStore, table: str):
    sending = record(status=RunStatus.SENDING, created_at=CREATED_AT, next_sync_at=CREATED_AT)
    body = json.dumps(
        {"contact_list": [{"phone": f"+52155{n:08d}", "meta": {"k": os.urandom(400).hex()}} for n in range(900)]}
    )
    assert len(body) > 700_000  # incompressible hex: kept over several items under DynamoDB's 400 KB limit

    store.put_with_request(sending, body.encode(), timedelta(hours=1))

    assert store.request_body(sending.run_id) == body.encode()
    assert store.get(sending.run_id) == sending
    assert store.request_body(uuid4()) is None
    assert [r.run_id for r in store.due_for_sync(CREATED_AT, limit=10)] == [sending.run_id]  # no body item listed
    store.put_with_request(sending, body.encode(), timedelta(hours=-1))  # kept too long ago: expired
    assert store.request_body(sending.run_id) is None


def test_replace_if_unchanged_refuses_a_write_based_on_an_older_read(store: ExecutionStore):
    seen = record(hilos_execution_id=HILOS_EXECUTION_ID, created_at=CREATED_AT, updated_at=CREATED_AT)
    store.put(seen)
    first = seen.model_copy(update={"status": RunStatus.RUNNING, "updated_at": CREATED_AT + timedelta(seconds=1)})
    second = seen.model_copy(update={"status": RunStatus.COMPLETED, "updated_at": CREATED_AT + timedelta(seconds=2)})

    assert store.replace_if_unchanged(first, seen) is True
    assert store.replace_if_unchanged(second, seen) is False
    stored = store.get(seen.run_id)
    assert stored is not None
    assert (stored.status, stored.updated_at) == (first.status, first.updated_at)


def test_a_finished_runs_contact_outcomes_are_kept_for_the_records_lifetime_and_not_listed(
    store: ExecutionStore, table: str
):
    finished = record(status=RunStatus.COMPLETED, hilos_execution_id=HILOS_EXECUTION_ID, created_at=datetime.now(UTC))
    outcomes = json.dumps([{"phone": f"+52155{n:08d}", "meta": {"k": os.urandom(300).hex()}} for n in range(1000)])
    assert len(outcomes) > 400_000  # over DynamoDB's item limit: kept in parts

    assert store.contact_outcomes(finished.run_id) is None
    store.put_contact_outcomes(finished, outcomes.encode())

    assert store.contact_outcomes(finished.run_id) == outcomes.encode()
    first_part = raw_item(table, f"contacts#{finished.run_id}#0")
    assert int(first_part["expires_at"]["N"]) == int((finished.created_at + timedelta(days=7)).timestamp())
    assert "sync_pending" not in first_part
    assert "listed_flow_id" not in first_part
    assert store.request_body(finished.run_id) is None  # another kind of kept body, not mixed up


def test_a_records_answer_says_where_its_contacts_are_and_hides_what_is_kept_for_retries(store: ExecutionStore):
    run = record(retry_of=uuid4())
    parent = record(num_chunks=2, status=RunStatus.QUEUED)
    store.put(run, options=b'{"has_priority":true}')
    store.put(parent)

    shown = json.loads(store.get(run.run_id).model_dump_json())  # type: ignore[union-attr]
    assert shown["contacts_url"] == f"/runs/{run.run_id}/contacts"
    assert shown["retry_of"] == str(run.retry_of)
    assert "options" not in json.dumps(shown)
    assert store.run_options(run.run_id) == b'{"has_priority":true}'  # kept beside it, not in it
    assert store.run_options(parent.run_id) is None
    assert store.get(parent.run_id).contacts_url == f"/bulk-runs/{parent.run_id}/contacts"  # type: ignore[union-attr]
