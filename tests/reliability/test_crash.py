"""Crash cases: the worker killed mid-batch and the batch delivered again; Secrets Manager and DynamoDB
failing at the client boundary. Each proves the same two things: no run is lost (it is recorded, or its
message comes back) and no run reaches Hilos twice.

The design's rule for a run whose outcome is unknown (a record left SENDING: the worker died after
writing it, so the call may have reached Hilos) is that it is never resent: the redelivery records it
UNKNOWN for a person to check. A run whose call surely never started is sent on redelivery.
"""

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from local.events import LocalLambdaContext, sqs_record
from tests.fake_hilos import FakeHilos
from tests.helpers import (
    FLOW_ID,
    call_bulk_worker,
    call_run_api,
    contact,
    failed_ids,
    run_body,
)
from tests.reliability.faults import InvocationKilled, aws_error, inject, unreachable

pytestmark = pytest.mark.usefixtures("worker")

PHONES = ["+5215500000001", "+5215500000002", "+5215500000003"]
# The invocation that crashes has 4 s; a Hilos call's budget is 1.5 s (connect 0.5 s, no connect retries,
# read 1 s, no margin), so the time guard lets every call start, and the IN_PROGRESS idempotency records
# it leaves behind expire 4 s after it started (Powertools ties them to the invocation's remaining time).
FAST_CALLS = {
    "HILOS_CONNECT_TIMEOUT_SECONDS": "0.5",
    "HILOS_CONNECT_RETRIES": "0",
    "HILOS_READ_TIMEOUT_SECONDS": "1",
    "WORKER_CALL_MARGIN_SECONDS": "0",
    "WORKER_CONCURRENCY": "1",  # records one after the other: the crash point is deterministic
}
CRASHED_INVOCATION_SECONDS = 4


@pytest.fixture
def fast_calls(worker: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from hilos_runner import factories

    for name, value in FAST_CALLS.items():
        monkeypatch.setenv(name, value)
    factories.reset()
    yield
    factories.reset()


def record_of(run_id: uuid.UUID) -> Any:
    from hilos_runner import factories

    return factories.execution_store().get(run_id)


def run_id_of(record: dict[str, Any]) -> uuid.UUID:
    from hilos_runner.worker import message_run_id

    return message_run_id(record["messageId"])


def redelivered(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same messages, received once more (SQS counts the receive)."""
    result = []
    for record in records:
        count = int(record["attributes"]["ApproximateReceiveCount"]) + 1
        result.append({**record, "attributes": {**record["attributes"], "ApproximateReceiveCount": str(count)}})
    return result


def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def one_contact_message(phone: str) -> dict[str, Any]:
    return sqs_record(json.dumps({"flow_id": FLOW_ID, "contact_list": [contact(phone=phone)]}))


class TestWorkerKilledMidBatch:
    def crash(self, batch: list[dict[str, Any]]) -> LocalLambdaContext:
        import bulk_worker  # noqa: F401  (imported before the clock starts: a cold start is not the point here)
        from hilos_runner import factories

        factories.queued_run_worker()
        factories.aws_client("dynamodb")
        context = LocalLambdaContext(function_name="bulk-worker", timeout_seconds=CRASHED_INVOCATION_SECONDS)
        with pytest.raises(InvocationKilled):
            call_bulk_worker(batch, context)
        return context

    def test_after_the_call_reached_hilos_nothing_is_repeated_and_the_unknown_run_is_not_resent(
        self, fast_calls: None, hilos: FakeHilos
    ):
        hilos.kill_after_creating = PHONES[2]
        batch = [one_contact_message(phone) for phone in PHONES]

        crashed = self.crash(batch)

        assert hilos.created_phones == PHONES
        statuses = [record_of(run_id_of(r)).status for r in batch]
        assert statuses == ["SUBMITTED", "SUBMITTED", "SENDING"]  # the third died between send and answer

        # Delivered again at once (a duplicate delivery, or the visibility timeout was short): the completed
        # records are answered from the idempotency store; the third is still IN_PROGRESS, so it waits.
        answer = call_bulk_worker(redelivered(batch))
        assert failed_ids(answer) == [batch[2]["messageId"]]
        assert hilos.created_phones == PHONES  # no Hilos call repeated

        # Once the crashed invocation's time is up, its IN_PROGRESS record has expired: the next delivery
        # runs the third record again, finds it SENDING (maybe started) and records it UNKNOWN, unsent.
        wait_until(lambda: crashed.get_remaining_time_in_millis() == 0, timeout=CRASHED_INVOCATION_SECONDS + 1)
        time.sleep(0.01)  # Powertools compares whole milliseconds: step past the expiry instant
        answer = call_bulk_worker(redelivered(redelivered([batch[2]])))

        assert answer == {"batchItemFailures": []}
        assert hilos.created_phones == PHONES  # still exactly one Hilos call per run
        third = record_of(run_id_of(batch[2]))
        assert third.status == "UNKNOWN"
        assert "looked up in Hilos instead of being resent" in third.last_error
        assert third.awaits_reconcile  # the status sync's next pass finds out from Hilos what happened
        assert [record_of(run_id_of(r)).status for r in batch[:2]] == ["SUBMITTED", "SUBMITTED"]

    def test_before_the_call_was_made_the_run_is_sent_once_after_the_expiry(self, fast_calls: None, hilos: FakeHilos):
        from hilos_runner import factories

        batch = [one_contact_message(phone) for phone in PHONES]
        third_run_id = str(run_id_of(batch[2]))
        # Killed while writing the third run's SENDING record (with its request body): Hilos was never called.
        inject(
            factories.aws_client("dynamodb"),
            "BatchWriteItem",
            InvocationKilled,
            when=lambda params: third_run_id in json.dumps(params["RequestItems"], default=str),
        )

        crashed = self.crash(batch)

        assert hilos.created_phones == PHONES[:2]
        assert record_of(run_id_of(batch[2])) is None
        wait_until(lambda: crashed.get_remaining_time_in_millis() == 0, timeout=CRASHED_INVOCATION_SECONDS + 1)
        time.sleep(0.01)

        answer = call_bulk_worker(redelivered(batch))

        assert answer == {"batchItemFailures": []}
        assert hilos.created_phones == PHONES  # the first two were not repeated, the third was sent once
        assert [record_of(run_id_of(r)).status for r in batch] == ["SUBMITTED"] * 3


class TestSecretsManagerDown:
    @pytest.mark.parametrize(
        ("error", "reason"),
        [
            (lambda: aws_error("ThrottlingException", "GetSecretValue"), "ThrottlingException"),
            (lambda: unreachable("GetSecretValue"), "EndpointConnectionError"),
        ],
        ids=["throttled", "unreachable"],
    )
    def test_the_api_answers_503_with_retry_after_in_the_error_shape(
        self, hilos: FakeHilos, error: Callable[[], BaseException], reason: str
    ):
        from hilos_runner import factories

        inject(factories.aws_client("secretsmanager"), "GetSecretValue", error)

        answer = call_run_api("POST", f"/flows/{FLOW_ID}/runs", run_body())

        assert answer.status == 503
        assert answer.headers["Retry-After"].isdigit()
        assert set(answer.body) <= {"code", "message", "details", "run_id"}
        assert answer.body["code"] == "dependency_unavailable"
        assert reason in answer.body["message"]
        assert hilos.created_phones == []
        # The client retries (same request, same key): the secret is back and the run starts once.
        again = call_run_api("POST", f"/flows/{FLOW_ID}/runs", run_body())
        assert again.status == 201
        assert len(hilos.created_phones) == 1

    def test_the_worker_fails_the_record_and_the_message_comes_back_then_starts_once(self, hilos: FakeHilos):
        from hilos_runner import factories

        inject(
            factories.aws_client("secretsmanager"),
            "GetSecretValue",
            lambda: aws_error("ThrottlingException", "GetSecretValue"),
        )
        record = one_contact_message(PHONES[0])

        first = call_bulk_worker([record])

        assert failed_ids(first) == [record["messageId"]]
        assert hilos.created_phones == []
        assert record_of(run_id_of(record)).status == "QUEUED"  # waiting on the queue again

        second = call_bulk_worker(redelivered([record]))

        assert second == {"batchItemFailures": []}
        assert hilos.created_phones == [PHONES[0]]
        assert record_of(run_id_of(record)).status == "SUBMITTED"


class TestDynamoDbFailures:
    @staticmethod
    def throttle_sending_write() -> list[Any]:
        """The write of a run's SENDING record (with its request body, one BatchWriteItem) is throttled."""
        from hilos_runner import factories

        return inject(
            factories.aws_client("dynamodb"),
            "BatchWriteItem",
            lambda: aws_error("ProvisionedThroughputExceededException", "BatchWriteItem"),
            when=lambda params: '"SENDING"' in json.dumps(params["RequestItems"], default=str),
        )

    @staticmethod
    def throttle_put_item(table: str, *, only_status: str | None = None) -> list[Any]:
        """Every PutItem on ``table`` (with that record status, if given) is throttled; returns the log."""
        from hilos_runner import factories
        from hilos_runner.settings import get_settings

        name = getattr(get_settings(), f"{table}_table_name")
        return inject(
            factories.aws_client("dynamodb"),
            "PutItem",
            lambda: aws_error("ProvisionedThroughputExceededException", "PutItem"),
            when=lambda params: (
                params["TableName"] == name and (only_status is None or params["Item"]["status"]["S"] == only_status)
            ),
        )

    def test_throttled_before_sending_the_message_comes_back_and_the_run_starts_once(self, hilos: FakeHilos):

        failed = self.throttle_sending_write()
        record = one_contact_message(PHONES[0])

        first = call_bulk_worker([record])

        assert len(failed) == 1
        assert failed_ids(first) == [record["messageId"]]
        assert hilos.created_phones == []
        second = call_bulk_worker(redelivered([record]))
        assert second == {"batchItemFailures": []}
        assert hilos.created_phones == [PHONES[0]]
        assert record_of(run_id_of(record)).status == "SUBMITTED"

    def test_throttled_after_hilos_answered_keeps_the_record_and_never_calls_again(self, hilos: FakeHilos):

        # The SENDING write succeeds, the write of Hilos' answer is throttled on every botocore attempt.
        failed = self.throttle_put_item("executions", only_status="SUBMITTED")
        record = one_contact_message(PHONES[0])

        first = call_bulk_worker([record])

        assert len(failed) == 1
        assert first == {"batchItemFailures": []}  # the run started: retrying it could only duplicate it
        assert hilos.created_phones == [PHONES[0]]
        kept = record_of(run_id_of(record))
        assert kept is not None  # not lost: it reads SENDING, "outcome unknown", never resent
        assert kept.status == "SENDING"
        for delivery in (redelivered([record]), redelivered(redelivered([record]))):
            assert call_bulk_worker(delivery) == {"batchItemFailures": []}
        assert hilos.created_phones == [PHONES[0]]

    def test_the_idempotency_store_throttled_fails_the_record_without_calling_hilos(self, hilos: FakeHilos):

        self.throttle_put_item("idempotency")
        record = one_contact_message(PHONES[0])

        first = call_bulk_worker([record])

        assert failed_ids(first) == [record["messageId"]]
        assert hilos.created_phones == []
        assert call_bulk_worker(redelivered([record])) == {"batchItemFailures": []}
        assert hilos.created_phones == [PHONES[0]]

    def test_a_failed_conditional_write_means_another_delivery_holds_the_run_and_nothing_is_sent(
        self, hilos: FakeHilos
    ):

        record = one_contact_message(PHONES[0])
        # Another invocation is working on the same message right now: its IN_PROGRESS record makes our
        # conditional PutItem fail (ConditionalCheckFailedException, for real, in moto).
        in_flight = LocalLambdaContext(function_name="bulk-worker", timeout_seconds=300)
        hilos.kill_after_creating = PHONES[0]
        with pytest.raises(InvocationKilled):
            call_bulk_worker([record], in_flight)
        hilos.kill_after_creating = None

        answer = call_bulk_worker(redelivered([record]))

        assert failed_ids(answer) == [record["messageId"]]  # comes back later; not dropped
        assert hilos.created_phones == [PHONES[0]]  # and not sent a second time
        assert record_of(run_id_of(record)).status == "SENDING"
