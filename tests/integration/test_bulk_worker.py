"""bulk_worker in-process: SQS events in (synthetic, or received from moto's real queue), moto for AWS
(resources and environment from template.yaml), a fake Hilos."""

import json
import threading
import uuid
from typing import Any

import pytest
import requests

from local.events import LocalLambdaContext, sqs_record
from tests.fake_hilos import USUAL, Answer, FakeHilos, by_first_phone, reply
from tests.helpers import (
    FLOW_ID,
    WORKER_TIMEOUT_SECONDS,
    RunsQueue,
    call_bulk_worker,
    contact,
    deliver,
    failed_ids,
    queued_run,
)

pytestmark = pytest.mark.usefixtures("worker")


def record_of(run_id: str | uuid.UUID) -> dict[str, Any] | None:
    from hilos_runner import factories

    record = factories.execution_store().get(uuid.UUID(str(run_id)))
    return record.model_dump(mode="json") if record else None


def message_run_id(message_id: str, part: int | None = None) -> uuid.UUID:
    """The record id the worker gives a queued message (or part of a split one)."""
    from hilos_runner.worker import message_run_id

    return message_run_id(message_id, part)


def acknowledged_and_rejected(answer: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    """The record of ``message``, which the worker's ``answer`` acknowledged (no batch item failure) and which is
    recorded REJECTED."""
    assert answer == {"batchItemFailures": []}
    record = record_of(message_run_id(message["messageId"]))
    assert record is not None
    assert record["status"] == "REJECTED"
    return record


def status(code: int, headers: dict[str, str] | None = None) -> Answer:
    return reply(code, {"detail": f"HTTP {code}"}, headers=headers)


def one_contact_run(phone: str, **overrides: Any) -> dict[str, Any]:
    return {"flow_id": FLOW_ID, "contact_list": [contact(phone=phone)], **overrides}


def visibility_changes() -> list[dict[str, Any]]:
    """Every ChangeMessageVisibility the worker makes from now on."""
    from hilos_runner import factories

    calls: list[dict[str, Any]] = []
    factories.aws_client("sqs").meta.events.register(
        "provide-client-params.sqs.ChangeMessageVisibility", lambda params, **_: calls.append(dict(params))
    )
    return calls


class TestPartialBatchResponse:
    def test_a_batch_of_six_with_two_transient_failures_reports_exactly_those_two(self, hilos: FakeHilos):
        hilos.answer_runs(
            by_first_phone(
                {
                    "+5210000000001": USUAL,
                    "+5210000000002": USUAL,
                    "+5210000000003": status(400),
                    "+5210000000004": status(503),
                    "+5210000000005": status(500),
                }
            )
        )
        records = [sqs_record(one_contact_run(f"+521000000000{n}")) for n in range(1, 6)]
        records.append(sqs_record('{"flow_id": "not json'))

        answer = call_bulk_worker(records)

        assert sorted(failed_ids(answer)) == sorted([records[3]["messageId"], records[4]["messageId"]])
        statuses = [record_of(message_run_id(r["messageId"]))["status"] for r in records]  # type: ignore[index]
        assert statuses == ["SUBMITTED", "SUBMITTED", "REJECTED", "QUEUED", "QUEUED", "REJECTED"]
        assert len(hilos.calls) == 5

    def test_when_every_record_fails_all_are_reported_and_the_invocation_does_not_error(self, hilos: FakeHilos):
        hilos.answer_runs(reply(503))
        records = [sqs_record(queued_run()) for _ in range(3)]

        answer = call_bulk_worker(records)

        assert sorted(failed_ids(answer)) == sorted(r["messageId"] for r in records)

    def test_records_of_a_batch_are_processed_concurrently_within_the_bound(
        self, hilos: FakeHilos, monkeypatch: pytest.MonkeyPatch
    ):
        from hilos_runner import factories

        monkeypatch.setenv("WORKER_CONCURRENCY", "2")
        factories.reset()
        # Two calls must be in flight together to pass the barrier: a sequential worker would break it.
        barrier = threading.Barrier(2, timeout=10)
        lock = threading.Lock()
        in_flight, most = [0], [0]

        def overlapping(_request: Any) -> None:
            with lock:
                in_flight[0] += 1
                most[0] = max(most[0], in_flight[0])
            barrier.wait()
            with lock:
                in_flight[0] -= 1

        hilos.answer_runs(overlapping)

        answer = call_bulk_worker([sqs_record(queued_run()) for _ in range(4)])

        assert answer == {"batchItemFailures": []}
        assert most[0] == 2  # concurrent, and never more than WORKER_CONCURRENCY
        assert len(hilos.calls) == 4


class TestExactlyOnce:
    def test_the_same_message_delivered_twice_starts_hilos_once(self, hilos: FakeHilos):
        first = sqs_record(queued_run(2))
        again = {**first, "attributes": {**first["attributes"], "ApproximateReceiveCount": "2"}}

        assert call_bulk_worker([first]) == {"batchItemFailures": []}
        assert call_bulk_worker([again]) == {"batchItemFailures": []}

        assert len(hilos.calls) == 1
        record = record_of(message_run_id(first["messageId"]))
        assert record is not None
        assert record["status"] == "SUBMITTED"
        assert record["hilos_execution_id"] == hilos.created[0]["id"]
        assert record["source"] == "QUEUE"

    def test_the_same_message_in_two_invocations_at_once_starts_hilos_once(self, hilos: FakeHilos):
        in_hilos, release = threading.Event(), threading.Event()

        def slow(_request: Any) -> None:
            in_hilos.set()
            assert release.wait(timeout=10), "the test never released the first call"

        hilos.answer_runs(slow)
        record = sqs_record(queued_run())
        answers: dict[str, dict[str, Any]] = {}
        first = threading.Thread(target=lambda: answers.update(first=call_bulk_worker([record])))
        first.start()
        try:
            assert in_hilos.wait(timeout=10)
            answers["second"] = call_bulk_worker([record])  # while the first is inside the Hilos call
        finally:
            release.set()
            first.join(timeout=10)

        assert answers["first"] == {"batchItemFailures": []}
        assert failed_ids(answers["second"]) == [record["messageId"]]  # in progress: comes back later
        assert len(hilos.calls) == 1
        assert call_bulk_worker([record]) == {"batchItemFailures": []}  # the redelivery gets the stored result
        assert len(hilos.calls) == 1

    def test_the_producers_idempotency_key_spans_messages(self, hilos: FakeHilos):
        body = queued_run(idempotency_key="crm-export-42")

        call_bulk_worker([sqs_record(body)])
        call_bulk_worker([sqs_record(body)])  # another message, same key: a producer's retry

        assert len(hilos.calls) == 1

    def test_a_key_reused_with_another_body_is_recorded_rejected_and_acknowledged(self, hilos: FakeHilos):
        call_bulk_worker([sqs_record(queued_run(1, idempotency_key="crm-export-43"))])
        reused = sqs_record(queued_run(2, idempotency_key="crm-export-43"))

        answer = call_bulk_worker([reused])

        record = acknowledged_and_rejected(answer, reused)
        assert len(hilos.calls) == 1
        assert "idempotency key" in record["last_error"]

    def test_a_large_message_is_split_and_a_redelivery_resumes_after_the_calls_made(self, hilos: FakeHilos):
        hilos.answer_runs(USUAL, status(503), USUAL)
        record = sqs_record(queued_run(600))  # 250 + 250 + 100 at the default chunk size

        first = call_bulk_worker([record])
        again = call_bulk_worker([{**record, "attributes": {**record["attributes"], "ApproximateReceiveCount": "2"}}])

        assert failed_ids(first) == [record["messageId"]]
        assert again == {"batchItemFailures": []}
        sent = [[c["phone"] for c in json.loads(call.request.body)["contact_list"]] for call in hilos.calls]
        assert [len(contacts) for contacts in sent] == [250, 250, 250, 100]  # part 0 was not sent again
        assert sent[1] == sent[2]
        assert sent[0] + sent[2] + sent[3] == [c["phone"] for c in json.loads(record["body"])["contact_list"]]
        parts = [record_of(message_run_id(record["messageId"], part)) for part in range(3)]
        assert [(p["status"], p["chunk_index"], p["num_contacts"]) for p in parts] == [  # type: ignore[index]
            ("SUBMITTED", 0, 250),
            ("SUBMITTED", 1, 250),
            ("SUBMITTED", 2, 100),
        ]
        assert [p["idempotency_key"] for p in parts] == [  # type: ignore[index]
            f"sqs-{record['messageId']}#{part}" for part in range(3)
        ]
        assert parts[1]["attempts"] == 2  # type: ignore[index]

    def test_a_run_left_in_sending_by_a_crashed_attempt_is_not_resent(self, hilos: FakeHilos):
        from hilos_runner import wiring
        from hilos_runner.executions import ExecutionRecord, RunSource, RunStatus

        record = sqs_record(queued_run())
        run_id = message_run_id(record["messageId"])
        # What an attempt that died between sending and recording Hilos' answer leaves behind.
        factories.execution_store().put(
            ExecutionRecord(
                run_id=run_id, flow_id=FLOW_ID, source=RunSource.QUEUE, status=RunStatus.SENDING, num_contacts=1
            )
        )

        answer = call_bulk_worker([{**record, "attributes": {**record["attributes"], "ApproximateReceiveCount": "2"}}])

        assert answer == {"batchItemFailures": []}
        assert len(hilos.calls) == 0
        assert record_of(run_id)["status"] == "UNKNOWN"  # type: ignore[index]


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


class TestBulkChunks:
    def test_a_chunk_queued_by_the_api_updates_its_own_record(self, hilos: FakeHilos):
        from hilos_runner import wiring
        from hilos_runner.chunking import chunk_run_id
        from hilos_runner.execution_records import ExecutionRecord, RunSource, RunStatus

        bulk_id = uuid.uuid4()
        run_id = chunk_run_id(bulk_id, 3)
        queued = ExecutionRecord(
            run_id=run_id,
            flow_id=FLOW_ID,
            source=RunSource.QUEUE,
            status=RunStatus.QUEUED,
            num_contacts=2,
            parent_id=bulk_id,
            chunk_index=3,
        )
        factories.execution_store().put(queued)
        body = queued_run(
            2, bulk_id=str(bulk_id), chunk_index=3, run_id=str(run_id), idempotency_key=f"bulk-{bulk_id}-3"
        )

        assert call_bulk_worker([sqs_record(body)]) == {"batchItemFailures": []}

        stored = record_of(run_id)
        assert stored is not None
        assert (stored["status"], stored["parent_id"], stored["chunk_index"]) == ("SUBMITTED", str(bulk_id), 3)
        assert stored["created_at"] == queued.model_dump(mode="json")["created_at"]
        assert stored["hilos_execution_id"] == hilos.created[0]["id"]


class TestSampleEvents:
    @pytest.mark.parametrize(("name", "rejected"), [("sqs-good-batch.json", 0), ("sqs-batch-with-bad-message.json", 1)])
    def test_sample_events_do_what_their_names_say(self, hilos: FakeHilos, name: str, rejected: int):
        from pathlib import Path

        import bulk_worker

        event = json.loads((Path(__file__).resolve().parents[2] / "events" / name).read_text())
        context = LocalLambdaContext(function_name="bulk-worker", timeout_seconds=WORKER_TIMEOUT_SECONDS)

        answer = bulk_worker.lambda_handler(event, context)

        assert answer == {"batchItemFailures": []}
        statuses = [record_of(message_run_id(r["messageId"]))["status"] for r in event["Records"]]  # type: ignore[index]
        assert statuses.count("REJECTED") == rejected
        assert statuses.count("SUBMITTED") == len(event["Records"]) - rejected
        assert len(hilos.calls) == len(event["Records"]) - rejected
