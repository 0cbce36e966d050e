"""What the Hilos sandbox can be told (at start, or at run time: POST /_sandbox/faults): the fault plans (which
faults, how often, on which calls), how executions progress, and how their contacts end. See local/sandbox.py."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from local.sandbox_lists import MAX_PAGE_SIZE


class FaultKind(StrEnum):
    SERVER_ERROR = "500"
    UNAVAILABLE = "503"
    THROTTLED = "429"
    SLOW = "slow"  # the run is created, the answer comes after the client gave up
    RESET = "reset"  # the run is created, the connection is reset without an answer
    SLOW_BEFORE = "slow_before"  # held past the client's read timeout, then 504: nothing was created
    RESET_BEFORE = "reset_before"  # the connection is reset once the request was read: nothing was created


# Answered (or dropped) before the request reaches Hilos' application: nothing was processed.
BEFORE_FAULTS = frozenset(
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
