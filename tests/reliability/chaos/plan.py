"""The fault run's plan: how many runs, which share of them fails on purpose and how, the faults the sandbox
injects, the stack it runs on, and a run as the fault run follows it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
