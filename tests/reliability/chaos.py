"""The fault run (`make chaos`): queued runs through the local stack while the Hilos sandbox misbehaves.

The sandbox answers a share of all Hilos calls (FAULT_RATE, 30 %) with an even mix of 500, 503, 429 with
Retry-After, connection resets after the run was created and answers slower than the client's read
timeout. A few runs are also made to fail on purpose, so that every outcome shows up in the figures:
some target a flow Hilos refuses (400: REJECTED), some are not valid QueuedRun messages (REJECTED by
the worker), and some target a flow that is down for good (every call 503: they end in the DLQ).

Afterwards every run is looked up where it can be, not assumed:

- its execution record (DynamoDB; the record id is derived from the SQS message id, as the worker does);
- its message: still on the runs queue (waiting or in flight) or in the dead-letter queue (SQS);
- the sandbox's count of runs created per contact list (each run has its own phones).

A run is **final** when its record is started in Hilos (SUBMITTED, or RUNNING/COMPLETED/CANCELED once the
status sync has seen it), REJECTED, UNKNOWN or FAILED; it is **dead-lettered**
when its message is in the DLQ; it is **lost** when neither holds and its message is not on the runs queue
either: nobody would ever hear of it again. A **duplicate** is a contact list Hilos started more than
once. The run holds when lost = 0 and duplicates = 0.

`python -m tests.reliability.chaos --runs 1000` (what `make chaos` runs) starts its own stack on free
127.0.0.1 ports and stops it at the end; every wait is bounded by a deadline.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.local_stack import RunningStack, start_stack, stop_stack

FAULT_RATE = 0.3
FAULT_KINDS = ("500", "503", "429", "slow", "reset")
# Accepted by Hilos; the stack's status sync moves runs on from SUBMITTED while the fault run goes on.
STARTED_STATUSES = frozenset({"SUBMITTED", "RUNNING", "COMPLETED", "CANCELED"})
FINAL_STATUSES = STARTED_STATUSES | {"REJECTED", "UNKNOWN", "FAILED"}
# Retries come back within a second (RetryAfterMaxSeconds=1, Retry-After 1), batches go out at once, and a
# message whose invocation crashed would be seen again after 10 s. The read timeout (2 s, the stack's
# sandbox default) makes a "slow" answer cost 2 s of a worker thread. Six pollers x 10 records at a time.
STACK_ARGS = (
    "--visibility-timeout=10",
    "--concurrency=6",
    "--pollers=6",
    f"--fault-rate={FAULT_RATE}",
    "--fault-mix=" + ",".join(f"{kind}=1" for kind in FAULT_KINDS),
    "--retry-after=1",
    "--parameter-overrides",
    "RetryAfterMaxSeconds=1",
    "WorkerBatchingWindowSeconds=0",
)
_ATTEMPT_SUFFIX = re.compile(r"\s*\(attempt \d+ of \d+;[^)]*\)$")


@dataclass
class ChaosPlan:
    runs: int = 1000
    seed: int = 6
    # Shares of the runs made to fail on purpose (each at least one run).
    refused_share: float = 0.01  # a flow Hilos answers 400
    invalid_share: float = 0.01  # not a QueuedRun: no contact can be reached
    outage_share: float = 0.01  # a flow whose every call is 503: retried until the DLQ
    deadline_seconds: float = 600


@dataclass
class Run:
    kind: str  # normal | refused | invalid | outage
    message_id: str
    run_id: str
    status: str | None = None  # the record's, None when there is none
    last_error: str | None = None
    dead_lettered: bool = False
    dlq_body: str | None = None


@dataclass
class ChaosReport:
    plan: ChaosPlan
    runs: list[Run]
    sandbox: dict[str, Any]
    seconds: float
    queue_left: int
    by_status: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.by_status = Counter(run.status or "NO RECORD" for run in self.runs if not run.dead_lettered)

    @property
    def started(self) -> int:
        """Runs Hilos accepted, whatever the status sync has made of them since."""
        return sum(self.by_status[status] for status in STARTED_STATUSES)

    @property
    def dead_lettered(self) -> list[Run]:
        return [run for run in self.runs if run.dead_lettered]

    @property
    def lost(self) -> list[Run]:
        # Not final, not in the DLQ; the queue is empty at the end, so its message is not in flight either.
        if self.queue_left:
            return []  # undecided: reported as "still on the queue" instead
        return [run for run in self.runs if not run.dead_lettered and run.status not in FINAL_STATUSES]

    @property
    def still_queued(self) -> int:
        return self.queue_left

    @property
    def duplicates(self) -> list[str]:
        return list(self.sandbox["duplicates"])

    @property
    def dlq_reasons(self) -> Counter[str]:
        return Counter(_ATTEMPT_SUFFIX.sub("", run.last_error or "no record") for run in self.dead_lettered)

    def holds(self) -> bool:
        return not self.lost and not self.duplicates and not self.queue_left

    def figures(self) -> str:
        faults = self.sandbox["faults"]
        calls = self.sandbox["requests"]
        lines = [
            f"fault run: {len(self.runs)} queued runs in {self.seconds:.1f} s "
            f"(sandbox: {calls} Hilos calls, {sum(faults.values())} faults injected = "
            f"{sum(faults.values()) / max(calls, 1):.0%}: "
            + ", ".join(f"{kind} {faults.get(kind, 0)}" for kind in FAULT_KINDS)
            + ")",
            f"  submitted      {self.started}   (started in Hilos; status sync: "
            + ", ".join(f"{self.by_status[status]} {status.lower()}" for status in sorted(STARTED_STATUSES))
            + ")",
            f"  rejected       {self.by_status['REJECTED']}",
            f"  unknown        {self.by_status['UNKNOWN']}   (sent, answer lost: recorded, never resent)",
            f"  failed         {self.by_status['FAILED']}   (permanent upstream failure, recorded)",
            f"  in the DLQ     {len(self.dead_lettered)}",
        ]
        lines += [f"      {count} x {reason}" for reason, count in self.dlq_reasons.most_common()]
        lines += [
            f"  still queued   {self.queue_left}",
            f"  Hilos runs     {self.sandbox['runs_created']} created by the sandbox",
            f"  duplicates     {len(self.duplicates)}   (contact lists the sandbox started more than once)",
            f"  lost           {len(self.lost)}   (no final record, not in the DLQ, not on the queue)",
            "  verdict        " + ("HOLDS: 0 lost, 0 duplicates" if self.holds() else "FAILS"),
        ]
        return "\n".join(lines)


def _message(kind: str, flow_ids: dict[str, str], number: int, prefix: str) -> str:
    phone = f"+52{prefix}{number:06d}"  # one contact list per run: the sandbox counts repeats per list
    if kind == "invalid":
        return json.dumps({"flow_id": flow_ids["normal"], "contact_list": [{"first_name": f"nobody {number}"}]})
    return json.dumps({"flow_id": flow_ids[kind], "contact_list": [{"phone": phone, "first_name": "Chaos"}]})


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


def submit(stack: RunningStack, plan: ChaosPlan) -> list[Run]:
    """Configure the sandbox, then put every run on the queue (SendMessageBatch, as a producer would)."""
    from hilos_runner.worker import _MESSAGE_RUN_NAMESPACE

    flow_ids = {kind: str(uuid.uuid4()) for kind in ("normal", "refused", "outage")}
    stack.set_faults(
        seed=plan.seed,
        rate=FAULT_RATE,
        mix=dict.fromkeys(FAULT_KINDS, 1),
        reject_flows=[flow_ids["refused"]],
        flows={flow_ids["outage"]: {"rate": 1, "mix": {"503": 1}}},
    )
    sqs = stack.aws_client("sqs")
    prefix = str(uuid.uuid4().int)[:6]
    kinds = _kinds(plan)
    runs: list[Run] = []
    for start in range(0, len(kinds), 10):
        entries = [
            {"Id": str(number), "MessageBody": _message(kinds[number], flow_ids, number, prefix)}
            for number in range(start, min(start + 10, len(kinds)))
        ]
        answer = sqs.send_message_batch(QueueUrl=stack.info["queue_url"], Entries=entries)
        if answer.get("Failed"):
            raise RuntimeError(f"SQS refused messages: {answer['Failed']}")
        for sent in answer["Successful"]:
            message_id = sent["MessageId"]
            run_id = str(uuid.uuid5(_MESSAGE_RUN_NAMESPACE, message_id))
            runs.append(Run(kind=kinds[int(sent["Id"])], message_id=message_id, run_id=run_id))
    return runs


def messages_on_queue(stack: RunningStack, queue_url: str) -> int:
    """Messages waiting, in flight or delayed."""
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    attributes = stack.aws_client("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    return sum(int(attributes[name]) for name in names)


def wait_until_drained(stack: RunningStack, deadline: float) -> int:
    """Poll until the runs queue is empty or the deadline passes; returns what is left."""
    left = messages_on_queue(stack, stack.info["queue_url"])
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = messages_on_queue(stack, stack.info["queue_url"])
    return left


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


def run_chaos(stack: RunningStack, plan: ChaosPlan) -> ChaosReport:
    started = time.monotonic()
    runs = submit(stack, plan)
    left = wait_until_drained(stack, started + plan.deadline_seconds)
    in_dlq = dead_letters(stack)
    found = records(stack, [run.run_id for run in runs])
    for run in runs:
        record = found.get(run.run_id)
        run.status = record["status"] if record else None
        run.last_error = record.get("last_error") if record else None
        run.dead_lettered = run.message_id in in_dlq
        run.dlq_body = in_dlq.get(run.message_id)
    return ChaosReport(plan, runs, stack.sandbox_stats(), time.monotonic() - started, left)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=ChaosPlan.seed)
    parser.add_argument("--deadline", type=float, default=ChaosPlan.deadline_seconds, help="seconds (600)")
    arguments = parser.parse_args(argv)
    plan = ChaosPlan(runs=arguments.runs, seed=arguments.seed, deadline_seconds=arguments.deadline)
    with tempfile.TemporaryDirectory(prefix="hilos-chaos-") as state_dir:
        stack = start_stack(Path(state_dir), *STACK_ARGS)
        try:
            report = run_chaos(stack, plan)
        finally:
            stop_stack(stack)
    print(report.figures(), flush=True)
    return 0 if report.holds() else 1


if __name__ == "__main__":
    sys.exit(main())
