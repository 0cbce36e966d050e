"""A Hilos sandbox: the run, get-execution and list paths of Hilos' API, strict about what it accepts, with faults.

It answers like Hilos (201 with a FlowExecutionEdit, plain-JSON DRF-style errors), but checks more than
Hilos would: the ``Authorization: Token <token>`` header, the JSON content type and the body against
the Hilos schema the project carries (read-only fields are refused, not ignored), so a client bug shows
up as a 4xx here instead of as a silent oddity in production.

Faults are injected at set rates, globally or per flow, optionally only the first ``limit`` times, on the
calls a plan ``targets`` (run calls unless it names ``status`` reads or ``lookup``s, the list reads).
Before the run is created: ``500``, ``503`` and ``429`` (with Retry-After) are answered; ``slow_before``
holds the request past the client's read timeout, then answers 504; ``reset_before`` resets the connection
once the request was read. After the run was created (the worst case for a client that resends: a resend
shows up as a duplicate in the stats): ``slow`` answers after the client's read timeout, ``reset`` resets
the connection. To a client, each ``_before`` kind looks like its "after" twin. A plan without a ``mix``
uses DEFAULT_FAULT_MIX, which leaves the ``_before`` kinds out: they are asked for by name.

A created execution moves on by itself, so a client reading its status (Get Flow Execution, checked
against the FlowExecutionReadDetail schema) sees it progress: PROCESSING -> STARTING -> RUNNING ->
COMPLETED, or CANCELED for the flows in ``cancel_flows``. ``progression: "time"`` moves it after
``stage_seconds`` per stage; ``"per_read"`` moves it one stage per status read Hilos answers,
deterministic for tests; ``hold_flows`` keeps a flow's executions at a stage until released. Its
counters add up: while RUNNING, ``running`` counts the contacts still in the flow; at the end
completed + failed + expired (+ canceled) = num_contacts, where a contact whose phone ends in one of
``failed_phone_endings`` fails and one of ``expired_phone_endings`` expires. Every ``created_on`` of an
execution is Hilos' clock at its creation, off by ``clock_skew_seconds``.

The list endpoints (local/sandbox_lists.py), paged like DRF (``list_page_size`` per page unless ``page_size``
asks): ``GET /api/flow-execution?flow=&page=`` (PaginatedFlowExecutionListList, newest first) and
``GET /api/flow-execution-contact?flow_execution=&flow_execution__flow=&is_active=&page=&page_size=``
(PaginatedFlowExecutionContactListSimpleList, contacts in the order sent, each with a status that follows
its execution's and adds up to its counters). A list read shows an execution where it is now, but moves it
on only by its age: with ``per_read`` only status reads move it.

Control (no auth, 127.0.0.1 only): ``GET|POST /_sandbox/faults`` (POST merges the given fields; a
``seed`` makes the sequence of fault decisions repeatable),
``GET /_sandbox/stats`` (``requests``, ``responses``, ``faults``, ``recent`` (each call with its ``fault`` and
whether it ``created`` an execution)... count run calls, ``contact_lists`` per fingerprint their calls, creations
and ``execution_ids``; status reads have their own: ``status_reads`` per execution, answered or not,
``status_read_answers``, ``status_read_faults``, ``recent_status_reads``; and so do list reads:
``lookup_reads`` per endpoint, ``lookup_read_answers``, ``lookup_read_faults``, ``recent_lookup_reads``),
``POST /_sandbox/reset`` (stats and settings back to the start; created executions stay).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import re
import socket
import struct
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from local.hilos_schema import Problem, run_request_problems
from local.sandbox_lists import (
    ACTIVE_CONTACT_STATUSES,
    FLOW_NAME,
    MAX_PAGE_SIZE,
    InvalidFilter,
    InvalidPage,
    boolean_filter,
    contact_status,
    flow_execution_contact,
    flow_execution_list_item,
    lenient_uuid,
    page_of,
    page_size_of,
    paginated,
    query_of,
    uuid_filter,
)

log = logging.getLogger("local.sandbox")

BASE_PATH = "/api"
_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_RUN_PATH = re.compile(rf"^{BASE_PATH}(?:/channel/whatsapp)?/flow/(?P<flow_id>{_UUID})/run/?$")
_EXECUTION_PATH = re.compile(rf"^{BASE_PATH}/flow-execution/(?P<execution_id>{_UUID})/?$")
# The list endpoints, by the name their reads are counted under in the stats.
EXECUTIONS_LIST = "flow-execution"
CONTACTS_LIST = "flow-execution-contact"
_LIST_PATHS = {
    re.compile(rf"^{BASE_PATH}/flow-execution/?$"): EXECUTIONS_LIST,
    re.compile(rf"^{BASE_PATH}/flow-execution-contact/?$"): CONTACTS_LIST,
}
_RECENT_CALLS = 200


class FaultKind(StrEnum):
    SERVER_ERROR = "500"
    UNAVAILABLE = "503"
    THROTTLED = "429"
    SLOW = "slow"  # the run is created, the answer comes after the client gave up
    RESET = "reset"  # the run is created, the connection is reset without an answer
    SLOW_BEFORE = "slow_before"  # held past the client's read timeout, then 504: nothing was created
    RESET_BEFORE = "reset_before"  # the connection is reset once the request was read: nothing was created


# Answered (or dropped) before the request reaches Hilos' application: nothing was processed.
_BEFORE_FAULTS = frozenset(
    {
        FaultKind.SERVER_ERROR,
        FaultKind.UNAVAILABLE,
        FaultKind.THROTTLED,
        FaultKind.SLOW_BEFORE,
        FaultKind.RESET_BEFORE,
    }
)
# The mix of a plan that names none: the kinds there were before slow_before and reset_before, which are
# asked for by name. A plan written earlier keeps its meaning, and a seeded one its sequence of faults.
DEFAULT_FAULT_MIX: dict[FaultKind, float] = dict.fromkeys(
    (FaultKind.SERVER_ERROR, FaultKind.UNAVAILABLE, FaultKind.THROTTLED, FaultKind.SLOW, FaultKind.RESET), 1.0
)


class FaultTarget(StrEnum):
    RUN = "run"  # POST .../run
    STATUS = "status"  # GET /flow-execution/{id}
    LOOKUP = "lookup"  # GET /flow-execution and GET /flow-execution-contact (the list endpoints)


class FaultPlan(BaseModel):
    """How often to misbehave, and how: ``mix`` gives relative weights of the fault kinds."""

    model_config = ConfigDict(extra="forbid")

    rate: float = Field(default=0.0, ge=0, le=1)
    mix: dict[FaultKind, float] = Field(default_factory=lambda: dict(DEFAULT_FAULT_MIX))
    limit: int | None = Field(default=None, ge=0, description="Inject at most this many faults, then behave.")
    # Run calls only unless asked: the status sync reads every started run of a flow on each tick, and
    # those reads would otherwise use up a plan meant for the flow's next run (its limit, its sequence).
    targets: set[FaultTarget] = Field(
        default_factory=lambda: {FaultTarget.RUN},
        description="Which calls the plan faults: run calls, status reads, lookups (the list endpoints).",
    )


class Progression(StrEnum):
    TIME = "time"  # an execution moves on after stage_seconds per stage
    PER_READ = "per_read"  # an execution moves on one stage per status read Hilos answers


# The stages every execution goes through (FlowExecutionStatusEnum), then COMPLETED, or CANCELED for
# a flow of cancel_flows. READY/AWAITING_CONFIRMATION/CONFIRMED/PAUSED are states of runs a person
# confirms or pauses in Hilos' UI, which an API run never waits for.
STAGES = ("PROCESSING", "STARTING", "RUNNING")
TERMINAL_STATUSES = frozenset({"COMPLETED", "CANCELED"})
DEFAULT_STAGE_SECONDS: dict[str, float] = {"PROCESSING": 2.0, "STARTING": 1.0, "RUNNING": 7.0}


class SandboxSettings(FaultPlan):
    """Everything the control endpoint can change. The top-level plan applies to flows without their own."""

    latency_ms: int = Field(default=0, ge=0, le=60_000)
    retry_after_seconds: int = Field(default=1, ge=0, le=3600)
    slow_seconds: float = Field(default=5.0, ge=0, le=600)
    flows: dict[uuid.UUID, FaultPlan] = Field(default_factory=dict)
    reject_flows: set[uuid.UUID] = Field(default_factory=set, description="Answered 400, like an unpublished flow.")
    unknown_flows: set[uuid.UUID] = Field(default_factory=set, description="Answered 404.")
    progression: Progression = Progression.TIME
    stage_seconds: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_STAGE_SECONDS),
        description="Seconds each stage lasts with progression 'time'; a number sets every stage, 0 skips one.",
    )
    cancel_flows: set[uuid.UUID] = Field(default_factory=set, description="Their executions end CANCELED.")
    hold_flows: dict[uuid.UUID, Literal["PROCESSING", "STARTING", "RUNNING"]] = Field(
        default_factory=dict, description="Their executions go no further than this stage until the entry is removed."
    )
    failed_phone_endings: set[str] = Field(default_factory=lambda: {"7"}, description="These contacts fail.")
    expired_phone_endings: set[str] = Field(default_factory=lambda: {"9"}, description="These contacts expire.")
    list_page_size: int = Field(
        default=10, ge=1, le=MAX_PAGE_SIZE, description="Page size of the list endpoints when none is asked for."
    )
    clock_skew_seconds: float = Field(
        default=0.0, ge=-86_400, le=86_400, description="Added to the created_on of every execution created from now."
    )

    @field_validator("stage_seconds", mode="before")
    @classmethod
    def _every_stage(cls, value: Any) -> Any:
        """A number applies to every stage; stages left out keep their defaults."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            return dict.fromkeys(STAGES, float(value))
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(STAGES))
            if unknown:
                raise ValueError(f"{unknown}: not a stage; stages are {list(STAGES)}")
            return {**DEFAULT_STAGE_SECONDS, **value}
        return value

    @field_validator("stage_seconds")
    @classmethod
    def _seconds_in_range(cls, value: dict[str, float]) -> dict[str, float]:
        if any(not 0 <= seconds <= 86_400 for seconds in value.values()):
            raise ValueError("stage seconds must be between 0 and 86400")
        return value


def contact_list_fingerprint(flow_id: str, contact_list: Any) -> str:
    """Same flow + same contacts (in any order, any key order) = same fingerprint: a repeated run."""
    contacts = contact_list if isinstance(contact_list, list) else [contact_list]
    normalised = sorted(json.dumps(item, sort_keys=True, separators=(",", ":")) for item in contacts)
    return hashlib.sha256(json.dumps([flow_id.lower(), normalised]).encode()).hexdigest()[:16]


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
    status_reads: Counter[str] = field(default_factory=Counter)  # by execution id, answered or not
    status_read_answers: Counter[str] = field(default_factory=Counter)
    status_read_faults: Counter[str] = field(default_factory=Counter)
    recent_status_reads: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=_RECENT_CALLS))
    # And so are the list reads a reconciliation makes (by endpoint: flow-execution, flow-execution-contact).
    lookup_reads: Counter[str] = field(default_factory=Counter)
    lookup_read_answers: Counter[str] = field(default_factory=Counter)
    lookup_read_faults: Counter[str] = field(default_factory=Counter)
    recent_lookup_reads: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=_RECENT_CALLS))

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
            "status_reads": dict(self.status_reads),
            "status_read_answers": dict(self.status_read_answers),
            "status_read_faults": dict(self.status_read_faults),
            "recent_status_reads": list(self.recent_status_reads),
            "lookup_reads": dict(self.lookup_reads),
            "lookup_read_answers": dict(self.lookup_read_answers),
            "lookup_read_faults": dict(self.lookup_read_faults),
            "recent_lookup_reads": list(self.recent_lookup_reads),
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
                stats.status_reads[call["execution_id"]] += 1
                stats.status_read_answers[str(call["status"])] += 1
                if call.get("fault"):
                    stats.status_read_faults[call["fault"]] += 1
                stats.recent_status_reads.append(call)
                return
            if call.get("lookup_read"):
                stats.lookup_reads[call["lookup_read"]] += 1
                stats.lookup_read_answers[str(call["status"])] += 1
                if call.get("fault"):
                    stats.lookup_read_faults[call["fault"]] += 1
                stats.recent_lookup_reads.append(call)
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


class _SandboxServer(ThreadingHTTPServer):
    daemon_threads = True  # idle keep-alive connections must not hold up shutdown

    def __init__(self, address: tuple[str, int], state: SandboxState) -> None:
        super().__init__(address, _SandboxHandler)
        self.state = state
        self.stopping = threading.Event()


class _SandboxHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _SandboxServer
    timeout = 120  # an idle keep-alive connection is dropped after this
    _deferred_fault: FaultKind | None = None  # chosen at the gateway, applied after the run is created

    def log_message(self, format: str, *args: Any) -> None:
        pass  # _dispatch logs one line per request instead

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- routing ---------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        started = time.monotonic()
        path = urlsplit(self.path).path
        body = self._read_body()
        if path.startswith("/_sandbox/"):
            self._control(method, path, body)
            return
        run = _RUN_PATH.match(path)
        execution = _EXECUTION_PATH.match(path)
        listed = next((name for pattern, name in _LIST_PATHS.items() if pattern.match(path)), None)
        call: dict[str, Any] = {
            "at": datetime.now(UTC).isoformat(),
            "method": method,
            "path": path,
            "flow_id": run["flow_id"].lower() if run else None,
            "fault": None,
            **self._auth(),
        }
        if execution and method == "GET":
            call.update(status_read=True, execution_id=execution["execution_id"].lower())
        if listed and method == "GET":
            call.update(lookup_read=listed, query=urlsplit(self.path).query)
        if run and method == "POST":
            call.update(execution_id=None)  # until the execution is created
            self._run(call, run["flow_id"].lower(), body)
        elif execution and method == "GET":
            self._get_execution(call, execution["execution_id"])
        elif listed and method == "GET":
            self._list(call, listed)
        elif run or execution or listed:
            self._answer(call, 405, {"detail": f'Method "{method}" not allowed.'})
        else:
            self._answer(call, 404, {"detail": "Not found."})
        log.info(
            "hilos  %s %s %s%s %.0f ms",
            method,
            path,
            call.get("status", "-"),
            f" (fault: {call['fault']})" if call.get("fault") else "",
            (time.monotonic() - started) * 1000,
        )

    def _run(self, call: dict[str, Any], flow_id: str, raw: bytes) -> None:
        state = self.server.state
        try:
            body, parse_error = json.loads(raw), None
        except ValueError as exc:
            body, parse_error = None, str(exc)
        if isinstance(body, dict) and isinstance(body.get("contact_list"), list):
            # Every call is counted per contact list, even one that fails: repeats stay visible.
            call["fingerprint"] = contact_list_fingerprint(flow_id, body["contact_list"])
            call["num_contacts"] = len(body["contact_list"])
        if self._unauthorized_or_faulted(call, flow_id):
            return
        settings = state.settings
        if uuid.UUID(flow_id) in settings.unknown_flows:
            self._answer(call, 404, {"detail": "Not found."})
            return
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            self._answer(call, 415, {"detail": f'Unsupported media type "{content_type}" in request.'})
            return
        if parse_error is not None:
            self._answer(call, 400, {"detail": f"JSON parse error - {parse_error}"})
            return
        problems = run_request_problems(body)
        call["body_valid"] = not problems
        if problems:
            self._answer(call, 400, drf_errors(problems))
            return
        if uuid.UUID(flow_id) in settings.reject_flows:
            self._answer(call, 400, {"non_field_errors": ["This flow is not published; it cannot be executed."]})
            return
        execution = state.create_execution(call, body)
        self._answer_processed(call, 201, execution)

    def _get_execution(self, call: dict[str, Any], execution_id: str) -> None:
        state = self.server.state
        # The flow's own fault plan applies to the status reads of its executions, if it targets them.
        call["flow_id"] = flow_id = state.flow_of(execution_id)
        if self._unauthorized_or_faulted(call, flow_id, FaultTarget.STATUS):
            return
        detail = state.read_execution(execution_id)
        if detail is None:
            self._answer_processed(call, 404, {"detail": "Not found."})
        else:
            call["execution_status"] = detail["status"]
            self._answer_processed(call, 200, detail)

    def _list(self, call: dict[str, Any], endpoint: str) -> None:
        """List Flow Executions or List Flow Execution Contacts, filtered and paged as Hilos does."""
        state = self.server.state
        query = query_of(self.path)
        # The flow's own fault plan applies to the lookups of its executions, if it targets them.
        if endpoint == EXECUTIONS_LIST:
            flow_id = lenient_uuid(query, "flow")
        else:
            execution_id = lenient_uuid(query, "flow_execution")
            flow_id = lenient_uuid(query, "flow_execution__flow") or (execution_id and state.flow_of(execution_id))
        call["flow_id"] = flow_id
        if self._unauthorized_or_faulted(call, flow_id, FaultTarget.LOOKUP):
            return
        url = self._absolute_url()
        try:
            if endpoint == EXECUTIONS_LIST:
                answer = state.list_executions(uuid_filter(query, "flow"), query.get("page"), url)
            else:
                answer = state.list_contacts(
                    execution_id=uuid_filter(query, "flow_execution"),
                    flow_id=uuid_filter(query, "flow_execution__flow"),
                    is_active=boolean_filter(query, "is_active"),
                    requested_page=query.get("page"),
                    page_size=page_size_of(query, state.settings.list_page_size),
                    url=url,
                )
        except InvalidFilter as invalid:
            self._answer_processed(call, 400, invalid.errors)
        except InvalidPage:
            self._answer_processed(call, 404, {"detail": "Invalid page."})
        else:
            call.update(count=answer["count"], returned=len(answer["results"]))
            self._answer_processed(call, 200, answer)

    def _absolute_url(self) -> str:
        """The request's URL as Django's build_absolute_uri gives it: the Host header, the target as sent."""
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        return f"http://{host}{self.path}"

    def _unauthorized_or_faulted(
        self, call: dict[str, Any], flow_id: str | None, target: FaultTarget = FaultTarget.RUN
    ) -> bool:
        """Gateway-level behaviour, before Hilos looks at the request: latency, the faults that strike before it
        is processed (5xx/429, slow_before, reset_before), auth."""
        state = self.server.state
        settings = state.settings
        if settings.latency_ms:
            self.server.stopping.wait(settings.latency_ms / 1000)
        fault = state.choose_fault(flow_id, target)
        call["fault"] = fault.value if fault in _BEFORE_FAULTS else None
        self._deferred_fault = fault if fault not in _BEFORE_FAULTS else None
        if fault is FaultKind.RESET_BEFORE:
            self._reset(call)
        elif fault is FaultKind.SLOW_BEFORE:
            # The gateway gives up on an upstream that never got the request: 504, once the client has left.
            detail = {"detail": "Gateway timeout: the request was not processed in time."}
            self._answer(call, 504, detail, delay_seconds=settings.slow_seconds)
        elif fault is FaultKind.SERVER_ERROR:
            self._answer(call, 500, {"detail": "A server error occurred."})
        elif fault is FaultKind.UNAVAILABLE:
            self._answer(call, 503, {"detail": "Service temporarily unavailable, try again later."})
        elif fault is FaultKind.THROTTLED:
            wait = settings.retry_after_seconds
            detail = {"detail": f"Request was throttled. Expected available in {wait} second{'s' * (wait != 1)}."}
            self._answer(call, 429, detail, {"Retry-After": str(wait)})
        elif call["auth_scheme"] == "none":
            self._answer(call, 401, {"detail": "Authentication credentials were not provided."})
        elif not call["auth_ok"]:
            self._answer(call, 401, {"detail": "Invalid token."})
        else:
            return False
        return True

    def _answer_processed(self, call: dict[str, Any], status: int, body: Any) -> None:
        """Answer a request Hilos has processed, unless a fault strikes now: a reset, or the answer comes late."""
        fault, self._deferred_fault = self._deferred_fault, None
        if fault is not None:
            call["fault"] = fault.value
        if fault is FaultKind.RESET:
            self._reset(call)
        else:
            delay = self.server.state.settings.slow_seconds if fault is FaultKind.SLOW else 0
            self._answer(call, status, body, delay_seconds=delay)

    def _auth(self) -> dict[str, Any]:
        # The token itself is never recorded: only the scheme used and whether it was accepted.
        header = self.headers.get("Authorization", "")
        scheme, _, credentials = header.strip().partition(" ")
        accepted = scheme == "Token" and hmac.compare_digest(credentials.strip(), self.server.state.token)
        return {"auth_scheme": scheme or "none", "auth_ok": accepted}

    # -- control ---------------------------------------------------------------------------
    def _control(self, method: str, path: str, raw: bytes) -> None:
        state = self.server.state
        route = (method, path.rstrip("/"))
        if route == ("GET", "/_sandbox/stats"):
            self._send(200, state.snapshot())
        elif route == ("GET", "/_sandbox/faults"):
            self._send(200, state.settings.model_dump(mode="json"))
        elif route == ("POST", "/_sandbox/faults"):
            try:
                changes = json.loads(raw or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError("the body must be a JSON object")
                settings = state.update_settings(changes)
            except ValidationError as exc:
                self._send(400, {"detail": json.loads(exc.json(include_url=False, include_input=False))})
                return
            except ValueError as exc:
                self._send(400, {"detail": str(exc)})
                return
            log.info("hilos  faults set: %s", settings.model_dump_json(exclude_defaults=True))
            self._send(200, settings.model_dump(mode="json"))
        elif route == ("POST", "/_sandbox/reset"):
            state.reset()
            self._send(200, {"reset": True})
        else:
            self._send(404, {"detail": "Not found."})

    # -- I/O -------------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _answer(
        self,
        call: dict[str, Any],
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
        delay_seconds: float = 0,
    ) -> None:
        call["status"] = status
        self.server.state.record(call)  # before a late answer: the stats show what Hilos did, at once
        if delay_seconds:
            self.server.stopping.wait(delay_seconds)
        self._send(status, body, headers)

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True  # the client gave up (a slow answer): nothing to tell it

    def _reset(self, call: dict[str, Any]) -> None:
        """Drop the connection with a TCP reset (SO_LINGER 0) instead of an answer."""
        call["status"] = "reset"
        self.server.state.record(call)
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()


def drf_errors(problems: list[Problem]) -> dict[str, Any]:
    """Schema problems in Django REST framework's shape: {"field": ["message"], "list": [{}, {"f": [...]}]}."""
    tree: dict[str, Any] = {}
    for path, message in problems:
        parts = [str(part) for part in path] or ["non_field_errors"]
        node = tree
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):  # a message at a parent path already: keep both
                child = node[part] = {"non_field_errors": child}
            node = child
        leaf = node.setdefault(parts[-1], [])
        if isinstance(leaf, dict):
            leaf.setdefault("non_field_errors", []).append(message)
        else:
            leaf.append(message)
    return _lists_for_indexes(tree)


def _lists_for_indexes(node: Any) -> Any:
    """{"0": {...}, "2": {...}} -> [{...}, {}, {...}], like DRF's errors for a list of objects."""
    if not isinstance(node, dict):
        return node
    converted = {key: _lists_for_indexes(value) for key, value in node.items()}
    if converted and all(key.isdigit() for key in converted):
        items: list[Any] = [{} for _ in range(max(map(int, converted)) + 1)]
        for key, value in converted.items():
            items[int(key)] = value
        return items
    return converted


class HilosSandbox:
    """The sandbox server on 127.0.0.1 (port 0 = any free port), serving in a background thread."""

    def __init__(self, token: str, settings: SandboxSettings, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = SandboxState(token, settings)
        run_request_problems({})  # load the schema now, not on the first run
        self._server = _SandboxServer((host, port), self.state)
        self._thread = threading.Thread(target=self._server.serve_forever, name="hilos-sandbox", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def api_url(self) -> str:
        return self.url + BASE_PATH

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.stopping.set()  # wakes slow answers and latency waits
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
