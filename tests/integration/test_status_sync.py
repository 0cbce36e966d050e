"""The status sync in-process: moto (tables, queues, EventBridge, from template.yaml), run_api and
bulk_worker for the runs, status_sync's handler for the scheduled passes, and a fake Hilos whose
executions the test moves from state to state.

A rule on the completion bus forwards "Hilos Run Finished" events to an SQS queue, so the tests count
what EventBridge really received.
"""

import json
import uuid
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from tests.fake_hilos import USUAL, FakeHilos, reply
from tests.helpers import (
    FLOW_ID,
    RunsQueue,
    call_run_api,
    drain,
    run_body,
    sync_pass,
)

SCHEMA_PATH = "schemas/run-finished-event.schema.json"
BULK_SCHEMA_PATH = "schemas/bulk-run-finished-event.schema.json"


@pytest.fixture
def finished_events(aws: Any) -> Iterator[Any]:
    """Receive function for the events EventBridge delivered (a rule on the bus -> an SQS queue)."""
    import boto3

    events, sqs = boto3.client("events"), boto3.client("sqs")
    bus = aws.function_environment("StatusSyncFunction").get("COMPLETION_EVENT_BUS_NAME", "default")
    queue_url = sqs.create_queue(QueueName="finished-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    if bus != "default":
        events.create_event_bus(Name=bus)
    events.put_rule(Name="runs-finished", EventBusName=bus, EventPattern=json.dumps({"source": ["hilos-runner"]}))
    events.put_targets(Rule="runs-finished", EventBusName=bus, Targets=[{"Id": "queue", "Arn": queue_arn}])

    def receive() -> list[dict[str, Any]]:
        received = []
        for _ in range(100):  # bounded
            answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=600)
            if not answer.get("Messages"):
                return received
            received += [json.loads(message["Body"]) for message in answer["Messages"]]
        return received

    return receive


def get_run(run_id: str, **query: str) -> dict[str, Any]:
    answer = call_run_api("GET", f"/runs/{run_id}", query=query or None)
    assert answer.status == 200, answer.body
    return answer.body


@pytest.fixture
def small_chunks(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from hilos_runner import factories

    monkeypatch.setenv("BULK_CHUNK_SIZE", "2")
    factories.reset()


@pytest.mark.usefixtures("small_chunks")
def test_a_bulk_run_is_in_progress_until_its_last_chunk_finishes_then_announced_once_with_errors(
    aws: Any,
    runs_queue: RunsQueue,
    hilos: FakeHilos,
    finished_events: Any,
    monkeypatch: pytest.MonkeyPatch,
):
    accepted = call_run_api("POST", f"/flows/{FLOW_ID}/bulk-runs", run_body(5))
    assert accepted.status == 202
    bulk_id, bulk_url = accepted.body["id"], accepted.body["status_url"]
    parent = lambda: get_run(bulk_id)  # noqa: E731  (what GET /runs/{id} and the flow's listing show)
    listed = lambda: [r["status"] for r in call_run_api("GET", f"/flows/{FLOW_ID}/runs").body["items"]]  # noqa: E731
    view = call_run_api("GET", bulk_url).body
    assert (view["status"], [chunk["status"] for chunk in view["chunks"]]) == ("QUEUED", ["QUEUED"] * 3)
    assert parent()["status"] == "QUEUED"

    assert drain(runs_queue, aws, monkeypatch) == 3
    report = sync_pass(aws, monkeypatch)
    assert report["outcomes"] == {"updated": 3}
    assert report["bulk_runs"] == {"updated": 1}
    assert parent()["status"] == listed()[0] == "IN_PROGRESS"
    view = call_run_api("GET", bulk_url).body

    # Two chunks finish in Hilos, the last one is still running: the bulk run is not finished.
    first, second, last = (hilos.execution(chunk["hilos_execution_id"]) for chunk in view["chunks"])
    for execution in (first, second):
        execution.update(status="COMPLETED", completed=execution["num_contacts"])
    last.update(status="RUNNING", running=last["num_contacts"])
    sync_pass(aws, monkeypatch)
    view = call_run_api("GET", bulk_url).body
    assert [chunk["status"] for chunk in view["chunks"]] == ["COMPLETED", "COMPLETED", "RUNNING"]
    assert view["status"] == parent()["status"] == listed()[0] == "IN_PROGRESS"
    assert [event["detail-type"] for event in finished_events()] == ["Hilos Run Finished"] * 2

    # The last chunk's execution finishes with a failed contact: the same pass finishes the bulk run.
    last.update(status="COMPLETED", running=0, completed=0, failed=1)
    report = sync_pass(aws, monkeypatch)
    assert report["bulk_runs"] == {"finished": 1}
    view = call_run_api("GET", bulk_url).body
    assert view["status"] == parent()["status"] == listed()[0] == "COMPLETED_WITH_ERRORS"
    assert (
        view["counters"]
        == parent()["counters"]
        == {
            "running": 0,
            "completed": 4,
            "failed": 1,
            "expired": 0,
            "canceled": 0,
        }
    )
    assert view["chunks_finished"] == 3

    events = finished_events()
    assert sorted(event["detail-type"] for event in events) == ["Hilos Bulk Run Finished", "Hilos Run Finished"]
    [bulk_event] = [event for event in events if event["detail-type"] == "Hilos Bulk Run Finished"]
    jsonschema.validate(bulk_event["detail"], json.loads(open(BULK_SCHEMA_PATH).read()))  # noqa: SIM115
    assert bulk_event["detail"]["bulk_id"] == bulk_id
    assert bulk_event["detail"]["status"] == "COMPLETED_WITH_ERRORS"
    assert bulk_event["detail"]["counters"] == view["counters"]
    assert bulk_event["detail"]["contacts_url"] == f"/bulk-runs/{bulk_id}/contacts"
    [chunk_event] = [event for event in events if event["detail-type"] == "Hilos Run Finished"]
    jsonschema.validate(chunk_event["detail"], json.loads(open(SCHEMA_PATH).read()))  # noqa: SIM115
    assert chunk_event["detail"]["parent_id"] == bulk_id
    reads_when_finished = dict(hilos.reads)

    # Finished and announced: out of the sync index; later passes find nothing and ask Hilos nothing.
    assert sync_pass(aws, monkeypatch)["due"] == 0
    assert sync_pass(aws, monkeypatch)["due"] == 0
    assert dict(hilos.reads) == reads_when_finished
    assert finished_events() == []
    assert parent()["status"] == "COMPLETED_WITH_ERRORS"


def test_refresh_on_demand_reads_hilos_now_and_a_canceled_run_is_terminal(
    aws: Any, hilos: FakeHilos, finished_events: Any
):
    created = call_run_api("POST", f"/flows/{FLOW_ID}/runs", run_body(2))
    assert created.status == 201
    run_id = created.body["run"]["run_id"]
    assert get_run(run_id)["status"] == "SUBMITTED"
    assert sum(hilos.reads.values()) == 0  # a plain GET does not ask Hilos

    hilos.move_all("PAUSED", running=lambda n: n)
    paused = get_run(run_id, refresh="true")
    assert (paused["status"], paused["hilos_status"], paused["counters"]["running"]) == ("RUNNING", "PAUSED", 2)
    assert paused["synced_at"] is not None
    assert paused["next_sync_at"] is not None

    hilos.move_all("CANCELED", canceled=lambda n: n, running=lambda n: 0)
    canceled = get_run(run_id, refresh="true")
    assert canceled["status"] == "CANCELED"
    assert canceled["counters"]["canceled"] == 2
    assert canceled["event_published_at"] is not None
    assert canceled.get("next_sync_at") is None

    reads = sum(hilos.reads.values())
    assert get_run(run_id, refresh="true")["status"] == "CANCELED"
    assert sum(hilos.reads.values()) == reads  # finished: refresh has nothing to ask
    [event] = finished_events()
    assert event["detail"]["run_id"] == run_id
    assert event["detail"]["status"] == "CANCELED"


def test_two_syncs_of_one_run_never_announce_it_twice(aws: Any, hilos: FakeHilos, finished_events: Any):
    from hilos_runner import factories
    from hilos_runner.sync import SyncOutcome

    run_id = call_run_api("POST", f"/flows/{FLOW_ID}/runs", run_body(1)).body["run"]["run_id"]
    seen = factories.execution_store().get(uuid.UUID(run_id))
    assert seen is not None
    hilos.move_all("COMPLETED", completed=lambda n: n)

    _first, first_outcome = factories.status_sync().refresh(seen)
    second, second_outcome = factories.status_sync().refresh(seen)  # read before the first one wrote

    assert (first_outcome, second_outcome) == (SyncOutcome.FINISHED, SyncOutcome.CHANGED_MEANWHILE)
    assert second.status == "COMPLETED"  # the second one hands back what the first one stored
    assert len(finished_events()) == 1


def test_an_event_bridge_failure_is_published_at_the_next_pass_without_asking_hilos_again(
    aws: Any, hilos: FakeHilos, finished_events: Any, monkeypatch: pytest.MonkeyPatch
):
    from botocore.exceptions import ClientError

    from hilos_runner import completion_events

    run_id = call_run_api("POST", f"/flows/{FLOW_ID}/runs", run_body(1)).body["run"]["run_id"]
    hilos.move_all("COMPLETED", completed=lambda n: n)

    def refused(self: Any, **_: Any) -> Any:
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "PutEvents")

    with monkeypatch.context() as broken:
        broken.setattr(completion_events.CompletionEventPublisher, "publish", _raising_publish(refused))
        report = sync_pass(aws, monkeypatch)
    assert report["outcomes"] == {"failed": 1}
    record = get_run(run_id)
    assert record["status"] == "COMPLETED"
    assert record.get("event_published_at") is None
    assert "EventBridge" in record["sync_error"]
    reads = sum(hilos.reads.values())

    report = sync_pass(aws, monkeypatch)
    assert report["outcomes"] == {"finished": 1}
    assert sum(hilos.reads.values()) == reads  # the status was already known
    assert [event["detail"]["run_id"] for event in finished_events()] == [run_id]
    assert sync_pass(aws, monkeypatch)["due"] == 0


def _raising_publish(refusal: Any) -> Any:
    """CompletionEventPublisher.publish as if EventBridge's put_events call failed."""
    from hilos_runner.completion_events import CompletionEventPublisher

    real_publish = CompletionEventPublisher.publish

    def publish(self: CompletionEventPublisher, record: Any, at: Any) -> None:
        self._client = type("RefusingClient", (), {"put_events": refusal})()
        real_publish(self, record, at)

    return publish


def test_hilos_throttling_stops_the_pass_and_failures_wait_their_interval(
    aws: Any, hilos: FakeHilos, monkeypatch: pytest.MonkeyPatch
):
    for _ in range(3):
        assert call_run_api("POST", f"/flows/{FLOW_ID}/runs", run_body(1)).status == 201
    monkeypatch.setenv("WORKER_CONCURRENCY", "1")  # reads one after the other: the 429 comes first
    hilos.answer_reads(reply(429, {"detail": "Request was throttled."}), USUAL)

    report = sync_pass(aws, monkeypatch)

    assert report["throttled"] is True
    assert report["outcomes"] == {"failed": 1}
    assert report["not_reached"] == 2  # left for the next tick, not hammered
    assert sum(hilos.reads.values()) == 1


@pytest.mark.usefixtures("small_chunks")
def test_refresh_on_demand_moves_a_bulk_run_along_with_its_chunks_and_announces_it_once(
    aws: Any, runs_queue: RunsQueue, hilos: FakeHilos, finished_events: Any, monkeypatch: pytest.MonkeyPatch
):
    bulk_id = call_run_api("POST", f"/flows/{FLOW_ID}/bulk-runs", run_body(4)).body["id"]
    assert drain(runs_queue, aws, monkeypatch) == 2
    assert get_run(bulk_id)["status"] == "QUEUED"  # nothing has looked at it since its chunks were sent
    assert get_run(bulk_id, refresh="true")["status"] == "IN_PROGRESS"

    hilos.move_all("COMPLETED", completed=lambda n: n)
    sync_pass(aws, monkeypatch)  # the chunks finish (the parent follows in the same pass) ...
    assert get_run(bulk_id)["status"] == "COMPLETED"
    assert get_run(bulk_id, refresh="true")["status"] == "COMPLETED"  # ... and a refresh changes nothing more

    bulk_events = [event for event in finished_events() if event["detail-type"] == "Hilos Bulk Run Finished"]
    assert [event["detail"]["status"] for event in bulk_events] == ["COMPLETED"]
    assert sync_pass(aws, monkeypatch)["due"] == 0
