"""Execution records: what happened to every run, as stored and as answered (the model; the table is
``hilos_runner.execution_store``'s).

A record is changed only through ``ExecutionRecord.changed``, which stamps ``updated_at``: the store's
conditional writes (``replace_if_unchanged``) compare it, so a change that forgot it could undo another
writer's work.
"""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Self
from uuid import UUID, uuid4

from pydantic import BaseModel, Field, PlainSerializer, computed_field

from hilos_runner.duplicates import DuplicatesRemoved


class RunStatus(StrEnum):
    SCHEDULED = "SCHEDULED"  # validated and recorded, waiting for its start_at (hilos_runner.scheduling)
    QUEUED = "QUEUED"  # accepted, waiting on the queue
    SENDING = "SENDING"  # a Hilos call is in flight; if it stays here the outcome is unknown
    SUBMITTED = "SUBMITTED"  # Hilos accepted the run (201)
    REJECTED = "REJECTED"  # the input is wrong (our validation or Hilos 400): never retried
    FAILED = "FAILED"  # could not be started (flow not found, token refused, Hilos down)
    UNKNOWN = "UNKNOWN"  # sent, no answer: may have started; never resent automatically
    # Set by the status sync from Hilos' execution status:
    RUNNING = "RUNNING"  # Hilos is running the flow for the contacts (or paused it)
    COMPLETED = "COMPLETED"  # Hilos finished the execution (terminal)
    # The execution was canceled in Hilos (terminal); or, with ``canceled_at`` and no Hilos execution, a scheduled run
    # we canceled before its time (DELETE /runs/{id}): Hilos never saw it.
    CANCELED = "CANCELED"
    # A bulk run's parent record, from its chunks (hilos_runner.bulk):
    IN_PROGRESS = "IN_PROGRESS"  # some chunk is queued, being sent, or not finished in Hilos
    COMPLETED_WITH_ERRORS = "COMPLETED_WITH_ERRORS"  # every chunk done; some not started, or contacts failed

    @property
    def started(self) -> bool:
        """Hilos accepted the run: it has a Hilos execution."""
        return self in _STARTED

    @property
    def finished(self) -> bool:
        """Terminal in Hilos (a bulk run: every chunk is): the status sync stops fetching it."""
        return self in _FINISHED


_STARTED = frozenset({RunStatus.SUBMITTED, RunStatus.RUNNING, RunStatus.COMPLETED, RunStatus.CANCELED})
_FINISHED = frozenset({RunStatus.COMPLETED, RunStatus.CANCELED, RunStatus.COMPLETED_WITH_ERRORS})
# Hilos' FlowExecutionStatusEnum as our status; anything else (a value Hilos adds later) keeps the
# record where it is, and the sync keeps looking.
_STATUS_OF_HILOS = {
    "PROCESSING": RunStatus.SUBMITTED,
    "READY": RunStatus.SUBMITTED,
    "AWAITING_CONFIRMATION": RunStatus.SUBMITTED,
    "CONFIRMED": RunStatus.SUBMITTED,
    "STARTING": RunStatus.SUBMITTED,
    "RUNNING": RunStatus.RUNNING,
    "PAUSED": RunStatus.RUNNING,
    "COMPLETED": RunStatus.COMPLETED,
    "CANCELED": RunStatus.CANCELED,
}


def status_of_hilos(hilos_status: str | None, current: "RunStatus") -> "RunStatus":
    """Our status for a Hilos execution status; ``current`` when Hilos' is missing or unknown to us."""
    return _STATUS_OF_HILOS.get(hilos_status or "", current)


class Resolution(StrEnum):
    """What reconciliation made of a run whose answer from Hilos was lost."""

    FOUND = "FOUND"  # Hilos had started it: the record now holds its execution id
    RESENT = "RESENT"  # Hilos had not started it: sent again, under the same run id
    NOT_STARTED = "NOT_STARTED"  # Hilos had not started it; not resent (resends off or used up): FAILED
    AMBIGUOUS = "AMBIGUOUS"  # not decided yet (several candidates, Hilos unreadable): looked at again later


# A run that may have reached Hilos without our knowing its execution: reconciliation looks it up.
_MAYBE_STARTED_UNKNOWN = frozenset({"SENDING", "UNKNOWN"})


class RunSource(StrEnum):
    API = "API"
    QUEUE = "QUEUE"


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso_utc(moment: datetime) -> str:
    # Fixed width (always microseconds, always Z): the by-flow index sorts these strings, and
    # "...:15Z" would sort after "...:15.5Z".
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


Timestamp = Annotated[datetime, PlainSerializer(iso_utc, return_type=str, when_used="json")]


class ExecutionCounters(BaseModel):
    """Hilos' per-contact counters of an execution (FlowExecutionReadDetail)."""

    running: int = 0
    completed: int = 0
    failed: int = 0
    expired: int = 0
    canceled: int = 0

    def __add__(self, other: "ExecutionCounters") -> "ExecutionCounters":
        return ExecutionCounters(
            **{name: getattr(self, name) + getattr(other, name) for name in type(self).model_fields}
        )


class ExecutionRecord(BaseModel):
    """One run as stored and as shown to callers (the Hilos token is never part of it)."""

    run_id: UUID = Field(default_factory=uuid4)
    flow_id: UUID
    source: RunSource
    status: RunStatus
    num_contacts: int
    idempotency_key: str | None = None
    hilos_execution_id: UUID | None = None
    hilos_status: str | None = None
    attempts: int = 0
    last_error: str | None = None
    parent_id: UUID | None = None
    chunk_index: int | None = None
    num_chunks: int | None = Field(default=None, description="Set on the parent record of a bulk run.")
    counters: ExecutionCounters | None = Field(default=None, description="Hilos' contact counters, as last synced.")
    synced_at: Timestamp | None = Field(default=None, description="When Hilos' status was last read.")
    next_sync_at: Timestamp | None = Field(default=None, description="When the status sync looks at this run next.")
    sync_error: str | None = Field(default=None, description="Why the last status read failed, if it did.")
    event_published_at: Timestamp | None = Field(
        default=None, description="When the completion event of a finished run went to EventBridge."
    )
    sent_at: Timestamp | None = Field(default=None, description="When the run was last sent to Hilos.")
    resends: int = Field(default=0, description="Times reconciliation sent the run again (Hilos had not started it).")
    resolution: Resolution | None = Field(
        default=None, description="What reconciliation found for a run whose answer from Hilos was lost."
    )
    reconciled_at: Timestamp | None = Field(default=None, description="When reconciliation last looked the run up.")
    reconcile_attempts: int = Field(default=0, description="How often reconciliation looked the run up in Hilos.")
    retry_of: UUID | None = Field(
        default=None, description="The run (or bulk run) whose failed contacts this one was started for."
    )
    start_at: Timestamp | None = Field(default=None, description="When a scheduled run starts (or was to start).")
    canceled_at: Timestamp | None = Field(
        default=None, description="When a scheduled run was canceled before it started (never sent to Hilos)."
    )
    # Identify the run among Hilos' executions (hilos_runner.matching); kept in the table, never answered.
    contacts_digest: str | None = Field(default=None, exclude=True)
    contact_ids: list[str] | None = Field(default=None, exclude=True)
    duplicates_removed: DuplicatesRemoved | None = Field(
        default=None, description="Contacts dropped because an earlier one had the same phone (or id)."
    )
    created_at: Timestamp = Field(default_factory=utc_now)
    updated_at: Timestamp = Field(default_factory=utc_now)

    @computed_field(description="Where each contact's outcome is listed (GET, also as CSV).")  # type: ignore[prop-decorator]
    @property
    def contacts_url(self) -> str:
        if self.is_bulk:
            return f"/bulk-runs/{self.run_id}/contacts"
        return f"/runs/{self.run_id}/contacts"

    @classmethod
    def of_queued_run(
        cls,
        run_id: UUID,
        flow_id: UUID,
        num_contacts: int,
        idempotency_key: str | None,
        chunk_of: tuple[UUID | None, int | None] = (None, None),
        *,
        status: RunStatus = RunStatus.QUEUED,
        **more: Any,
    ) -> Self:
        """A new record of a queued run (a message, one Hilos call of it, or a bulk chunk: ``chunk_of`` is its
        bulk run's id and its place in it)."""
        return cls(
            run_id=run_id,
            flow_id=flow_id,
            parent_id=chunk_of[0],
            chunk_index=chunk_of[1],
            source=RunSource.QUEUE,
            status=status,
            num_contacts=num_contacts,
            idempotency_key=idempotency_key,
            **more,
        )

    def changed(self, *, at: datetime | None = None, **changes: Any) -> Self:
        """This record with ``changes`` and ``updated_at`` stamped (``at``, or now): the one way a record is
        changed, because the store's conditional writes compare ``updated_at`` to tell writers apart."""
        return self.model_copy(update={**changes, "updated_at": at or utc_now()})

    @property
    def is_bulk(self) -> bool:
        """The parent record of a bulk run: its status follows its chunks (hilos_runner.bulk)."""
        return self.num_chunks is not None

    @property
    def awaits_reconcile(self) -> bool:
        """Sent to Hilos, and no execution id known: the answer was lost (UNKNOWN), or the writer stopped
        before recording it (SENDING); or known not started and waiting to be resent (QUEUED, RESENT)."""
        if self.hilos_execution_id is not None:
            return False
        return self.status.value in _MAYBE_STARTED_UNKNOWN or (
            self.status is RunStatus.QUEUED and self.resolution is Resolution.RESENT
        )

    @property
    def awaits_sync(self) -> bool:
        """The status sync still has work on this record: a lost answer to reconcile, Hilos has not finished
        it, or its completion event is not yet published."""
        if self.canceled_at is not None:  # canceled before it started: nothing to follow in Hilos, nothing to announce
            return False
        if self.awaits_reconcile:
            return True
        if self.is_bulk:  # followed until every chunk is finished, then announced once
            return not self.status.finished or self.event_published_at is None
        if self.hilos_execution_id is None or not self.status.started:
            return False
        return not self.status.finished or self.event_published_at is None


class RunPage(BaseModel):
    items: list[ExecutionRecord]
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` to get the next page.")
