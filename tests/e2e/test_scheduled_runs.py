"""Scheduled runs through the local stack (issue 17): run_api creates one-time schedules in moto's EventBridge
Scheduler, the stack fires them at their time onto the runs queue (local.schedules), bulk_worker starts the runs, and
the Hilos sandbox counts every call. Each test uses its own flow, so the sandbox's calls are its own."""

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from local.running_stack import RunningStack, wait_for
from tests.e2e.local_stack import WAIT_SECONDS, run_record

pytestmark = pytest.mark.e2e

AHEAD = timedelta(seconds=5)


def schedule_run(stack: RunningStack, flow_id: str, phone: str, start_at: datetime) -> str:
    body = {"contact_list": [{"phone": phone}]}
    answer = stack.api("POST", f"/flows/{flow_id}/runs", params={"start_at": start_at.isoformat()}, json=body)
    assert answer.status_code == 202, answer.text
    assert answer.json()["run"]["status"] == "SCHEDULED"
    return str(answer.json()["run"]["run_id"])


def calls_when(stack: RunningStack, flow_id: str, count: int) -> list[dict[str, Any]]:
    """The sandbox's run calls for ``flow_id`` once there are ``count`` of them (or what there is after the wait)."""
    wait_for(lambda: len(stack.calls_for(flow_id)) >= count, timeout=WAIT_SECONDS, interval=0.2)
    return stack.calls_for(flow_id)


def started_at(call: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(call["at"])


def test_a_run_scheduled_5_s_ahead_starts_once_at_that_time(local_stack: RunningStack):
    flow_id = str(uuid.uuid4())
    start_at = datetime.now(UTC) + AHEAD
    run_id = schedule_run(local_stack, flow_id, "+5215512340001", start_at)
    assert local_stack.calls_for(flow_id) == []
    (call,) = calls_when(local_stack, flow_id, 1)
    assert started_at(call) >= start_at  # not before
    assert call["created"]
    record = wait_for(
        lambda: (found := run_record(local_stack, run_id))["status"] == "SUBMITTED" and found, timeout=WAIT_SECONDS
    )
    assert record, run_record(local_stack, run_id)
    assert record["hilos_execution_id"] is not None
    time.sleep(2)  # the schedule is gone (deleted after it fired); nothing starts it again
    assert len(local_stack.calls_for(flow_id)) == 1
    assert local_stack.sandbox_stats()["flows"][flow_id]["created"] == 1


def test_a_canceled_run_never_starts(local_stack: RunningStack):
    flow_id, sentinel_flow = str(uuid.uuid4()), str(uuid.uuid4())
    start_at = datetime.now(UTC) + AHEAD
    run_id = schedule_run(local_stack, flow_id, "+5215512340002", start_at)
    schedule_run(local_stack, sentinel_flow, "+5215512340003", start_at)  # shows when the time has come and gone
    answer = local_stack.api("DELETE", f"/runs/{run_id}")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "CANCELED"
    assert answer.json()["canceled_at"] is not None
    # As if its schedule had fired just before the cancel: the start message comes anyway.
    sqs = local_stack.aws_client("sqs")
    sqs.send_message(QueueUrl=local_stack.info["queue_url"], MessageBody=f'{{"scheduled_runs": ["{run_id}"]}}')
    assert calls_when(local_stack, sentinel_flow, 1)
    time.sleep(1)
    assert local_stack.calls_for(flow_id) == []
    assert run_record(local_stack, run_id)["status"] == "CANCELED"
    assert local_stack.api("DELETE", f"/runs/{run_id}").status_code == 200  # repeatable
    started = local_stack.api("DELETE", f"/runs/{run_record_of(local_stack, sentinel_flow)}")
    assert started.status_code == 409


def run_record_of(stack: RunningStack, flow_id: str) -> str:
    (run,) = stack.api("GET", f"/flows/{flow_id}/runs").json()["items"]
    return str(run["run_id"])


def test_a_past_or_too_far_start_at_is_a_422_naming_the_field(local_stack: RunningStack):
    flow_id = str(uuid.uuid4())
    for start_at in (datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC) + timedelta(days=60)):
        answer = local_stack.api(
            "POST",
            f"/flows/{flow_id}/runs",
            params={"start_at": start_at.isoformat()},
            json={"contact_list": [{"phone": "+5215512340004"}]},
        )
        assert answer.status_code == 422, answer.text
        assert [detail["field"] for detail in answer.json()["details"]] == ["query.start_at"]
    assert local_stack.api("GET", f"/flows/{flow_id}/runs").json()["items"] == []


def test_a_scheduled_bulk_run_starts_every_chunk_once(local_stack: RunningStack):
    flow_id = str(uuid.uuid4())
    start_at = datetime.now(UTC) + AHEAD
    csv = "phone\n" + "".join(f"+52155123410{index:02d}\n" for index in range(5))  # chunks of 2: three chunks
    answer = local_stack.api(
        "POST",
        f"/flows/{flow_id}/bulk-runs",
        params={"start_at": start_at.isoformat()},
        data=csv,
        headers={"Content-Type": "text/csv"},
    )
    assert answer.status_code == 202, answer.text
    bulk_id = answer.json()["id"]
    assert answer.json()["chunks"] == 3
    assert local_stack.api("GET", f"/bulk-runs/{bulk_id}").json()["status"] == "SCHEDULED"
    calls = calls_when(local_stack, flow_id, 3)
    assert all(started_at(call) >= start_at for call in calls)
    bulk = wait_for(
        lambda: (
            (found := local_stack.api("GET", f"/bulk-runs/{bulk_id}").json())["chunks_by_status"] == {"SUBMITTED": 3}
            and found
        ),
        timeout=WAIT_SECONDS,
    )
    assert bulk, local_stack.api("GET", f"/bulk-runs/{bulk_id}").json()
    time.sleep(2)
    stats = local_stack.sandbox_stats()
    assert stats["flows"][flow_id]["created"] == 3
    assert len(local_stack.calls_for(flow_id)) == 3
