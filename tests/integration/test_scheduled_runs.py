"""Scheduled runs in-process (issue 17): run_api and bulk_worker under moto with a fake Hilos, EventBridge Scheduler
being moto's (it keeps schedules, local.schedules fires them).

The clock the worker judges "not before" by is moved to the run's start time where a test fires a schedule, so no
test waits or depends on timing; tests/e2e/test_scheduled_runs.py does it for real, through the local stack.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tests.fake_hilos import USUAL, FakeHilos, reply
from tests.helpers import (
    FLOW_ID,
    RunsQueue,
    call_run_api,
    contact,
    deliver,
    queued_run,
    run_body,
    use_function_environment,
)

RUNS = f"/flows/{FLOW_ID}/runs"
BULK = f"/flows/{FLOW_ID}/bulk-runs"


def iso(moment: datetime) -> str:
    return moment.isoformat()


def in_an_hour() -> datetime:
    return (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)


@pytest.fixture
def hilos_runs(hilos: FakeHilos) -> FakeHilos:
    """Hilos accepts every run; ``.run_calls`` is how many it was asked to start."""
    return hilos


@dataclass
class Scheduling:
    """The stack under test: moto's scheduler and runs queue, the worker, and the clock the worker judges by."""

    aws: Any
    runs_queue: RunsQueue
    monkeypatch: pytest.MonkeyPatch
    scheduler: Any
    group: str

    def now_is(self, moment: datetime) -> None:
        """What hilos_runner.scheduling takes for now while the worker runs (the API keeps the real time)."""
        self.monkeypatch.setattr("hilos_runner.scheduling.utc_now", lambda: moment)

    def schedules(self) -> list[dict[str, Any]]:
        names = [item["Name"] for item in self.scheduler.list_schedules(GroupName=self.group)["Schedules"]]
        return [self.scheduler.get_schedule(GroupName=self.group, Name=name) for name in names]

    def fire(self, at: datetime) -> list[Any]:
        """What EventBridge Scheduler does at ``at``: every due schedule's message sent to its queue, then deleted."""
        import boto3

        from local.schedules import OneTimeSchedules

        schedules = OneTimeSchedules(self.scheduler, boto3.client("sqs"), [self.group], clock=lambda: at)
        return schedules.fire_due()

    def send(self, body: str) -> None:
        self.runs_queue.sqs.send_message(QueueUrl=self.runs_queue.url, MessageBody=body)

    def work(self, *, rounds: int = 10) -> list[Any]:
        """bulk_worker (its own environment) takes what is visible on the queue, a few polls; returns its answers."""
        from hilos_runner import factories

        answers = []
        with self.monkeypatch.context() as env:
            use_function_environment(self.aws, "BulkWorkerFunction", env.setenv)
            # Records of a batch one after the other: two copies of a start message meet in a conditional write,
            # which DynamoDB makes atomic and moto does not.
            env.setenv("WORKER_CONCURRENCY", "1")
            for _ in range(rounds):
                messages, answer = deliver(self.runs_queue.sqs, self.runs_queue.url, self.runs_queue.arn)
                if not messages:
                    break
                answers.append(answer)
        factories.reset()
        use_function_environment(self.aws, "RunApiFunction", self.monkeypatch.setenv)
        return answers


@pytest.fixture
def stack(aws: Any, runs_queue: RunsQueue, monkeypatch: pytest.MonkeyPatch) -> Scheduling:
    import boto3

    return Scheduling(aws, runs_queue, monkeypatch, boto3.client("scheduler"), str(aws.physical_ids["RunSchedules"]))


def record(run_id: str) -> dict[str, Any]:
    answer = call_run_api("GET", f"/runs/{run_id}")
    assert answer.status == 200
    return dict(answer.body)


def start_message(*run_ids: str) -> str:
    return json.dumps({"scheduled_runs": list(run_ids)})


@pytest.fixture
def scheduled(aws: Any) -> tuple[str, datetime]:
    """A one-contact run scheduled an hour ahead: (run id, start time)."""
    start_at = in_an_hour()
    answer = call_run_api("POST", RUNS, run_body(), query={"start_at": iso(start_at)})
    assert answer.status == 202, answer.body
    return answer.body["run"]["run_id"], start_at


class TestScheduling:
    def test_a_scheduled_run_is_recorded_and_scheduled_not_started(
        self, scheduled: tuple[str, datetime], stack: Scheduling, hilos_runs: Any
    ):
        run_id, start_at = scheduled
        run = record(run_id)
        assert run["status"] == "SCHEDULED"
        assert datetime.fromisoformat(run["start_at"]) == start_at
        assert run["hilos_execution_id"] is None
        (schedule,) = stack.schedules()
        assert schedule["Name"] == f"run-{run_id}"
        assert schedule["ScheduleExpression"] == f"at({start_at.astimezone(UTC):%Y-%m-%dT%H:%M:%S})"
        assert schedule["ScheduleExpressionTimezone"] == "UTC"
        assert schedule["ActionAfterCompletion"] == "DELETE"
        assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
        assert schedule["Target"]["Arn"] == stack.aws.attributes[("RunsQueue", "Arn")]
        assert schedule["Target"]["RoleArn"] == stack.aws.attributes[("RunSchedulerRole", "Arn")]
        assert json.loads(schedule["Target"]["Input"]) == {"scheduled_runs": [run_id]}
        assert hilos_runs.run_calls == 0

    def test_an_offset_is_kept_as_the_same_instant(self, stack: Scheduling):
        mexico = in_an_hour().astimezone(timezone(timedelta(hours=-6)))  # ...T03:00:00-06:00
        answer = call_run_api("POST", RUNS, run_body(), query={"start_at": mexico.isoformat()})
        assert answer.status == 202
        (schedule,) = stack.schedules()
        assert schedule["ScheduleExpression"] == f"at({mexico.astimezone(UTC):%Y-%m-%dT%H:%M:%S})"

    def test_it_starts_once_at_its_time_however_often_its_message_comes(
        self, scheduled: tuple[str, datetime], stack: Scheduling, hilos_runs: Any
    ):
        run_id, start_at = scheduled
        assert stack.fire(start_at - timedelta(seconds=1)) == []  # not yet
        assert len(stack.fire(start_at)) == 1
        assert stack.schedules() == []  # ActionAfterCompletion: DELETE
        stack.send(start_message(run_id))  # EventBridge delivers at least once: here twice
        stack.now_is(start_at)
        stack.work()
        assert hilos_runs.run_calls == 1
        run = record(run_id)
        assert run["status"] == "SUBMITTED"
        assert run["attempts"] == 1
        stack.send(start_message(run_id))  # a late redelivery
        stack.work()
        assert hilos_runs.run_calls == 1

    def test_a_start_message_that_comes_early_waits_for_its_time(
        self, scheduled: tuple[str, datetime], stack: Scheduling, hilos_runs: Any
    ):
        run_id, start_at = scheduled
        stack.send(start_message(run_id))
        stack.now_is(start_at - timedelta(seconds=30))
        (answer,) = stack.work()
        assert len(answer["batchItemFailures"]) == 1  # back on the queue, visible again in 30 s
        assert hilos_runs.run_calls == 0
        assert record(run_id)["status"] == "SCHEDULED"

    def test_a_5xx_puts_it_back_to_scheduled_and_the_next_delivery_starts_it_once(
        self, scheduled: tuple[str, datetime], stack: Scheduling, hilos: FakeHilos
    ):
        run_id, start_at = scheduled
        hilos.answer_runs(reply(503), USUAL)
        stack.send(start_message(run_id))
        stack.now_is(start_at)
        (answer,) = stack.work()
        assert len(answer["batchItemFailures"]) == 1
        waiting = record(run_id)
        assert waiting["status"] == "SCHEDULED"
        assert "attempt 1 of 5" in waiting["last_error"]
        stack.send(start_message(run_id))  # the same message, delivered again (the worker delayed the first 10 s)
        stack.work()
        assert hilos.run_calls == 2  # the refused call, then the one that started it
        assert len(hilos.executions) == 1
        assert record(run_id)["status"] == "SUBMITTED"

    def test_a_keyed_repeat_answers_the_same_scheduled_run(self, stack: Scheduling):
        query = {"start_at": iso(in_an_hour())}
        first = call_run_api("POST", RUNS, run_body(), headers={"Idempotency-Key": "s-1"}, query=query)
        again = call_run_api("POST", RUNS, run_body(), headers={"Idempotency-Key": "s-1"}, query=query)
        assert first.status == again.status == 202
        assert again.body["run"]["run_id"] == first.body["run"]["run_id"]
        assert len(stack.schedules()) == 1
        later = {"start_at": iso(in_an_hour() + timedelta(minutes=5))}
        other = call_run_api("POST", RUNS, run_body(), headers={"Idempotency-Key": "s-1"}, query=later)
        assert other.status == 422  # the same key with another start time is another request
        assert other.body["code"] == "idempotency_key_reused"

    def test_a_start_within_the_scheduler_precision_goes_straight_onto_the_queue(
        self, stack: Scheduling, hilos_runs: Any
    ):
        start_at = datetime.now(UTC) - timedelta(seconds=10)  # a caller's clock a little behind: within tolerance
        answer = call_run_api("POST", RUNS, run_body(), query={"start_at": iso(start_at)})
        assert answer.status == 202
        assert stack.schedules() == []
        stack.work()
        assert hilos_runs.run_calls == 1
        assert record(answer.body["run"]["run_id"])["status"] == "SUBMITTED"


class TestRefusals:
    @pytest.mark.parametrize(
        ("ahead", "reason"),
        [(timedelta(minutes=-5), "in the past"), (timedelta(days=31), "more than 30 days ahead")],
    )
    def test_a_past_or_too_far_start_at_is_a_422_naming_the_field(
        self, ahead: timedelta, reason: str, stack: Scheduling, hilos_runs: Any
    ):
        start_at = iso(datetime.now(UTC) + ahead)
        answer = call_run_api("POST", RUNS, run_body(), query={"start_at": start_at})
        assert answer.status == 422
        (detail,) = answer.body["details"]
        assert detail["field"] == "query.start_at"
        assert reason in detail["reason"]
        bulk = call_run_api("POST", BULK, {**run_body(3), "start_at": start_at})
        assert bulk.status == 422
        assert [d["field"] for d in bulk.body["details"]] == ["body.start_at"]
        csv = "phone\n+5215512345001\n"
        answer = call_run_api("POST", BULK, csv, headers={"Content-Type": "text/csv"}, query={"start_at": start_at})
        assert answer.status == 422
        assert [d["field"] for d in answer.body["details"]] == ["query.start_at"]
        assert stack.schedules() == []
        assert call_run_api("GET", RUNS).body["items"] == []
        assert hilos_runs.run_calls == 0

    def test_a_start_at_without_an_offset_is_a_422(self, aws: Any):
        answer = call_run_api("POST", RUNS, run_body(), query={"start_at": "2030-01-31T09:00:00"})
        assert answer.status == 422
        assert [d["field"] for d in answer.body["details"]] == ["query.start_at"]

    def test_a_queued_message_with_a_past_start_at_is_rejected_naming_it(self, stack: Scheduling, hilos_runs: Any):
        stack.send(json.dumps(queued_run(start_at=iso(datetime.now(UTC) - timedelta(hours=2)))))
        (answer,) = stack.work()
        assert answer["batchItemFailures"] == []
        (run,) = call_run_api("GET", RUNS).body["items"]
        assert run["status"] == "REJECTED"
        assert "start_at: is in the past" in run["last_error"]
        assert hilos_runs.run_calls == 0


class TestCancel:
    def test_a_canceled_run_never_starts(self, scheduled: tuple[str, datetime], stack: Scheduling, hilos_runs: Any):
        run_id, start_at = scheduled
        answer = call_run_api("DELETE", f"/runs/{run_id}")
        assert answer.status == 200
        assert answer.body["status"] == "CANCELED"
        assert answer.body["canceled_at"] is not None
        assert answer.body["hilos_execution_id"] is None
        assert "never sent to Hilos" in answer.body["last_error"]
        assert stack.schedules() == []
        # A schedule that fired just before the cancel reached it: its message starts nothing.
        stack.send(start_message(run_id))
        stack.now_is(start_at)
        stack.work()
        assert stack.fire(start_at + timedelta(days=1)) == []
        assert hilos_runs.run_calls == 0
        assert record(run_id)["status"] == "CANCELED"
        again = call_run_api("DELETE", f"/runs/{run_id}")
        assert again.status == 200
        assert again.body["canceled_at"] == answer.body["canceled_at"]
        contacts = call_run_api("GET", f"/runs/{run_id}/contacts").body["items"]
        assert [(c["status"], c["reason"]) for c in contacts] == [("NOT_STARTED", answer.body["last_error"])]

    def test_a_started_run_cannot_be_canceled(self, aws: Any, hilos_runs: Any):
        started = call_run_api("POST", RUNS, run_body())
        assert started.status == 201
        answer = call_run_api("DELETE", f"/runs/{started.body['run']['run_id']}")
        assert answer.status == 409
        assert answer.body["code"] == "run_not_cancelable"
        assert record(started.body["run"]["run_id"])["status"] == "SUBMITTED"

    def test_an_unknown_run_is_404(self, aws: Any):
        assert call_run_api("DELETE", "/runs/6b1e9c6e-2b5f-4c43-9a59-1f0e7c7b1a11").status == 404
        assert call_run_api("DELETE", "/bulk-runs/6b1e9c6e-2b5f-4c43-9a59-1f0e7c7b1a11").status == 404


def submit_scheduled_bulk(contacts: int, start_at: datetime) -> dict[str, Any]:
    body = {"contact_list": [contact(phone=f"+52155123{index:05d}") for index in range(contacts)]}
    answer = call_run_api("POST", BULK, {**body, "start_at": iso(start_at)})
    assert answer.status == 202, answer.body
    return dict(answer.body)


class TestBulk:
    def test_a_scheduled_bulk_run_starts_every_chunk_once(self, stack: Scheduling, hilos_runs: Any):
        start_at = in_an_hour()
        accepted = submit_scheduled_bulk(600, start_at)
        assert accepted["chunks"] == 3
        bulk = call_run_api("GET", f"/bulk-runs/{accepted['id']}").body
        assert bulk["status"] == "SCHEDULED"
        assert bulk["chunks_by_status"] == {"SCHEDULED": 3}
        (schedule,) = stack.schedules()
        assert json.loads(schedule["Target"]["Input"]) == {"scheduled_runs": [accepted["id"]]}
        assert stack.runs_queue.take_bodies() == []  # nothing queued before the time
        stack.fire(start_at)
        stack.now_is(start_at)
        stack.work()
        assert hilos_runs.run_calls == 3
        stack.send(start_message(accepted["id"]))  # the schedule fires twice: still one start per chunk
        stack.work()
        assert hilos_runs.run_calls == 3
        bulk = call_run_api("GET", f"/bulk-runs/{accepted['id']}").body
        assert bulk["chunks_by_status"] == {"SUBMITTED": 3}
        assert sorted(chunk["chunk_index"] for chunk in bulk["chunks"]) == [0, 1, 2]
        assert call_run_api("DELETE", f"/bulk-runs/{accepted['id']}").status == 409

    def test_a_canceled_bulk_run_starts_no_chunk(self, stack: Scheduling, hilos_runs: Any):
        start_at = in_an_hour()
        accepted = submit_scheduled_bulk(300, start_at)
        answer = call_run_api("DELETE", f"/bulk-runs/{accepted['id']}")
        assert answer.status == 200
        assert answer.body["status"] == "CANCELED"
        assert answer.body["chunks_by_status"] == {"CANCELED": 2}
        assert stack.schedules() == []
        stack.send(start_message(accepted["id"]))
        stack.now_is(start_at)
        stack.work()
        assert hilos_runs.run_calls == 0
        assert call_run_api("GET", f"/bulk-runs/{accepted['id']}").body["status"] == "CANCELED"


class TestQueuedMessage:
    def test_a_queued_message_with_start_at_is_scheduled_and_starts_then(self, stack: Scheduling, hilos_runs: Any):
        start_at = in_an_hour()
        message = queued_run(300, start_at=iso(start_at), idempotency_key="crm-1")  # two parts of 250 and 50
        stack.send(json.dumps(message))
        stack.work()
        (schedule,) = stack.schedules()
        parts = json.loads(schedule["Target"]["Input"])["scheduled_runs"]
        assert len(parts) == 2
        assert {record(part)["status"] for part in parts} == {"SCHEDULED"}
        assert hilos_runs.run_calls == 0
        stack.fire(start_at)
        stack.now_is(start_at)
        stack.work()
        assert hilos_runs.run_calls == 2
        assert {record(part)["status"] for part in parts} == {"SUBMITTED"}
