"""bulk_worker in-process: what becomes of a record: permanent errors, unknown outcomes and invalid messages are
recorded and acknowledged, transient failures come back after Retry-After or a doubling backoff and end in the
dead-letter queue, and no Hilos call starts without the time it needs. moto for AWS, the fake Hilos."""

import json

import pytest
import requests

from local.events import LocalLambdaContext, sqs_record
from tests.fake_hilos import Answer, FakeHilos, reply
from tests.helpers import (
    FLOW_ID,
    WORKER_TIMEOUT_SECONDS,
    RunsQueue,
    call_bulk_worker,
    deliver,
    failed_ids,
    queued_run,
)
from tests.integration.worker_records import (
    acknowledged_and_rejected,
    message_run_id,
    record_of,
    visibility_changes,
)

pytestmark = pytest.mark.usefixtures("worker")


class TestOutcomes:
    @pytest.mark.parametrize(("hilos_status", "record_status"), [(400, "REJECTED"), (404, "FAILED")])
    def test_permanent_errors_are_recorded_acknowledged_and_not_retried(
        self, hilos: FakeHilos, hilos_status: int, record_status: str
    ):
        hilos.answer_runs(reply(hilos_status, {"contact_list": [{"phone": ["Enter a valid phone."]}]}))
        changes = visibility_changes()
        record = sqs_record(queued_run())

        answer = call_bulk_worker([record])

        assert answer == {"batchItemFailures": []}  # acknowledged: SQS deletes it, nothing comes back
        assert len(hilos.calls) == 1
        assert changes == []
        stored = record_of(message_run_id(record["messageId"]))
        assert stored is not None
        assert stored["status"] == record_status
        assert f"HTTP {hilos_status}" in stored["last_error"]

    def test_a_read_timeout_is_unknown_acknowledged_counted_and_never_resent(
        self, hilos: FakeHilos, capsys: pytest.CaptureFixture[str]
    ):
        hilos.answer_runs(requests.ReadTimeout("slow"))
        record = sqs_record(queued_run())

        first = call_bulk_worker([record])
        again = call_bulk_worker([record])

        assert first == again == {"batchItemFailures": []}
        assert len(hilos.calls) == 1
        assert record_of(message_run_id(record["messageId"]))["status"] == "UNKNOWN"  # type: ignore[index]
        metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
        assert any(m.get("RunsUnknown") for m in metrics)

    @pytest.mark.parametrize(
        "body",
        [
            "not json at all",
            json.dumps({"flow_id": "not-a-flow", "contact_list": [{"phone": "+5215500000001"}]}),
            json.dumps({"flow_id": FLOW_ID, "contact_list": [{"phone": "+5215500000001", "phone_number": "x"}]}),
            json.dumps({"flow_id": FLOW_ID, "contact_list": [], "surprise": 1}),
        ],
    )
    def test_an_invalid_message_is_recorded_rejected_with_the_reason_and_acknowledged(
        self, hilos: FakeHilos, body: str
    ):
        record = sqs_record(body)

        answer = call_bulk_worker([record])

        stored = acknowledged_and_rejected(answer, record)
        assert len(hilos.calls) == 0
        assert stored["source"] == "QUEUE"
        assert stored["last_error"].startswith("the message is not a valid QueuedRun")
        readable_flow = FLOW_ID in body
        assert stored["flow_id"] == (FLOW_ID if readable_flow else "00000000-0000-0000-0000-000000000000")

    def test_a_refused_token_fails_the_record_and_waits_the_longest_delay(self, hilos: FakeHilos):
        hilos.answer_runs(reply(401, {"detail": "Invalid token."}))
        changes = visibility_changes()
        record = sqs_record(queued_run())

        answer = call_bulk_worker([record])

        assert failed_ids(answer) == [record["messageId"]]
        assert len(hilos.calls) == 2  # once, then once more after a fresh read of the secret
        assert [c["VisibilityTimeout"] for c in changes] == [300]  # RETRY_AFTER_MAX_SECONDS
        stored = record_of(message_run_id(record["messageId"]))
        assert stored is not None
        assert stored["status"] == "QUEUED"
        assert "attempt 1 of 5; it will be retried" in stored["last_error"]


class TestRetries:
    @pytest.mark.parametrize(
        ("hilos_answer", "visibility"),
        [
            (reply(429, headers={"Retry-After": "17"}), 17),
            (reply(503, headers={"Retry-After": "86400"}), 300),  # capped by RETRY_AFTER_MAX_SECONDS
            (reply(503), 10),  # no hint: RETRY_BASE_DELAY_SECONDS for a first attempt
        ],
        ids=["429 retry-after 17", "503 retry-after a day", "503 no hint"],
    )
    def test_retry_after_sets_the_messages_visibility_capped(
        self, hilos: FakeHilos, runs_queue: RunsQueue, hilos_answer: Answer, visibility: int
    ):
        hilos.answer_runs(hilos_answer)
        runs_queue.sqs.send_message(QueueUrl=runs_queue.url, MessageBody=json.dumps(queued_run()))
        changes = visibility_changes()

        (message,), answer = deliver(runs_queue.sqs, runs_queue.url, runs_queue.arn)

        assert failed_ids(answer) == [message["MessageId"]]
        assert [(c["QueueUrl"], c["VisibilityTimeout"]) for c in changes] == [(runs_queue.url, visibility)]
        # moto accepted the receipt handle: the message stays hidden for that long.
        assert runs_queue.sqs.receive_message(QueueUrl=runs_queue.url).get("Messages", []) == []

    def test_the_backoff_doubles_with_each_delivery(self, hilos: FakeHilos):
        hilos.answer_runs(reply(503))
        changes = visibility_changes()
        record = sqs_record(queued_run())

        for receive_count in (1, 2, 3, 4, 5, 6):
            call_bulk_worker(
                [{**record, "attributes": {**record["attributes"], "ApproximateReceiveCount": str(receive_count)}}]
            )

        assert [c["VisibilityTimeout"] for c in changes] == [10, 20, 40, 80, 160, 300]

    def test_transient_failures_are_retried_then_end_in_the_dead_letter_queue(
        self, hilos: FakeHilos, runs_queue: RunsQueue
    ):
        hilos.answer_runs(reply(503))
        sqs, queue_url = runs_queue.sqs, runs_queue.url
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(queued_run()))

        delivered: list[str] = []
        for _ in range(10):  # bounded; SQS moves the message to the DLQ after maxReceiveCount (5) receives
            messages, answer = deliver(sqs, queue_url, runs_queue.arn)
            if not messages:
                break
            delivered += [m["MessageId"] for m in messages]
            for m in messages:
                if m["MessageId"] in failed_ids(answer):
                    # As if the worker's backoff had passed: the failed message is visible again.
                    sqs.change_message_visibility(
                        QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
                    )

        assert len(delivered) == 5
        assert len(set(delivered)) == 1
        assert len(hilos.calls) == 5
        dead = sqs.receive_message(QueueUrl=runs_queue.dlq_url).get("Messages", [])
        assert [m["MessageId"] for m in dead] == delivered[:1]
        stored = record_of(message_run_id(delivered[0]))
        assert stored is not None
        assert stored["status"] == "FAILED"
        assert stored["attempts"] == 5
        assert "attempt 5 of 5; no more retries" in stored["last_error"]


class TestTimeGuard:
    def test_no_hilos_call_starts_when_the_invocation_has_less_time_than_a_call_needs(self, hilos: FakeHilos):
        changes = visibility_changes()
        records = [sqs_record(queued_run()) for _ in range(3)]

        # 5 s left, a call may need connect retries + 20 s read + margin.
        answer = call_bulk_worker(records, LocalLambdaContext(function_name="bulk-worker", timeout_seconds=5))

        assert sorted(failed_ids(answer)) == sorted(r["messageId"] for r in records)
        assert len(hilos.calls) == 0
        assert [c["VisibilityTimeout"] for c in changes] == [0, 0, 0]  # back at once, for a fresh invocation
        assert all(record_of(message_run_id(r["messageId"])) is None for r in records)

    def test_a_split_message_stops_between_calls_when_time_runs_out_and_resumes(self, hilos: FakeHilos):
        record = sqs_record(queued_run(600))

        class RunningOut(LocalLambdaContext):
            """Plenty of time for the first call, then almost none."""

            checks = 0

            def get_remaining_time_in_millis(self) -> int:
                RunningOut.checks += 1
                return WORKER_TIMEOUT_SECONDS * 1000 if RunningOut.checks <= 2 else 1000

        first = call_bulk_worker([record], RunningOut(function_name="bulk-worker"))
        again = call_bulk_worker([record])

        assert failed_ids(first) == [record["messageId"]]
        assert again == {"batchItemFailures": []}
        assert [len(json.loads(c.request.body)["contact_list"]) for c in hilos.calls] == [250, 250, 100]
