"""Driving the fault run through a running stack: queued and API runs submitted while the sandbox misbehaves, then
waiting until every run has settled and looking each one up (records, queues, the sandbox, completion events)."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from local.running_stack import RunningStack
from tests.reliability.chaos.plan import FAULT_KINDS, FAULT_RATE, NORMAL_FLOWS, ChaosPlan, Run
from tests.reliability.chaos.report import ChaosReport


def _kinds(plan: ChaosPlan) -> list[str]:
    special = {
        "refused": max(1, round(plan.runs * plan.refused_share)),
        "invalid": max(1, round(plan.runs * plan.invalid_share)),
        "outage": max(1, round(plan.runs * plan.outage_share)),
    }
    kinds = [kind for kind, count in special.items() for _ in range(count)]
    kinds += ["normal"] * (plan.runs - len(kinds))
    random.Random(plan.seed).shuffle(kinds)
    return kinds


def _flows() -> dict[str, str]:
    flows = {kind: str(uuid.uuid4()) for kind in ("refused", "outage")}
    flows.update({f"normal-{index}": str(uuid.uuid4()) for index in range(NORMAL_FLOWS)})
    return flows


def _flow_of(kind: str, number: int, flows: dict[str, str]) -> str:
    return flows[f"normal-{number % NORMAL_FLOWS}"] if kind in ("normal", "invalid") else flows[kind]


def submit(stack: RunningStack, plan: ChaosPlan, flows: dict[str, str], prefix: str) -> list[Run]:
    """Put every queued run on the queue (SendMessageBatch, as a producer would)."""
    from hilos_runner.worker import message_run_id

    sqs = stack.aws_client("sqs")
    kinds = _kinds(plan)
    runs: list[Run] = []
    for start in range(0, len(kinds), 10):
        batch: dict[str, Run] = {}
        entries = []
        for number in range(start, min(start + 10, len(kinds))):
            kind, flow_id = kinds[number], _flow_of(kinds[number], number, flows)
            # +52 1 and ten digits (a phone number); one contact list per run: the sandbox counts repeats per list
            phone = f"+521{prefix}{number:04d}"
            contact = (
                {"first_name": f"nobody {number}"} if kind == "invalid" else {"phone": phone, "first_name": "Chaos"}
            )
            entries.append(
                {"Id": str(number), "MessageBody": json.dumps({"flow_id": flow_id, "contact_list": [contact]})}
            )
            batch[str(number)] = Run(kind=kind, source="queue", flow_id=flow_id, phone=phone, run_id=None)
        answer = sqs.send_message_batch(QueueUrl=stack.info["queue_url"], Entries=entries)
        if answer.get("Failed"):
            raise RuntimeError(f"SQS refused messages: {answer['Failed']}")
        for sent in answer["Successful"]:
            run = batch[sent["Id"]]
            run.message_id = sent["MessageId"]
            run.run_id = str(message_run_id(sent["MessageId"]))
            runs.append(run)
    return runs


def api_run(stack: RunningStack, flow_id: str, phone: str, key: str) -> Run:
    """One run through the API as a careful client makes it: an Idempotency-Key, retried with the same key
    while the answer is "nothing started" (503) or "still in progress" (409)."""
    run = Run(kind="normal", source="api", flow_id=flow_id, phone=phone, run_id=None)
    headers = {"Authorization": f"Bearer {stack.info['api_token']}", "Idempotency-Key": key}
    body = {"contact_list": [{"phone": phone, "first_name": "Chaos"}]}
    for attempt in range(12):  # bounded
        answer = requests.post(f"{stack.info['api_url']}/flows/{flow_id}/runs", json=body, headers=headers, timeout=60)
        run.api_answers.append(answer.status_code)
        content = answer.json()
        run.run_id = run.run_id or (content.get("run") or {}).get("run_id") or content.get("run_id")
        if answer.status_code not in (409, 503):
            break
        time.sleep(min(2.0, 0.25 * 2**attempt))
    return run


def submit_api(stack: RunningStack, plan: ChaosPlan, flows: dict[str, str], prefix: str) -> list[Run]:
    with ThreadPoolExecutor(max_workers=6, thread_name_prefix="chaos-api") as pool:
        futures = [
            pool.submit(
                api_run,
                stack,
                _flow_of("normal", number, flows),
                f"+521{prefix}9{number:03d}",
                f"chaos-{prefix}-{number}",
            )
            for number in range(plan.api_runs)
        ]
        return [future.result() for future in futures]


def messages_on_queue(stack: RunningStack, queue_url: str) -> int:
    """Messages waiting, in flight or delayed."""
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    attributes = stack.aws_client("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    return sum(int(attributes[name]) for name in names)


def dead_letters(stack: RunningStack) -> dict[str, str]:
    """Every message in the DLQ (message id -> body); they stay hidden for 10 minutes afterwards."""
    sqs = stack.aws_client("sqs")
    found: dict[str, str] = {}
    for _ in range(1000):  # bounded; each receive returns at most 10
        answer = sqs.receive_message(QueueUrl=stack.info["dlq_url"], MaxNumberOfMessages=10, VisibilityTimeout=600)
        messages = answer.get("Messages", [])
        if not messages:
            break
        found.update((message["MessageId"], message["Body"]) for message in messages)
    return found


def records(stack: RunningStack, run_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The execution records of ``run_ids`` (BatchGetItem, consistent reads), as plain strings."""
    dynamodb = stack.aws_client("dynamodb")
    table = stack.info["executions_table"]
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(run_ids), 100):
        pending: dict[str, Any] = {
            table: {
                "Keys": [{"run_id": {"S": run_id}} for run_id in run_ids[start : start + 100]],
                "ConsistentRead": True,
            }
        }
        for _ in range(20):  # bounded; moto answers everything at once
            answer = dynamodb.batch_get_item(RequestItems=pending)
            for item in answer["Responses"].get(table, []):
                found[item["run_id"]["S"]] = {name: next(iter(value.values())) for name, value in item.items()}
            pending = answer.get("UnprocessedKeys") or {}
            if not pending:
                break
    return found


def completion_events(stack: RunningStack) -> Counter[str]:
    """Every completion event delivered so far, counted per run id (the local rule's queue; read and kept hidden)."""
    url = stack.info.get("completion_events_queue_url")
    counts: Counter[str] = Counter()
    if not url:
        return counts
    sqs = stack.aws_client("sqs")
    for _ in range(10_000):  # bounded; each receive returns at most 10
        answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=3600)
        messages = answer.get("Messages", [])
        if not messages:
            break
        for message in messages:
            counts[json.loads(message["Body"])["detail"]["run_id"]] += 1
    return counts


def settle(stack: RunningStack, runs: list[Run], deadline: float) -> int:
    """Wait until the queue is drained and every run is settled (or the deadline); returns what is left queued."""
    left = messages_on_queue(stack, stack.info["queue_url"])
    while time.monotonic() < deadline:
        left = messages_on_queue(stack, stack.info["queue_url"])
        found = records(stack, [run.run_id for run in runs if run.run_id])
        for run in runs:
            run.record = found.get(run.run_id or "")
        if not left and all(run.settled for run in runs):
            break
        time.sleep(2)
    return left


def run_chaos(stack: RunningStack, plan: ChaosPlan) -> ChaosReport:
    started = time.monotonic()
    flows = _flows()
    stack.set_faults(
        seed=plan.seed,
        rate=FAULT_RATE,
        mix=dict.fromkeys(FAULT_KINDS, 1),
        targets=["run", "lookup"],
        reject_flows=[flows["refused"]],
        flows={flows["outage"]: {"rate": 1, "mix": {"503": 1}}},
        stage_seconds=1,  # executions finish within seconds, so every started run is announced in the run
        list_page_size=20,
    )
    prefix = str(uuid.uuid4().int)[:6]
    runs = submit(stack, plan, flows, prefix)
    runs += submit_api(stack, plan, flows, prefix)
    left = settle(stack, runs, started + plan.deadline_seconds)
    seconds = time.monotonic() - started
    in_dlq = dead_letters(stack)
    for run in runs:
        run.dead_lettered = run.message_id in in_dlq
        run.dlq_body = in_dlq.get(run.message_id or "")
    return ChaosReport(plan, runs, stack.sandbox_stats(), seconds, left, completion_events(stack))
