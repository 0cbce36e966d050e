"""The fault run (`make chaos`): queued and API runs through the local stack while the Hilos sandbox misbehaves,
then until reconciliation has settled every run whose answer was lost.

The sandbox answers a share of all Hilos run calls (FAULT_RATE, 30 %) with an even mix of 500, 503, 429 with
Retry-After, and both sides of ambiguity: answers lost *after* Hilos created the execution (a connection reset,
an answer slower than the client's read timeout) and lost *before* it did (the same two, nothing created). The
same plan faults Hilos' list reads that reconciliation makes. A few runs are made to fail on purpose, so every
outcome shows up: some target a flow Hilos refuses (400: REJECTED), some are not valid QueuedRun messages
(REJECTED by the worker), some target a flow that is down for good (every call 503: they end in the DLQ).
API runs go in at the same time with an Idempotency-Key each, retried with the same key on 409/503 as a client
should.

Afterwards every run is looked up where it can be, not assumed:

- its execution record (DynamoDB; queued runs' record ids are derived from the SQS message id, as the worker
  does; API runs' come from the answer);
- its message: still on the runs queue or in the dead-letter queue (SQS);
- the sandbox's executions per contact list (each run has its own phone), with their ids;
- the completion events the status sync published (a rule on the bus feeds a local queue).

A run is **unknown** while its record awaits reconciliation (UNKNOWN, SENDING, or known not started and
waiting to be resent); **lost** when it has no final record, is not in the DLQ and its message is not on the
queue; a **duplicate** is a contact list Hilos started more than once; a run **started without a Hilos id** is
one Hilos created an execution for whose record does not hold that execution's id. The run holds when, after
settling, unknown = lost = duplicates = started without an id = 0, and every finished run was announced
exactly once.

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from local.running_stack import RunningStack, start_stack, stop_stack
from local.sandbox_state import contact_list_fingerprint

FAULT_RATE = 0.3
FAULT_KINDS = ("500", "503", "429", "slow", "reset", "slow_before", "reset_before")
# Normal runs spread over this many flows, as a stack's traffic is: each flow's list of executions is what a
# lookup pages through.
NORMAL_FLOWS = 10
# Accepted by Hilos; the stack's status sync moves runs on from SUBMITTED while the fault run goes on.
STARTED_STATUSES = frozenset({"SUBMITTED", "RUNNING", "COMPLETED", "CANCELED"})
FINISHED_STATUSES = frozenset({"COMPLETED", "CANCELED"})
FINAL_STATUSES = STARTED_STATUSES | {"REJECTED", "FAILED"}
# Retries come back within a second (RetryAfterMaxSeconds=1, Retry-After 1), batches go out at once, and a
# message whose invocation crashed would be seen again after 10 s. The read timeout (2 s, the stack's
# sandbox default) makes a "slow" answer cost 2 s of a worker thread. Six pollers x 10 records at a time;
# the status sync ticks every 2 s.
STACK_ARGS = (
    "--visibility-timeout=10",
    "--concurrency=6",
    "--pollers=6",
    "--sync-interval=2",
    f"--fault-rate={FAULT_RATE}",
    "--fault-mix=" + ",".join(f"{kind}=1" for kind in FAULT_KINDS),
    "--retry-after=1",
    "--parameter-overrides",
    "RetryAfterMaxSeconds=1",
    "WorkerBatchingWindowSeconds=0",
)
# Reconciliation settles within the run: "not in Hilos" is concluded 5 s after a send at the earliest (the
# stack's call budget, 16 s, is the floor: no request of ours can still be in flight before that).
STACK_ENV = {"RECONCILE_GRACE_SECONDS": "5", "RECONCILE_CLOCK_SKEW_SECONDS": "2"}
_ATTEMPT_SUFFIX = re.compile(r"\s*\(attempt \d+ of \d+;[^)]*\)$")
_AWAITING = frozenset({"UNKNOWN", "SENDING"})


@dataclass
class ChaosPlan:
    runs: int = 1000
    api_runs: int = 100
    seed: int = 6
    # Shares of the queued runs made to fail on purpose (each at least one run).
    refused_share: float = 0.01  # a flow Hilos answers 400
    invalid_share: float = 0.01  # not a QueuedRun: no contact can be reached
    outage_share: float = 0.01  # a flow whose every call is 503: retried until the DLQ
    deadline_seconds: float = 900


@dataclass
class Run:
    kind: str  # normal | refused | invalid | outage
    source: str  # queue | api
    flow_id: str
    phone: str
    run_id: str | None
    message_id: str | None = None
    record: dict[str, Any] | None = None
    dead_lettered: bool = False
    dlq_body: str | None = None
    api_answers: list[int] = field(default_factory=list)

    @property
    def status(self) -> str | None:
        return self.record["status"] if self.record else None

    @property
    def last_error(self) -> str | None:
        return self.record.get("last_error") if self.record else None

    @property
    def awaits_reconcile(self) -> bool:
        record = self.record or {}
        return record.get("status") in _AWAITING or (
            record.get("status") == "QUEUED" and record.get("resolution") == "RESENT"
        )

    @property
    def settled(self) -> bool:
        """Nothing left to happen to it: final, and if started, finished and announced."""
        if self.status not in FINAL_STATUSES:
            return False
        return self.status not in STARTED_STATUSES or (
            self.status in FINISHED_STATUSES and bool((self.record or {}).get("event_published_at"))
        )

    def fingerprint(self) -> str:
        return contact_list_fingerprint(self.flow_id, [{"phone": self.phone, "first_name": "Chaos"}])


@dataclass
class ChaosReport:
    plan: ChaosPlan
    runs: list[Run]
    sandbox: dict[str, Any]
    seconds: float
    queue_left: int
    events: Counter[str]  # completion events received, per run id
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
    def unknown(self) -> list[Run]:
        return [run for run in self.runs if not run.dead_lettered and run.awaits_reconcile]

    @property
    def lost(self) -> list[Run]:
        # Not final, not awaiting reconciliation, not in the DLQ; the queue is empty at the end.
        if self.queue_left:
            return []  # undecided: reported as "still on the queue" instead
        return [
            run
            for run in self.runs
            if not run.dead_lettered and run.status not in FINAL_STATUSES and not run.awaits_reconcile
        ]

    @property
    def duplicates(self) -> list[str]:
        return list(self.sandbox["duplicates"])

    def resolutions(self) -> Counter[str]:
        return Counter((run.record or {}).get("resolution") or "none" for run in self.runs)

    @property
    def started_without_id(self) -> list[Run]:
        """Runs Hilos created an execution for whose record does not hold that execution's id."""
        lists = self.sandbox["contact_lists"]
        missing = []
        for run in self.runs:
            created = lists.get(run.fingerprint(), {}).get("execution_ids") or []
            if created and (run.record or {}).get("hilos_execution_id") not in created:
                missing.append(run)
        return missing

    @property
    def finished(self) -> list[Run]:
        return [run for run in self.runs if run.status in FINISHED_STATUSES]

    @property
    def announced_wrongly(self) -> list[Run]:
        """Finished runs without exactly one completion event."""
        return [run for run in self.finished if self.events[run.run_id or ""] != 1]

    @property
    def dlq_reasons(self) -> Counter[str]:
        return Counter(_ATTEMPT_SUFFIX.sub("", run.last_error or "no record") for run in self.dead_lettered)

    def holds(self) -> bool:
        return not (
            self.lost
            or self.duplicates
            or self.queue_left
            or self.unknown
            or self.started_without_id
            or self.announced_wrongly
        )

    def figures(self) -> str:
        faults = self.sandbox["faults"]
        calls = self.sandbox["requests"]
        resolutions = self.resolutions()
        queued = sum(run.source == "queue" for run in self.runs)
        lookups = sum(self.sandbox.get("lookup_reads", {}).values())
        lines = [
            f"fault run: {queued} queued + {len(self.runs) - queued} API runs, settled in {self.seconds:.1f} s "
            f"(sandbox: {calls} Hilos run calls, {sum(faults.values())} faults injected = "
            f"{sum(faults.values()) / max(calls, 1):.0%}: "
            + ", ".join(f"{kind} {faults.get(kind, 0)}" for kind in FAULT_KINDS)
            + f"; {lookups} list reads)",
            f"  started        {self.started}   (status sync: "
            + ", ".join(f"{self.by_status[status]} {status.lower()}" for status in sorted(STARTED_STATUSES))
            + ")",
            f"  rejected       {self.by_status['REJECTED']}",
            f"  failed         {self.by_status['FAILED']}   (of which not started, found by reconciliation: "
            f"{resolutions['NOT_STARTED']})",
            f"  in the DLQ     {len(self.dead_lettered)}",
        ]
        lines += [f"      {count} x {reason}" for reason, count in self.dlq_reasons.most_common()]
        lines += [
            f"  reconciled     found {resolutions['FOUND']}, resent {resolutions['RESENT']}, "
            f"not started {resolutions['NOT_STARTED']}, still ambiguous {resolutions['AMBIGUOUS']}",
            f"  unknown        {len(self.unknown)}   (awaiting reconciliation at the end)",
            f"  still queued   {self.queue_left}",
            f"  Hilos runs     {self.sandbox['runs_created']} created by the sandbox",
            f"  duplicates     {len(self.duplicates)}   (contact lists the sandbox started more than once)",
            f"  without an id  {len(self.started_without_id)}   (started in Hilos, record without that execution id)",
            f"  lost           {len(self.lost)}   (no final record, not in the DLQ, not on the queue)",
            f"  events         {sum(self.events[run.run_id or ''] for run in self.finished)} completion events for "
            f"{len(self.finished)} finished runs ({len(self.announced_wrongly)} not announced exactly once)",
            "  verdict        "
            + (
                "HOLDS: 0 unknown, 0 lost, 0 duplicates, 0 started without an id, one event per finished run"
                if self.holds()
                else "FAILS"
            ),
        ]
        return "\n".join(lines)


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--api-runs", type=int, default=None, help="runs through the API (a tenth of --runs)")
    parser.add_argument("--seed", type=int, default=ChaosPlan.seed)
    parser.add_argument("--deadline", type=float, default=ChaosPlan.deadline_seconds, help="seconds (900)")
    arguments = parser.parse_args(argv)
    api_runs = arguments.api_runs if arguments.api_runs is not None else arguments.runs // 10
    plan = ChaosPlan(runs=arguments.runs, api_runs=api_runs, seed=arguments.seed, deadline_seconds=arguments.deadline)
    with tempfile.TemporaryDirectory(prefix="hilos-chaos-") as state_dir:
        stack = start_stack(Path(state_dir), *STACK_ARGS, env=STACK_ENV)
        try:
            report = run_chaos(stack, plan)
        finally:
            stop_stack(stack)
    print(report.figures(), flush=True)
    return 0 if report.holds() else 1


if __name__ == "__main__":
    sys.exit(main())
