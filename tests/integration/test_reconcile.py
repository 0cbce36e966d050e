"""Reconciliation in-process: run_api and bulk_worker start runs, a fake Hilos loses answers or lists what it
has, and status_sync's scheduled passes resolve every ambiguous run against Hilos' lists.

Short timeouts (QUICK) make one call budget 0.2 s, so "past the call budget" and "after the grace period"
arrive within a test; nothing here asserts on timing.
"""

import json
import time
from datetime import timedelta
from typing import Any

import pytest

from tests.fake_hilos import FakeHilos, minutes_ago
from tests.helpers import FLOW_ID, call_bulk_worker, call_run_api, contact, run_body, sync_pass
from tests.reliability.faults import InvocationKilled

QUICK = {
    "HILOS_CONNECT_RETRIES": "0",
    "HILOS_CONNECT_TIMEOUT_SECONDS": "0.1",
    "HILOS_READ_TIMEOUT_SECONDS": "0.1",
    "HILOS_STATUS_READ_TIMEOUT_SECONDS": "0.1",
    "WORKER_CALL_MARGIN_SECONDS": "0",
    "RECONCILE_GRACE_SECONDS": "0",
}
CALL_BUDGET_SECONDS = 0.2


@pytest.fixture
def hilos_lists(aws: Any, hilos: FakeHilos, monkeypatch: pytest.MonkeyPatch) -> FakeHilos:
    from hilos_runner import wiring

    for name, value in QUICK.items():
        monkeypatch.setenv(name, value)
    wiring.reset()
    hilos.page_size = 2
    return hilos


def record(run_id: str) -> Any:
    from hilos_runner import factories

    found = factories.execution_store().get(run_id)
    assert found is not None
    return found


def past_the_call_budget() -> None:
    time.sleep(CALL_BUDGET_SECONDS + 0.05)


def lost_run(fake: FakeHilos, fate: str, body: dict[str, Any] | None = None, **headers: str) -> str:
    """Start a run through the API (one contact unless ``body``) whose answer Hilos loses (``fate``); its run id."""
    fake.lose_next.append(fate)
    answer = call_run_api("POST", f"/flows/{FLOW_ID}/runs", body or run_body(), headers=headers or None)
    assert answer.status == 504, answer.body
    assert answer.body["code"] == "hilos_outcome_unknown"
    return str(answer.body["run_id"])


def test_a_run_whose_answer_was_lost_after_hilos_created_it_is_found_and_followed(
    aws: Any, hilos_lists: FakeHilos, monkeypatch: pytest.MonkeyPatch
):
    run_id = lost_run(hilos_lists, "after")
    assert record(run_id).status == "UNKNOWN"
    hilos_lists.add_execution(["+5215599999999"])  # another run of the flow, other phones: not ours

    report = sync_pass(aws, monkeypatch)

    assert report["reconciled"] == {"found": 1}
    found = record(run_id)
    assert found.status == "SUBMITTED"
    assert str(found.hilos_execution_id) == hilos_lists.created[0]["id"]
    assert (found.resolution, found.reconcile_attempts, found.resends) == ("FOUND", 1, 0)
    assert hilos_lists.run_calls == 1
    # From now on the status sync follows it like any submitted run.
    report = sync_pass(aws, monkeypatch)
    assert report["outcomes"] == {"updated": 1}
    assert report["reconciled"] == {}


def test_a_repeated_key_answers_the_run_as_reconciliation_left_it(
    aws: Any, hilos_lists: FakeHilos, monkeypatch: pytest.MonkeyPatch
):
    other_phone = {"contact_list": [contact(phone="+5215587654321")]}
    found = lost_run(hilos_lists, "after", **{"Idempotency-Key": "lost-after"})
    not_started = lost_run(hilos_lists, "before", other_phone, **{"Idempotency-Key": "lost-before"})
    hilos_lists.lose_next.append("before")  # its one resend is lost before Hilos too
    past_the_call_budget()
    sync_pass(aws, monkeypatch)
    past_the_call_budget()
    sync_pass(aws, monkeypatch)
    assert (record(found).status, record(not_started).status) == ("SUBMITTED", "FAILED")

    again = call_run_api("POST", f"/flows/{FLOW_ID}/runs", run_body(), headers={"Idempotency-Key": "lost-after"})
    assert again.status == 201
    assert again.body["run"]["run_id"] == found
    assert again.body["run"]["resolution"] == "FOUND"
    again = call_run_api("POST", f"/flows/{FLOW_ID}/runs", other_phone, headers={"Idempotency-Key": "lost-before"})
    assert again.status == 502
    assert (again.body["code"], again.body["run_id"]) == ("run_not_started", not_started)
    assert hilos_lists.run_calls == 3  # two first sends, one resend; the repeats called nothing


def test_refresh_true_reconciles_an_ambiguous_run_at_once(aws: Any, hilos_lists: FakeHilos):
    run_id = lost_run(hilos_lists, "after")

    answer = call_run_api("GET", f"/runs/{run_id}", query={"refresh": "true"})

    assert answer.status == 200
    assert answer.body["status"] == "SUBMITTED"
    assert answer.body["resolution"] == "FOUND"
    assert answer.body["hilos_execution_id"] == hilos_lists.created[0]["id"]
    assert "contacts_digest" not in answer.body  # kept in the table, never answered


def test_not_found_is_resent_once_after_the_grace_period_and_never_again(
    aws: Any, hilos_lists: FakeHilos, monkeypatch: pytest.MonkeyPatch
):
    from hilos_runner import factories

    run_id = lost_run(hilos_lists, "before")
    assert hilos_lists.created == []

    early = sync_pass(aws, monkeypatch, RECONCILE_GRACE_SECONDS="3600")
    assert early["reconciled"] == {"waiting": 1}  # Hilos might still be processing the request: never resent
    assert hilos_lists.run_calls == 1
    waiting = record(run_id)
    assert waiting.status == "UNKNOWN"
    assert waiting.next_sync_at == waiting.sent_at + timedelta(seconds=3600)  # looked at again once it is over

    # The grace period over (its send ten minutes back, due now):
    factories.execution_store().put(
        waiting.model_copy(update={"sent_at": minutes_ago(10), "next_sync_at": minutes_ago(0)})
    )
    report = sync_pass(aws, monkeypatch, RECONCILE_GRACE_SECONDS="300")

    assert report["reconciled"] == {"resent": 1}
    resent = record(run_id)
    assert (resent.status, resent.resolution, resent.resends) == ("SUBMITTED", "RESENT", 1)
    assert len(hilos_lists.created) == 1
    assert str(resent.hilos_execution_id) == hilos_lists.created[0]["id"]
    # The resent body is the one first sent: same contacts, same flow.
    assert (
        hilos_lists.contacts[hilos_lists.created[0]["id"]][0]["contact"]["phone"]
        == run_body()["contact_list"][0]["phone"]
    )
    sync_pass(aws, monkeypatch)
    sync_pass(aws, monkeypatch)
    assert hilos_lists.run_calls == 2
    assert len(hilos_lists.created) == 1


def test_a_resend_that_is_lost_again_is_not_sent_a_third_time(
    aws: Any, hilos_lists: FakeHilos, monkeypatch: pytest.MonkeyPatch
):
    run_id = lost_run(hilos_lists, "before")
    hilos_lists.lose_next.append("before")  # the resend is lost too, nothing created
    past_the_call_budget()
    assert sync_pass(aws, monkeypatch)["reconciled"] == {"resent": 1}
    assert record(run_id).status == "UNKNOWN"

    past_the_call_budget()
    report = sync_pass(aws, monkeypatch)

    assert report["reconciled"] == {"not_started": 1}
    failed = record(run_id)
    assert (failed.status, failed.resolution, failed.resends) == ("FAILED", "NOT_STARTED", 1)
    assert "never started" in failed.last_error
    assert hilos_lists.run_calls == 2  # the first send and one resend
    assert hilos_lists.created == []
    assert sync_pass(aws, monkeypatch)["due"] == 0  # known, final: out of the index


def test_resending_off_makes_a_run_not_started_failed(
    aws: Any, hilos_lists: FakeHilos, monkeypatch: pytest.MonkeyPatch
):
    run_id = lost_run(hilos_lists, "before")
    past_the_call_budget()

    report = sync_pass(aws, monkeypatch, RECONCILE_MAX_RESENDS="0")

    assert report["reconciled"] == {"not_started": 1}
    assert (record(run_id).status, record(run_id).resolution) == ("FAILED", "NOT_STARTED")
    assert "resending is off" in record(run_id).last_error
    assert hilos_lists.run_calls == 1


def test_two_candidates_are_never_resent_and_alarm_once_past_the_bound(
    aws: Any, hilos_lists: FakeHilos, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    from hilos_runner import factories

    run_id = lost_run(hilos_lists, "after")
    phone = run_body()["contact_list"][0]["phone"]
    hilos_lists.add_execution([phone])  # the same contact, started by someone else in the same minute

    past_the_call_budget()
    report = sync_pass(aws, monkeypatch)

    assert report["reconciled"] == {"ambiguous": 1}
    undecided = record(run_id)
    assert (undecided.status, undecided.resolution) == ("UNKNOWN", "AMBIGUOUS")
    assert "2 executions in Hilos match this run" in undecided.sync_error
    assert hilos_lists.run_calls == 1
    assert "RunsUnresolved" not in capsys.readouterr().out  # not yet past RECONCILE_ALARM_AFTER_SECONDS

    # An hour later it is still undecided: counted in RunsUnresolved (alarmed), still never resent.
    store = factories.execution_store()
    store.put(undecided.model_copy(update={"sent_at": minutes_ago(61), "next_sync_at": minutes_ago(1)}))
    for execution in hilos_lists.executions:
        execution["created_on"] = minutes_ago(61).isoformat()
    report = sync_pass(aws, monkeypatch)
    assert report["reconciled"] == {"ambiguous": 1}
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert any(metric.get("RunsUnresolved") == [1.0] for metric in emitted)
    assert hilos_lists.run_calls == 1


@pytest.mark.parametrize(
    ("status", "headers"),
    [(500, {}), (503, {}), (429, {"Retry-After": "30"})],
    ids=["500", "503", "429"],
)
def test_hilos_list_errors_and_throttling_are_never_resent(
    aws: Any,
    hilos_lists: FakeHilos,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    headers: dict[str, str],
):
    first = lost_run(hilos_lists, "before")
    second = lost_run(hilos_lists, "before")
    past_the_call_budget()
    hilos_lists.list_failures = [(status, headers)] * 10

    report = sync_pass(aws, monkeypatch, WORKER_CONCURRENCY="1")

    assert hilos_lists.run_calls == 2  # nothing resent
    assert [record(run_id).status for run_id in (first, second)] == ["UNKNOWN", "UNKNOWN"]
    if status == 429:
        # The pass stops at the first 429: the other run is not looked up in this pass.
        assert report["throttled"] is True
        assert (report["reconciled"], report["not_reached"]) == ({"ambiguous": 1}, 1)
    else:
        assert report["reconciled"] == {"ambiguous": 2}
    looked = [record(run_id) for run_id in (first, second) if record(run_id).resolution == "AMBIGUOUS"]
    assert looked
    assert all("Hilos could not be read" in run.sync_error for run in looked)

    hilos_lists.list_failures = []  # Hilos is back: both are resolved, each resent once
    report = sync_pass(aws, monkeypatch)
    assert report["reconciled"] == {"resent": 2}
    assert len(hilos_lists.created) == 2


def test_the_lookup_pages_through_newer_executions_and_stops_below_the_window(
    aws: Any, hilos_lists: FakeHilos, monkeypatch: pytest.MonkeyPatch
):
    for number in range(6):  # pages of 2: three pages of older runs of the flow, same size, other phones
        hilos_lists.add_execution([f"+52155000000{number:02d}"], created_on=minutes_ago(60 + number))
    run_id = lost_run(hilos_lists, "after")
    for number in range(5):  # and newer ones on top of ours
        hilos_lists.add_execution([f"+52155111111{number:02d}"])

    report = sync_pass(aws, monkeypatch)

    assert report["reconciled"] == {"found": 1}
    assert str(record(run_id).hilos_execution_id) == hilos_lists.created[0]["id"]
    # Pages 1-3 hold the six newer-or-ours executions; page 4 is the first below the window: no page 5.
    assert hilos_lists.list_reads["executions"] == 4


def test_the_runs_contacts_in_an_execution_just_after_the_window_stop_a_resend(
    aws: Any, hilos_lists: FakeHilos, monkeypatch: pytest.MonkeyPatch
):
    run_id = lost_run(hilos_lists, "before")
    # Created (by Hilos' clock) five minutes after the send: outside the window with a 2-minute skew allowance,
    # but it may be this run under a clock further off, or a new run of these contacts: never resend then.
    phone = run_body()["contact_list"][0]["phone"]
    late = hilos_lists.add_execution([phone], created_on=minutes_ago(-5))
    past_the_call_budget()

    report = sync_pass(aws, monkeypatch)

    assert report["reconciled"] == {"ambiguous": 1}
    assert f"execution {late} was created after the send window" in record(run_id).sync_error
    assert hilos_lists.run_calls == 1


def test_a_candidate_hilos_has_not_finished_listing_is_not_decided_on(
    aws: Any, hilos_lists: FakeHilos, monkeypatch: pytest.MonkeyPatch
):
    body = run_body(3)
    hilos_lists.lose_next.append("before")
    answer = call_run_api("POST", f"/flows/{FLOW_ID}/runs", body)
    run_id = answer.body["run_id"]
    phones = [item["phone"] for item in body["contact_list"]]
    hilos_lists.add_execution(phones, listed=2)  # three contacts, two listed so far
    past_the_call_budget()

    report = sync_pass(aws, monkeypatch)

    assert report["reconciled"] == {"ambiguous": 1}
    assert "has not listed every contact" in record(run_id).sync_error
    assert hilos_lists.run_calls == 1


def test_a_crash_between_the_resends_record_and_its_call_never_starts_it_twice(
    aws: Any, hilos_lists: FakeHilos, monkeypatch: pytest.MonkeyPatch
):
    run_id = lost_run(hilos_lists, "before")
    past_the_call_budget()
    hilos_lists.lose_next.append("killed")  # the status sync dies after writing SENDING, before Hilos sees it

    with pytest.raises(InvocationKilled):
        sync_pass(aws, monkeypatch, RECONCILE_MAX_RESENDS="2")

    crashed = record(run_id)
    assert (crashed.status, crashed.resends) == ("SENDING", 1)
    assert hilos_lists.created == []

    # The SENDING record is looked up once its call budget is over: not in Hilos, so sent (the second resend).
    past_the_call_budget()
    report = sync_pass(aws, monkeypatch, RECONCILE_MAX_RESENDS="2")
    assert report["reconciled"] == {"resent": 1}
    assert (record(run_id).status, record(run_id).resends) == ("SUBMITTED", 2)
    assert len(hilos_lists.created) == 1
    sync_pass(aws, monkeypatch, RECONCILE_MAX_RESENDS="2")
    assert len(hilos_lists.created) == 1


def test_a_sending_record_left_by_a_failed_final_write_is_found(
    aws: Any, hilos_lists: FakeHilos, monkeypatch: pytest.MonkeyPatch
):
    from hilos_runner import factories
    from tests.reliability.faults import aws_error, inject

    # The write of Hilos' answer (a conditional PutItem, SUBMITTED) is throttled on every attempt.
    inject(
        factories.aws_client("dynamodb"),
        "PutItem",
        lambda: aws_error("ProvisionedThroughputExceededException", "PutItem"),
        when=lambda params: params["Item"]["status"]["S"] == "SUBMITTED",
    )
    answer = call_run_api("POST", f"/flows/{FLOW_ID}/runs", run_body())
    assert answer.status == 201  # Hilos started it; the answer says so though the record could not
    run_id = answer.body["run"]["run_id"]
    sending = record(run_id)
    assert sending.status == "SENDING"
    # Not looked up before its call budget is over (the writer might still finish), then at once.
    assert sending.next_sync_at == sending.sent_at + timedelta(seconds=CALL_BUDGET_SECONDS)
    past_the_call_budget()
    report = sync_pass(aws, monkeypatch)

    assert report["reconciled"] == {"found": 1}
    assert (record(run_id).status, record(run_id).resolution) == ("SUBMITTED", "FOUND")
    assert str(record(run_id).hilos_execution_id) == hilos_lists.created[0]["id"]
    assert hilos_lists.run_calls == 1


def test_a_queued_run_whose_answer_was_lost_is_found_too(
    aws: Any, hilos_lists: FakeHilos, monkeypatch: pytest.MonkeyPatch
):
    from local.events import sqs_record

    hilos_lists.lose_next.append("after")
    message = sqs_record(json.dumps({"flow_id": FLOW_ID, "contact_list": [contact(phone="+52 1 55 1234-5678")]}))
    answer = call_bulk_worker([message])
    assert answer == {"batchItemFailures": []}  # UNKNOWN is acknowledged: reconciliation takes it from here

    report = sync_pass(aws, monkeypatch)

    assert report["reconciled"] == {"found": 1}
    assert hilos_lists.run_calls == 1


# -- a large keyed request: no false "nothing started" ---------------------------------------------------


def big_body(contacts: int = 1000) -> dict[str, Any]:
    """About 1 MB of JSON whose kept copy does not compress under DynamoDB's item limit (hex digests)."""
    import hashlib

    return {
        "contact_list": [
            {
                "phone": f"+52155300{number:05d}",
                "meta": {"p": "".join(hashlib.sha256(f"{number}-{part}".encode()).hexdigest() for part in range(14))},
            }
            for number in range(contacts)
        ]
    }


def test_a_large_keyed_request_starts_once_and_gets_the_same_answer_on_repeat(aws: Any, hilos_lists: FakeHilos):
    from hilos_runner import factories

    body = big_body()
    assert len(json.dumps(body)) > 900_000
    headers = {"Idempotency-Key": "big-1"}

    first = call_run_api("POST", f"/flows/{FLOW_ID}/runs", body, headers=headers)
    again = call_run_api("POST", f"/flows/{FLOW_ID}/runs", body, headers=headers)

    assert first.status == 201, first.body
    assert again.status == 201, again.body
    assert again.body == first.body
    assert "contact_list" not in first.body["hilos"]  # Hilos' echo of the contacts is not kept or answered
    assert hilos_lists.run_calls == 1
    # The body kept for a resend is the one sent, whole, over several items.
    kept = factories.execution_store().request_body(first.body["run"]["run_id"])
    assert kept is not None
    assert json.loads(kept)["contact_list"] == body["contact_list"]


def test_once_hilos_was_called_a_failure_to_store_the_answer_is_not_nothing_started(aws: Any, hilos_lists: FakeHilos):
    from hilos_runner import factories
    from tests.reliability.faults import aws_error, inject

    # Powertools' write of the result for the key (UpdateItem on the idempotency table) fails.
    inject(
        factories.aws_client("dynamodb"),
        "UpdateItem",
        lambda: aws_error("ProvisionedThroughputExceededException", "UpdateItem"),
    )
    headers = {"Idempotency-Key": "store-fails-1"}

    answer = call_run_api("POST", f"/flows/{FLOW_ID}/runs", run_body(), headers=headers)

    assert answer.status == 201, answer.body
    assert hilos_lists.run_calls == 1
    # The key's run id comes from flow, key and body: a repeat finds the run, not a second Hilos call.
    factories.reset()
    _drop_idempotency_records()
    repeat = call_run_api("POST", f"/flows/{FLOW_ID}/runs", run_body(), headers=headers)
    assert repeat.status == 201
    assert repeat.body["run"]["run_id"] == answer.body["run"]["run_id"]
    assert hilos_lists.run_calls == 1


def _drop_idempotency_records() -> None:
    """As if Powertools' IN_PROGRESS record had expired (it does when the invocation's time is up)."""
    from hilos_runner import factories
    from hilos_runner.settings import get_settings

    client, table = factories.aws_client("dynamodb"), get_settings().idempotency_table_name
    for item in client.scan(TableName=table)["Items"]:
        client.delete_item(TableName=table, Key={"id": item["id"]})
