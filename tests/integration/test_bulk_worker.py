"""bulk_worker in-process: partial batch responses, exactly once (redeliveries, concurrent invocations, producers'
keys, split messages), chunks queued by the API and the sample events. SQS events in (synthetic, or received from
moto's real queue), moto for AWS (resources and environment from template.yaml), the fake Hilos."""

import json
import threading
import uuid
from typing import Any

import pytest

from local.events import LocalLambdaContext, sqs_record
from tests.fake_hilos import USUAL, FakeHilos, by_first_phone, reply
from tests.helpers import (
    FLOW_ID,
    WORKER_TIMEOUT_SECONDS,
    call_bulk_worker,
    failed_ids,
    queued_run,
)
from tests.integration.worker_records import (
    acknowledged_and_rejected,
    message_run_id,
    one_contact_run,
    record_of,
    status,
)

pytestmark = pytest.mark.usefixtures("worker")


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
        from hilos_runner import factories
        from hilos_runner.execution_records import ExecutionRecord, RunSource, RunStatus

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


class TestBulkChunks:
    def test_a_chunk_queued_by_the_api_updates_its_own_record(self, hilos: FakeHilos):
        from hilos_runner import factories
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
