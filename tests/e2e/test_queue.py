"""The queue path over real sockets: a bulk submit over HTTP and a message from a plain boto3 producer are
both worked off by bulk_worker (fed by the local poller with the event source mapping's semantics), and
Hilos' faults are retried, recorded or dead-lettered, with no run started twice."""

import json
import uuid
from typing import Any

import pytest

from local.running_stack import RunningStack, wait_for
from tests.helpers import contact

pytestmark = pytest.mark.e2e

WAIT_SECONDS = 40


def new_flow() -> str:
    return str(uuid.uuid4())


def contacts(count: int, *, prefix: str) -> list[dict[str, Any]]:
    """Distinct phones per test, so that the sandbox's per-contact-list counts are this test's own."""
    # A WhatsApp-style Mexican mobile: +52 1 and ten digits (the prefix's and the number's).
    return [contact(phone=f"+521{prefix:0<6.6}{number:04d}") for number in range(count)]


def unique_prefix() -> str:
    return str(uuid.uuid4().int)[:5]  # six digits with a message's own digit (contacts() takes six)


def send(stack: RunningStack, flow_id: str, **fields: Any) -> str:
    """Put a run on the queue as any producer would: boto3, the stack's endpoint, fake credentials."""
    body = {"flow_id": flow_id, "contact_list": contacts(1, prefix=unique_prefix()), **fields}
    sqs = stack.aws_client("sqs")
    return sqs.send_message(QueueUrl=stack.info["queue_url"], MessageBody=json.dumps(body))["MessageId"]


def runs_of(stack: RunningStack, flow_id: str) -> list[dict[str, Any]]:
    answer = stack.api("GET", f"/flows/{flow_id}/runs", params={"limit": "100"})
    assert answer.status_code == 200, answer.text
    return answer.json()["items"]


def queue_drained(stack: RunningStack) -> bool:
    """No message left on the runs queue: none waiting, in flight or delayed."""
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    sqs = stack.aws_client("sqs")
    attributes = sqs.get_queue_attributes(QueueUrl=stack.info["queue_url"], AttributeNames=names)["Attributes"]
    return all(attributes[name] == "0" for name in names)


def finished_runs(stack: RunningStack, flow_id: str, count: int) -> list[dict[str, Any]]:
    """The flow's ``count`` runs once the queue is drained (every message deleted or dead-lettered), so
    their records are final: while a message is retried its record may briefly read FAILED. None may be
    waiting either (QUEUED, SENDING): moto counts a message that turns visible just as a poller receives it
    as neither visible nor in flight, so "drained" alone can be seen while a retry is due."""
    runs = wait_for(
        lambda: (
            queue_drained(stack)
            and len(found := runs_of(stack, flow_id)) == count
            and not any(run["status"] in ("QUEUED", "SENDING") for run in found)
            and found
        ),
        timeout=WAIT_SECONDS,
        interval=0.5,
    )
    assert runs, f"the runs of {flow_id} did not all finish in {WAIT_SECONDS} s: {runs_of(stack, flow_id)}"
    return runs


def no_duplicates_for(stack: RunningStack, flow_id: str) -> None:
    stats = stack.sandbox_stats()
    repeated = [fp for fp in stats["duplicates"] if stats["contact_lists"][fp]["flow_id"] == flow_id]
    assert not repeated, f"the sandbox started the same contact list twice for {flow_id}"


def test_a_bulk_submit_over_http_completes(local_stack: RunningStack):
    flow_id = new_flow()
    body = {"contact_list": contacts(5, prefix=unique_prefix()), "flow_execution_variables": {"batch": "e2e"}}

    accepted = local_stack.api("POST", f"/flows/{flow_id}/bulk-runs", json=body)

    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["chunks"] == 3  # BulkChunkSize=2
    status_url = accepted.json()["status_url"]
    # Absolute, through the local front as deployed: `curl "$status_url"` works as it is.
    assert status_url == f"{local_stack.info['api_url']}/bulk-runs/{accepted.json()['id']}"
    progress = wait_for(
        lambda: (
            (answer := local_stack.api("GET", status_url).json())["chunks_by_status"] == {"SUBMITTED": 3} and answer
        ),
        timeout=WAIT_SECONDS,
        interval=0.5,
    )
    assert progress, f"the chunks were not all started: {local_stack.api('GET', status_url).json()}"
    # Every chunk started; this stack's status sync never ticks, so none finishes: the bulk run is still going.
    assert progress["status"] == "IN_PROGRESS"
    assert progress["contacts_by_status"] == {"SUBMITTED": 5}
    calls = local_stack.calls_for(flow_id)
    assert sorted(call["num_contacts"] for call in calls) == [1, 2, 2]
    assert all(call["auth_scheme"] == "Token" and call["body_valid"] for call in calls)
    assert {chunk["hilos_execution_id"] for chunk in progress["chunks"]} == {call["execution_id"] for call in calls}
    no_duplicates_for(local_stack, flow_id)


def test_a_message_from_a_plain_boto3_producer_completes(local_stack: RunningStack):
    flow_id = new_flow()

    send(local_stack, flow_id, has_priority=True)

    [run] = finished_runs(local_stack, flow_id, 1)
    assert run["status"] == "SUBMITTED"
    assert run["source"] == "QUEUE"
    assert run["attempts"] == 1
    [call] = local_stack.calls_for(flow_id)
    assert call["auth_scheme"] == "Token"
    assert call["body_valid"] is True
    assert run["hilos_execution_id"] == call["execution_id"]


@pytest.mark.parametrize("fault", ["503", "429", "500"])
def test_transient_hilos_failures_are_retried_until_the_run_starts_once(local_stack: RunningStack, fault):
    flow_id = new_flow()
    local_stack.set_faults(flows={flow_id: {"rate": 1, "mix": {fault: 1}, "limit": 2}})

    send(local_stack, flow_id)

    [run] = finished_runs(local_stack, flow_id, 1)
    assert run["status"] == "SUBMITTED", (run, local_stack.calls_for(flow_id), str(local_stack.log_path))
    assert run["attempts"] == 3  # the real ApproximateReceiveCount of the delivery that succeeded
    assert [call["status"] for call in local_stack.calls_for(flow_id)] == [int(fault), int(fault), 201]
    no_duplicates_for(local_stack, flow_id)


def test_permanent_refusals_are_recorded_and_not_retried(local_stack: RunningStack):
    rejected_flow, unknown_flow = new_flow(), new_flow()
    local_stack.set_faults(reject_flows=[rejected_flow], unknown_flows=[unknown_flow])

    send(local_stack, rejected_flow)
    send(local_stack, unknown_flow)

    assert finished_runs(local_stack, rejected_flow, 1)[0]["status"] == "REJECTED"
    assert finished_runs(local_stack, unknown_flow, 1)[0]["status"] == "FAILED"
    assert [call["status"] for call in local_stack.calls_for(rejected_flow)] == [400]
    assert [call["status"] for call in local_stack.calls_for(unknown_flow)] == [404]


def test_a_message_that_always_fails_lands_in_the_dead_letter_queue(local_stack: RunningStack):
    flow_id = new_flow()
    local_stack.set_faults(flows={flow_id: {"rate": 1, "mix": {"503": 1}}})
    message_id = send(local_stack, flow_id)
    sqs = local_stack.aws_client("sqs")

    def dead_lettered() -> list[dict[str, Any]]:
        answer = sqs.receive_message(QueueUrl=local_stack.info["dlq_url"], MaxNumberOfMessages=10, WaitTimeSeconds=1)
        mine = [m for m in answer.get("Messages", []) if m["MessageId"] == message_id]
        others = [m for m in answer.get("Messages", []) if m["MessageId"] != message_id]
        for message in others:  # not ours: let it be seen again at once
            sqs.change_message_visibility(
                QueueUrl=local_stack.info["dlq_url"], ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
        return mine

    found = wait_for(dead_lettered, timeout=WAIT_SECONDS, interval=0.5)

    assert found, f"message {message_id} never reached the dead-letter queue; sandbox: {local_stack.calls_for(flow_id)}"
    assert json.loads(found[0]["Body"])["flow_id"] == flow_id
    max_receive_count = json.loads(
        sqs.get_queue_attributes(QueueUrl=local_stack.info["queue_url"], AttributeNames=["RedrivePolicy"])[
            "Attributes"
        ]["RedrivePolicy"]
    )["maxReceiveCount"]
    calls = local_stack.calls_for(flow_id)
    assert [call["status"] for call in calls] == [503] * int(max_receive_count)
    [run] = runs_of(local_stack, flow_id)
    assert run["status"] == "FAILED"
    assert run["attempts"] == int(max_receive_count)


def test_under_random_faults_every_run_finishes_and_none_starts_twice(local_stack: RunningStack):
    flow_id = new_flow()
    # Every fault kind, equally likely; seeded so that the sequence of decisions is the same every time.
    local_stack.set_faults(seed=4, flows={flow_id: {"rate": 0.5}})
    prefix = unique_prefix()
    sqs = local_stack.aws_client("sqs")
    entries = [
        {
            "Id": str(n),
            "MessageBody": json.dumps({"flow_id": flow_id, "contact_list": contacts(1, prefix=f"{prefix}{n}")}),
        }
        for n in range(8)
    ]
    assert not sqs.send_message_batch(QueueUrl=local_stack.info["queue_url"], Entries=entries).get("Failed")

    runs = finished_runs(local_stack, flow_id, len(entries))

    no_duplicates_for(local_stack, flow_id)
    calls = local_stack.calls_for(flow_id)
    assert {call["fault"] for call in calls} - {None}, "no fault was injected: the test proves nothing"
    created = {call["execution_id"] for call in calls if call.get("created")}
    for run in runs:
        if run["status"] == "SUBMITTED":
            assert run["hilos_execution_id"] in created
        else:  # a slow answer or a reset: it may have started, so it was never sent again
            assert run["status"] in ("UNKNOWN", "FAILED"), run
    unknown = [run for run in runs if run["status"] == "UNKNOWN"]
    faults_after_creation = [call for call in calls if call.get("fault") in ("slow", "reset")]
    assert len(unknown) == len(faults_after_creation)
