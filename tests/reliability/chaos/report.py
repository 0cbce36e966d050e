"""The fault run's report: every run looked up where it can be, the figures (lost, unknown, duplicates, started
without a Hilos id, announced once) and whether the run holds."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tests.reliability.chaos.plan import (
    FAULT_KINDS,
    FINAL_STATUSES,
    FINISHED_STATUSES,
    STARTED_STATUSES,
    ChaosPlan,
    Run,
)

_ATTEMPT_SUFFIX = re.compile(r"\s*\(attempt \d+ of \d+;[^)]*\)$")


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
