"""The Hilos sandbox's state, shared by its server's threads under one lock: its settings, its counters (the stats
``GET /_sandbox/stats`` answers), the executions it created and how they move on (by age, or one stage per status
read). The HTTP server (local/sandbox.py) decides what to answer; this module what Hilos holds."""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from local.sandbox_lists import (
    ACTIVE_CONTACT_STATUSES,
    FLOW_NAME,
    contact_status,
    flow_execution_contact,
    flow_execution_list_item,
    page_of,
    paginated,
)
from local.sandbox_settings import (
    STAGES,
    TERMINAL_STATUSES,
    FaultKind,
    FaultPlan,
    FaultTarget,
    Progression,
    SandboxSettings,
)

_RECENT_CALLS = 200


def contact_list_fingerprint(flow_id: str, contact_list: Any) -> str:
    """Same flow + same contacts (in any order, any key order) = same fingerprint: a repeated run."""
    contacts = contact_list if isinstance(contact_list, list) else [contact_list]
    normalised = sorted(json.dumps(item, sort_keys=True, separators=(",", ":")) for item in contacts)
    return hashlib.sha256(json.dumps([flow_id.lower(), normalised]).encode()).hexdigest()[:16]


@dataclass
class _Reads:
    """The reads of one kind (status reads, list reads): per key (execution id, endpoint), answered or not, their
    answers' statuses and faults, and the latest ones; shown in the stats as ``<kind>s``, ``<kind>_answers``, ..."""

    kind: str  # "status_read" or "lookup_read"
    by_key: Counter[str] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=_RECENT_CALLS))

    def add(self, key: str, call: dict[str, Any]) -> None:
        self.by_key[key] += 1
        self.answers[str(call["status"])] += 1
        if call.get("fault"):
            self.faults[call["fault"]] += 1
        self.recent.append(call)

    def as_json(self) -> dict[str, Any]:
        return {
            f"{self.kind}s": dict(self.by_key),
            f"{self.kind}_answers": dict(self.answers),
            f"{self.kind}_faults": dict(self.faults),
            f"recent_{self.kind}s": list(self.recent),
        }


@dataclass
class _Stats:
    requests: int = 0
    responses: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    auth_schemes: Counter[str] = field(default_factory=Counter)
    flows: dict[str, Counter[str]] = field(default_factory=dict)
    contact_lists: dict[str, dict[str, Any]] = field(default_factory=dict)
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=_RECENT_CALLS))
    # Status reads are counted apart: the figures above stay those of run calls (what fault runs account
    # for), and a status sync's steady reads never push run calls out of `recent`.
    status_reads: _Reads = field(default_factory=lambda: _Reads("status_read"))  # by execution id
    # And so are the list reads a reconciliation makes (by endpoint: flow-execution, flow-execution-contact).
    lookup_reads: _Reads = field(default_factory=lambda: _Reads("lookup_read"))

    def as_json(self) -> dict[str, Any]:
        created = sum(entry["created"] for entry in self.contact_lists.values())
        return {
            "requests": self.requests,
            "runs_created": created,
            "responses": dict(self.responses),
            "faults": dict(self.faults),
            "auth_schemes": dict(self.auth_schemes),
            "flows": {flow_id: dict(counts) for flow_id, counts in self.flows.items()},
            "contact_lists": self.contact_lists,
            "duplicates": sorted(fp for fp, entry in self.contact_lists.items() if entry["created"] > 1),
            "recent": list(self.recent),
            **self.status_reads.as_json(),
            **self.lookup_reads.as_json(),
        }


class SandboxState:
    """Settings, counters and created executions, shared by the server's threads (one lock)."""

    def __init__(self, token: str, settings: SandboxSettings, *, seed: int | None = None) -> None:
        self.token = token
        self._initial = settings
        self._lock = threading.Lock()
        self._random = random.Random(seed)  # noqa: S311  (fault injection, not cryptography)
        self.settings = settings
        self.stats = _Stats()
        self.executions: dict[str, _StoredExecution] = {}
        self._injected: Counter[str] = Counter()

    # -- control ---------------------------------------------------------------------------
    def update_settings(self, changes: dict[str, Any]) -> SandboxSettings:
        """Merge ``changes`` into the settings; ``seed`` (not a setting) restarts the fault sequence."""
        changes = dict(changes)
        seed = changes.pop("seed", None)
        with self._lock:
            if seed is not None:
                self._random.seed(seed)
            merged = {**self.settings.model_dump(), **changes}
            self.settings = SandboxSettings.model_validate(merged)
            self._injected.clear()  # a new plan starts its own limits
            return self.settings

    def reset(self) -> None:
        """Settings and stats back to the start. The executions stay, as in Hilos: runs already started are
        still followed by the status sync, and a forgotten one would answer 404 to every status read."""
        with self._lock:
            self.settings = self._initial
            self.stats = _Stats()
            self._injected.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self.stats.as_json()))

    # -- decisions -------------------------------------------------------------------------
    def choose_fault(self, flow_id: str | None, target: FaultTarget = FaultTarget.RUN) -> FaultKind | None:
        plan: FaultPlan
        with self._lock:
            scope, plan = "*", self.settings
            if flow_id is not None and uuid.UUID(flow_id) in self.settings.flows:
                scope, plan = flow_id, self.settings.flows[uuid.UUID(flow_id)]
            if target not in plan.targets:
                return None
            if plan.limit is not None and self._injected[scope] >= plan.limit:
                return None
            weights = {kind: weight for kind, weight in plan.mix.items() if weight > 0}
            if not weights or plan.rate <= 0 or self._random.random() >= plan.rate:
                return None
            self._injected[scope] += 1
            kinds = list(weights)
            return self._random.choices(kinds, weights=[weights[kind] for kind in kinds])[0]

    def record(self, call: dict[str, Any]) -> None:
        with self._lock:
            stats = self.stats
            if call.get("status_read"):
                stats.status_reads.add(call["execution_id"], call)
                return
            if call.get("lookup_read"):
                stats.lookup_reads.add(call["lookup_read"], call)
                return
            call.setdefault("created", False)  # every run call says whether it created an execution
            stats.requests += 1
            stats.responses[str(call["status"])] += 1
            stats.auth_schemes[call["auth_scheme"]] += 1
            if call.get("fault"):
                stats.faults[call["fault"]] += 1
            self._count(call, "calls")
            stats.recent.append(call)

    def _count(self, call: dict[str, Any], what: str) -> None:
        flow_id, fingerprint = call.get("flow_id"), call.get("fingerprint")
        if flow_id:
            self.stats.flows.setdefault(flow_id, Counter())[what] += 1
        if fingerprint:
            entry = self.stats.contact_lists.setdefault(
                fingerprint, {"flow_id": flow_id, "calls": 0, "created": 0, "execution_ids": []}
            )
            entry[what] += 1

    def create_execution(self, call: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        """Create (and count at once: a slow answer must not hide a duplicate) the execution of a run."""
        flow_id = call["flow_id"]
        # Hilos' clock, off by clock_skew_seconds: every created_on reported for the execution is this one.
        created_on = (datetime.now(UTC) + timedelta(seconds=self.settings.clock_skew_seconds)).isoformat()
        execution = {
            "id": str(uuid.uuid4()),
            "status": "PROCESSING",
            "execute_for": body.get("execute_for", "LIST"),
            "inbound_trigger_with": "ANY_MESSAGE",
            "inbound_start_message": None,
            "inbound_start_message_match_exact": False,
            "has_priority": body.get("has_priority", False),
            "flow_execution_variables": body.get("flow_execution_variables") or {},
            "start_on": None,
            "num_contacts": len(body["contact_list"]),
            "expired": 0,
            "running": 0,
            "completed": 0,
            "canceled": 0,
            "failed": 0,
            "created_on": created_on,
            "avg_completion_time": "",
            "contact_filters": [],
            "contact_list": body["contact_list"],
            "source": "API",
            "is_hidden": False,
        }
        with self._lock:
            settings = self.settings
            self.executions[execution["id"]] = _StoredExecution(
                flow_id=flow_id,
                created=time.monotonic(),
                sequence=len(self.executions),
                answer=execution,
                outcomes=[_outcome(item, settings) for item in body["contact_list"]],
            )
            self._count(call, "created")
            if call.get("fingerprint"):
                self.stats.contact_lists[call["fingerprint"]]["execution_ids"].append(execution["id"])
        call.update(created=True, execution_id=execution["id"])
        return execution

    def read_execution(self, execution_id: str) -> dict[str, Any] | None:
        """A status read Hilos answers: the execution as it is now (FlowExecutionReadDetail), after moving it
        on (by its age, or by one stage for this read); None for an unknown id."""
        with self._lock:
            stored = self.executions.get(execution_id.lower())
            if stored is None:
                return None
            self._move_on(stored, status_read=True)
            return stored.detail()

    def _move_on(self, stored: _StoredExecution, *, status_read: bool) -> None:
        """Bring an execution to where it is now: by its age, or (per_read) one stage for a status read;
        a list read moves it by its age only, never a stage per read."""
        settings = self.settings
        if stored.status in TERMINAL_STATUSES:
            return
        if settings.progression is Progression.PER_READ:
            if not status_read:
                return
            stage = stored.stage + 1
        else:
            stage = _stage_by_age(time.monotonic() - stored.created, settings.stage_seconds)
        hold = settings.hold_flows.get(uuid.UUID(stored.flow_id))
        if hold is not None:
            stage = min(stage, STAGES.index(hold))
        stored.stage = max(stored.stage, stage)  # switching progression never moves a run back
        if stored.stage >= len(STAGES):
            # Decided when it ends, so adding a flow to cancel_flows cancels its running executions.
            canceled = uuid.UUID(stored.flow_id) in settings.cancel_flows
            stored.status = "CANCELED" if canceled else "COMPLETED"
            stored.finished = time.monotonic()
        else:
            stored.status = STAGES[stored.stage]

    def list_executions(self, flow_id: str | None, requested_page: str | None, url: str) -> dict[str, Any]:
        """List Flow Executions (PaginatedFlowExecutionListList): newest first, of one flow or of all;
        InvalidPage for a page that is not one."""
        with self._lock:
            matching = sorted(
                (stored for stored in self.executions.values() if flow_id is None or stored.flow_id == flow_id),
                key=lambda stored: (stored.created_on, stored.sequence),
                reverse=True,
            )
            page = page_of(len(matching), requested_page, self.settings.list_page_size)
            results = []
            for stored in matching[page.items]:
                self._move_on(stored, status_read=False)
                results.append(flow_execution_list_item(stored.detail()))
        return paginated(url, page, len(matching), results)

    def list_contacts(
        self,
        *,
        execution_id: str | None,
        flow_id: str | None,
        is_active: bool | None,
        requested_page: str | None,
        page_size: int | None,
        url: str,
    ) -> dict[str, Any]:
        """List Flow Execution Contacts (PaginatedFlowExecutionContactListSimpleList): executions in the order
        they were created, each one's contacts in the order they were sent; InvalidPage for a page that is not one."""
        with self._lock:
            rows: list[tuple[_StoredExecution, int]] = []
            for stored in sorted(self.executions.values(), key=lambda stored: stored.sequence):
                if (execution_id is not None and stored.answer["id"] != execution_id) or (
                    flow_id is not None and stored.flow_id != flow_id
                ):
                    continue
                self._move_on(stored, status_read=False)
                rows.extend(
                    (stored, index)
                    for index in range(len(stored.outcomes))
                    if is_active is None or (stored.contact_status(index) in ACTIVE_CONTACT_STATUSES) == is_active
                )
            page = page_of(len(rows), requested_page, page_size or self.settings.list_page_size)
            results = [stored.contact_item(index) for stored, index in rows[page.items]]
        return paginated(url, page, len(rows), results)

    def flow_of(self, execution_id: str) -> str | None:
        with self._lock:
            stored = self.executions.get(execution_id.lower())
            return stored.flow_id if stored else None


def _phone_ends_with(contact: Any, endings: set[str]) -> bool:
    phone = str(contact.get("phone") or "") if isinstance(contact, dict) else ""
    return any(phone.endswith(ending) for ending in endings if ending)


def _outcome(contact: Any, settings: SandboxSettings) -> str:
    """How a contact ends if its execution completes, decided when the run is created."""
    if _phone_ends_with(contact, settings.failed_phone_endings):
        return "FAILED"
    if _phone_ends_with(contact, settings.expired_phone_endings):
        return "EXPIRED"
    return "COMPLETED"


def _stage_by_age(age_seconds: float, stage_seconds: dict[str, float]) -> int:
    """The index of the stage an execution of this age is in (len(STAGES): finished)."""
    boundary = 0.0
    for index, stage in enumerate(STAGES):
        boundary += stage_seconds.get(stage, 0.0)
        if age_seconds < boundary:
            return index
    return len(STAGES)


_SANDBOX_USER = {"id": 1, "first_name": "Sandbox", "last_name": "User", "email": "sandbox@example.com"}
_SANDBOX_CHANNEL = {
    "id": 1,
    "channel_type": "WHATSAPP",
    "name": "Sandbox WhatsApp",
    "channel_id": "5215500000000",
    "status": "ACTIVE",
    "channel_provider": "META_CLOUD_API",
    "is_sandbox": True,
}


@dataclass
class _StoredExecution:
    """An execution the sandbox created: its create answer, where it is, and how its contacts end."""

    flow_id: str
    created: float  # time.monotonic()
    sequence: int  # the order of creation
    answer: dict[str, Any]  # the FlowExecutionEdit of the create call (with the contact list)
    outcomes: list[str]  # per contact: COMPLETED, FAILED or EXPIRED (phone endings), decided at creation
    stage: int = 0  # index into STAGES; len(STAGES) once finished
    status: str = "PROCESSING"
    finished: float | None = None

    @property
    def created_on(self) -> datetime:
        return datetime.fromisoformat(self.answer["created_on"])

    def counters(self) -> dict[str, int]:
        """The execution's counters: how many of its contacts are in each contact status but READY."""
        counters = dict.fromkeys(("running", "completed", "failed", "expired", "canceled"), 0)
        for index in range(len(self.outcomes)):
            status = self.contact_status(index)
            if status != "READY":
                counters[status.lower()] += 1
        return counters

    def contact_status(self, index: int) -> str:
        return contact_status(self.status, self.outcomes[index])

    def contact_item(self, index: int) -> dict[str, Any]:
        """FlowExecutionContactListSimple of its ``index``-th contact."""
        sent = self.answer["contact_list"][index]
        return flow_execution_contact(
            self.answer["id"],
            index,
            sent,
            outcome=self.outcomes[index],
            execution_status=self.status,
            created_on=self.answer["created_on"],
        )

    def detail(self) -> dict[str, Any]:
        """FlowExecutionReadDetail: the documented fields only, nested objects complete."""
        answer = self.answer
        flow = {
            "id": self.flow_id,
            "name": FLOW_NAME,
            "created_by": _SANDBOX_USER,
            "created_on": answer["created_on"],
            "is_active": True,
            "status": "PUBLISHED",
            "is_legacy": False,
            "channel": _SANDBOX_CHANNEL,
            "flow_execution_variables": sorted(answer["flow_execution_variables"]),
        }
        average = ""
        if self.finished is not None and self.status == "COMPLETED":
            seconds = int(self.finished - self.created)
            average = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        return {
            "id": answer["id"],
            "status": self.status,
            "execute_for": answer["execute_for"],
            "inbound_trigger_with": answer["inbound_trigger_with"],
            "inbound_start_message": answer["inbound_start_message"],
            "inbound_start_message_match_exact": answer["inbound_start_message_match_exact"],
            "has_priority": answer["has_priority"],
            "flow_execution_variables": answer["flow_execution_variables"],
            "start_on": answer["start_on"],
            "num_contacts": answer["num_contacts"],
            **self.counters(),
            "created_on": answer["created_on"],
            "avg_completion_time": average,
            "created_by": _SANDBOX_USER,
            "contact_filters": [],
            "contact_import": None,
            "flow": flow,
            "flow_version": {
                "execution_type": "OUTBOUND",
                "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox-flow-version:{self.flow_id}")),
                "flow": flow,
                "is_current_version": True,
                "version_name": "v1",
                "published_by": _SANDBOX_USER,
                "created_on": answer["created_on"],
                "last_updated_on": answer["created_on"],
            },
            "execution_type": "API",
            "last_run_on": answer["created_on"],
        }
