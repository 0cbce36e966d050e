"""Status sync over real sockets: a run started over HTTP (or from the queue) is followed by the scheduled
StatusSyncFunction through the Hilos sandbox until Hilos finishes it; its record shows RUNNING, then COMPLETED (or
CANCELED) with the sandbox's counters; exactly one "Hilos Run Finished" event reaches the completion events queue
(through the stack's own EventBridge bus and rule); and a finished run is no longer read from Hilos.

The stack of this module is its own: the sandbox moves a run one stage per status read (per_read) and the schedule
fires every second; with a local interval the stack makes every tick read every started run (the status sync's
minimum and maximum intervals 0 and 1 s), so a run finishes within a few ticks. ``hold_flows`` keeps a flow's runs
RUNNING for as long as a test needs to look at them.
"""

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from local.running_stack import RunningStack, wait_for
from tests.e2e.conftest import SYNC_STACK_ARGS, sandbox_token, stack_of_tests
from tests.e2e.local_stack import WAIT_SECONDS, CompletionEvents, run_record, wait_for_status

pytestmark = pytest.mark.e2e

# The sandbox's defaults: phones ending in 7 fail, in 9 expire, the others complete.
PHONES = ["+5215500000017", "+5215500000029", "+5215500000031", "+5215500000042", "+5215500000057"]
RUNNING_COUNTERS = {"running": 3, "completed": 0, "failed": 2, "expired": 0, "canceled": 0}
COMPLETED_COUNTERS = {"running": 0, "completed": 2, "failed": 2, "expired": 1, "canceled": 0}
CANCELED_COUNTERS = {"running": 0, "completed": 0, "failed": 2, "expired": 0, "canceled": 3}


@pytest.fixture(scope="module")
def sync_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with stack_of_tests(tmp_path_factory.mktemp("sync-stack"), *SYNC_STACK_ARGS) as stack:
        yield stack


@pytest.fixture(scope="module")
def completion_events(sync_stack: RunningStack) -> CompletionEvents:
    return CompletionEvents(sync_stack)


def status_reads(stack: RunningStack, execution_id: str) -> int:
    reads: int = stack.sandbox_stats()["status_reads"].get(execution_id, 0)
    return reads


def start_run(stack: RunningStack, flow_id: str) -> dict[str, Any]:
    body = {"contact_list": [{"phone": phone} for phone in PHONES]}
    answer = stack.api("POST", f"/flows/{flow_id}/runs", json=body)
    assert answer.status_code == 201, answer.text
    run: dict[str, Any] = answer.json()["run"]
    assert run["status"] == "SUBMITTED"
    return run


def event_of(completion_events: CompletionEvents, run_id: str) -> dict[str, Any]:
    events = wait_for(lambda: completion_events.poll() and completion_events.of_run(run_id), timeout=WAIT_SECONDS)
    assert events, f"no completion event for {run_id} in {WAIT_SECONDS} s"
    [event] = events
    return event


def test_a_run_is_followed_to_completed_announced_once_and_then_no_longer_read(
    sync_stack: RunningStack, completion_events: CompletionEvents
):
    flow_id, witness_flow = str(uuid.uuid4()), str(uuid.uuid4())
    sync_stack.set_faults(hold_flows={flow_id: "RUNNING", witness_flow: "RUNNING"})
    run = start_run(sync_stack, flow_id)
    run_id, execution_id = run["run_id"], run["hilos_execution_id"]

    # Held RUNNING: the record shows the contacts in the flow, and the sync keeps reading.
    running = wait_for_status(sync_stack, run_id, "RUNNING")
    assert running["counters"] == RUNNING_COUNTERS
    reads_while_running = status_reads(sync_stack, execution_id)
    assert wait_for(lambda: status_reads(sync_stack, execution_id) > reads_while_running, timeout=WAIT_SECONDS)
    completion_events.poll()
    assert completion_events.of_run(run_id) == []  # not finished, not announced

    sync_stack.set_faults(hold_flows={witness_flow: "RUNNING"})
    completed = wait_for_status(sync_stack, run_id, "COMPLETED")
    assert completed["counters"] == COMPLETED_COUNTERS
    assert sum(completed["counters"].values()) == completed["num_contacts"] == len(PHONES)
    assert completed["hilos_execution_id"] == execution_id

    event = event_of(completion_events, run_id)
    assert (event["source"], event["detail-type"]) == ("hilos-runner", "Hilos Run Finished")
    detail = event["detail"]
    assert detail["status"] == detail["hilos_status"] == "COMPLETED"
    assert (detail["flow_id"], detail["hilos_execution_id"]) == (flow_id, execution_id)
    assert detail["num_contacts"] == len(PHONES)
    assert detail["counters"] == COMPLETED_COUNTERS
    assert detail["parent_id"] is None
    assert detail["finished_at"]

    # Finished: no more status reads for it, while the sync keeps reading a witness run held RUNNING.
    reads_when_finished = status_reads(sync_stack, execution_id)
    witness = start_run(sync_stack, witness_flow)
    wait_for_status(sync_stack, witness["run_id"], "RUNNING")
    witness_reads = status_reads(sync_stack, witness["hilos_execution_id"])
    assert wait_for(
        lambda: status_reads(sync_stack, witness["hilos_execution_id"]) >= witness_reads + 3, timeout=WAIT_SECONDS
    ), "the sync stopped reading the witness run"
    assert status_reads(sync_stack, execution_id) == reads_when_finished
    completion_events.poll()
    assert len(completion_events.of_run(run_id)) == 1  # announced exactly once
    assert completion_events.of_run(witness["run_id"]) == []
    assert run_record(sync_stack, run_id)["counters"] == COMPLETED_COUNTERS

    # What the record says is what the sandbox says (a finished run answers the same to any read).
    sandbox_detail = sandbox_read(sync_stack, execution_id)
    assert sandbox_detail["status"] == "COMPLETED"
    assert {name: sandbox_detail[name] for name in COMPLETED_COUNTERS} == completed["counters"]
    sync_stack.set_faults(hold_flows={})


def test_a_canceled_run_ends_canceled_with_one_event(sync_stack: RunningStack, completion_events: CompletionEvents):
    flow_id = str(uuid.uuid4())
    sync_stack.set_faults(cancel_flows=[flow_id])
    run = start_run(sync_stack, flow_id)

    canceled = wait_for_status(sync_stack, run["run_id"], "CANCELED")

    assert canceled["counters"] == CANCELED_COUNTERS
    event = event_of(completion_events, run["run_id"])
    assert event["detail"]["status"] == event["detail"]["hilos_status"] == "CANCELED"
    assert event["detail"]["counters"] == CANCELED_COUNTERS


def test_faulted_status_reads_are_read_again_and_the_run_still_finishes_once(
    sync_stack: RunningStack, completion_events: CompletionEvents
):
    flow_id = str(uuid.uuid4())
    run = start_run(sync_stack, flow_id)
    # The flow's next three status reads fail: refused at the gateway, answered too late, or reset.
    sync_stack.set_faults(
        flows={flow_id: {"rate": 1, "mix": {"503": 1, "slow": 1, "reset": 1}, "limit": 3, "targets": ["status"]}}
    )

    completed = wait_for_status(sync_stack, run["run_id"], "COMPLETED")

    reads = [call for call in sync_stack.sandbox_stats()["recent_status_reads"] if call["flow_id"] == flow_id]
    assert len([call for call in reads if call["fault"]]) == 3
    assert completed["counters"] == COMPLETED_COUNTERS
    event_of(completion_events, run["run_id"])  # exactly one
    assert sync_stack.sandbox_stats()["flows"][flow_id] == {"calls": 1, "created": 1}  # started once


def test_a_queued_run_is_followed_to_completed_too(sync_stack: RunningStack, completion_events: CompletionEvents):
    flow_id = str(uuid.uuid4())
    body = {"flow_id": flow_id, "contact_list": [{"phone": phone} for phone in PHONES]}
    sync_stack.aws_client("sqs").send_message(QueueUrl=sync_stack.info["queue_url"], MessageBody=json.dumps(body))

    runs = wait_for(
        lambda: sync_stack.api("GET", f"/flows/{flow_id}/runs").json()["items"], timeout=WAIT_SECONDS, interval=0.5
    )
    assert runs, "the queued run was not recorded"
    [run] = runs
    completed = wait_for_status(sync_stack, run["run_id"], "COMPLETED")

    assert completed["counters"] == COMPLETED_COUNTERS
    assert event_of(completion_events, run["run_id"])["detail"]["counters"] == COMPLETED_COUNTERS


def sandbox_read(stack: RunningStack, execution_id: str) -> dict[str, Any]:
    """Get Flow Execution from the sandbox, as the functions call it (the token from the stack's secret)."""
    answer = requests.get(
        f"{stack.info['hilos_url']}/flow-execution/{execution_id}",
        headers={"Authorization": f"Token {sandbox_token(stack)}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    detail: dict[str, Any] = answer.json()
    return detail
