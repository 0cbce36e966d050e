"""Starting one run: record it, call Hilos, record the outcome. Shared by the API, the worker and
reconciliation (which sends a run again once Hilos shows it never started).

The record is written *before* Hilos is called (status SENDING), together with the body about to be
sent, so a run that started upstream can never be without a record, even if the process dies between
the call and the final write: a record stuck in SENDING reads as "outcome unknown", and reconciliation
(hilos_runner.reconcile) finds out from Hilos what happened, resending the kept body only when Hilos
shows the run never started. The final write is conditional on the record still being the SENDING one
this call wrote, so a late writer never undoes what reconciliation decided meanwhile.

``start`` returns for the two outcomes that must never be resent blindly (SUBMITTED, UNKNOWN) and raises
for the others after recording them. With an idempotency key, Powertools stores the returned result, so
a repeated key gets the first answer (even an UNKNOWN one) instead of a second Hilos call; an error
removes the idempotency record, so a retry with the same key may try again.
"""

import hashlib
from datetime import datetime, timedelta
from uuid import UUID, uuid5

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, Field, PrivateAttr

from hilos_runner.duplicates import DuplicatesRemoved
from hilos_runner.errors import ConfigurationError, HilosAuthError, HilosRejectedError, HilosRunnerError
from hilos_runner.execution_records import ExecutionRecord, Resolution, RunSource, RunStatus, utc_now
from hilos_runner.execution_store import ExecutionStore
from hilos_runner.hilos import HilosClient
from hilos_runner.matching import run_contacts_digest
from hilos_runner.models import FlowExecution, FlowRunRequest
from hilos_runner.observability import logger, metrics
from hilos_runner.settings import Settings

# A caller's key (hilos_runner.models.IDEMPOTENCY_KEY_PATTERN), or one derived from it for the n-th Hilos call
# of a split message ("key#n"). Callers' keys cannot contain '#', so a derived key never collides with a key
# someone chose.
RUN_IDEMPOTENCY_KEY_PATTERN = r"^[A-Za-z0-9._:\-]{1,128}(#[0-9]{1,6})?$"
_KEYED_RUN_NAMESPACE = UUID("3d6f4b0e-9a7c-4e21-8f5d-6c2b1a0e9d47")
# A run in one of these states may have reached Hilos (or surely did): it is never sent again.
_MAYBE_SENT = frozenset({RunStatus.SENDING, RunStatus.UNKNOWN} | {status for status in RunStatus if status.started})


class RunCommand(BaseModel):
    """Everything needed to start one run (with a key, idempotent on its flow, key and ``digest()``)."""

    flow_id: UUID
    request: FlowRunRequest
    source: RunSource
    idempotency_key: str | None = Field(default=None, pattern=RUN_IDEMPOTENCY_KEY_PATTERN)
    # Set for queued runs: a bulk chunk's existing record, or an id derived from the SQS message, so
    # that a redelivery finds what an earlier attempt did.
    run_id: UUID | None = None
    parent_id: UUID | None = None
    chunk_index: int | None = None
    retry_of: UUID | None = None  # the run whose failed contacts this run is for (hilos_runner.retries)
    attempt: int = 1
    duplicates_removed: DuplicatesRemoved | None = None  # kept on the record (hilos_runner.duplicates)
    start_at: datetime | None = None  # set: recorded SCHEDULED now, started then (hilos_runner.scheduling)
    _digest: str | None = PrivateAttr(default=None)

    def keyed_run_id(self) -> UUID:
        """The run id of a keyed run: the same flow, key and body always give the same run (and record)."""
        return uuid5(_KEYED_RUN_NAMESPACE, f"{self.flow_id}\n{self.idempotency_key}\n{self.digest()}")

    def digest(self) -> str:
        """SHA-256 of the body Hilos gets: a run's identity next to its key."""
        if self._digest is None:
            # A start time is part of what was asked: the same key with another start_at is another request.
            when = f"\nstart_at={self.start_at.timestamp()}".encode() if self.start_at else b""
            self._digest = hashlib.sha256(self.request.hilos_body() + when).hexdigest()
        return self._digest


class RunResult(BaseModel):
    run: ExecutionRecord
    hilos: FlowExecution | None = Field(default=None, description="Hilos' answer (FlowExecutionEdit).")


def status_after(error: Exception) -> RunStatus:
    """The record status for a run that ended with ``error``."""
    if isinstance(error, HilosRunnerError) and error.outcome_unknown:
        return RunStatus.UNKNOWN
    if isinstance(error, HilosRejectedError):
        return RunStatus.REJECTED
    return RunStatus.FAILED


def worth_retrying(error: HilosRunnerError) -> bool:
    """Nothing started, and sending again later may succeed: Hilos or AWS unavailable, or a refused token or
    broken configuration that an operator can fix (so the run must not be dropped meanwhile)."""
    return error.retryable or isinstance(error, HilosAuthError | ConfigurationError)


class RunService:
    def __init__(self, hilos: HilosClient, store: ExecutionStore, settings: Settings) -> None:
        self._hilos = hilos
        self._store = store
        self._settings = settings

    def start(self, command: RunCommand) -> RunResult:
        # Idempotency records expire and a worker can die mid-call: the execution record is the
        # lasting memory of whether this run may already have reached Hilos.
        existing = self._store.get(command.run_id) if command.run_id else None
        if existing is not None and (existing.status in _MAYBE_SENT or existing.awaits_reconcile):
            return self._not_resent(existing)
        now = utc_now()
        record = self.new_record(
            command,
            status=RunStatus.SENDING,
            attempts=command.attempt,
            sent_at=now,
            next_sync_at=self._past_call_budget(now),
            updated_at=now,
            created_at=existing.created_at if existing else now,
        )
        # Fails before anything is sent: the caller may simply retry.
        self.keep(record, command, timedelta(hours=self._settings.request_body_ttl_hours))
        return self._send(record, command.request)

    def new_record(self, command: RunCommand, **fields: object) -> ExecutionRecord:
        """The record of ``command``'s run with ``fields`` (status, times), identified among Hilos' executions by its
        contacts' digest so that reconciliation can find it."""
        digest, contact_ids = run_contacts_digest(command.request.contact_list)
        return ExecutionRecord.model_validate(
            {
                "flow_id": command.flow_id,
                "source": command.source,
                "num_contacts": len(command.request.contact_list),
                "idempotency_key": command.idempotency_key,
                "parent_id": command.parent_id,
                "chunk_index": command.chunk_index,
                "contacts_digest": digest,
                "contact_ids": contact_ids or None,
                "duplicates_removed": command.duplicates_removed.for_record() if command.duplicates_removed else None,
                "retry_of": command.retry_of,
                **({"run_id": command.run_id} if command.run_id else {}),
                **fields,
            }
        )

    def keep(self, record: ExecutionRecord, command: RunCommand, body_for: timedelta) -> None:
        """Write ``record`` with the body Hilos is to get (kept ``body_for``, for reconciliation or a later start)
        and the run's options (kept for its lifetime, for retries of its contacts)."""
        request = command.request
        self._store.put_with_request(record, request.hilos_body(), body_for, options=request.options_json().encode())

    def resend(self, seen: ExecutionRecord, request: FlowRunRequest, **noted: object) -> RunResult | None:
        """Send a run again that Hilos shows never started (reconciliation), through the same guarded path:
        the record first (SENDING, one more resend, with the ``noted`` changes; conditional on it still being
        ``seen``), then the call. None when the record changed meanwhile (someone else is on it). A failure
        that leaves the run surely not started and worth retrying puts it back to QUEUED for the next pass
        instead of raising."""
        changes = {**noted, "resends": seen.resends + 1, "resolution": Resolution.RESENT}
        return self._send_if_unchanged(seen, request, changes, resending=True)

    def start_scheduled(self, seen: ExecutionRecord, request: FlowRunRequest, attempt: int) -> RunResult | None:
        """Start a SCHEDULED run at its time (hilos_runner.scheduling), through the same guarded path: SENDING first,
        conditional on the record still being ``seen`` (a cancel, or another delivery of its start message, may have
        moved it on: then None, and nothing is sent), then the call."""
        return self._send_if_unchanged(seen, request, {"attempts": attempt})

    def _send_if_unchanged(
        self, seen: ExecutionRecord, request: FlowRunRequest, changes: dict[str, object], *, resending: bool = False
    ) -> RunResult | None:
        now = utc_now()
        sending = seen.changed(
            at=now,
            **changes,
            status=RunStatus.SENDING,
            sent_at=now,
            next_sync_at=self._past_call_budget(now),
            last_error=None,
        )
        if not self._store.replace_if_unchanged(sending, seen):
            return None
        if resending:
            metrics.add_metric(name="RunsResent", unit=MetricUnit.Count, value=1)
        return self._send(sending, request, resending=resending)

    def _send(self, record: ExecutionRecord, request: FlowRunRequest, *, resending: bool = False) -> RunResult:
        try:
            execution = self._hilos.create_flow_execution(record.flow_id, request)
        except HilosRunnerError as error:
            if resending and not error.outcome_unknown and worth_retrying(error):
                # This attempt surely did not reach Hilos: the run is still known not started; the next
                # pass sends it (the attempt does not count as a resend).
                waiting = self._finish(
                    record, status=RunStatus.QUEUED, resends=record.resends - 1, last_error=error.message
                )
                return RunResult(run=waiting)
            status = status_after(error)
            finished = self._finish(record, status=status, last_error=error.message)
            metrics.add_metric(name=f"Runs{status.title()}", unit=MetricUnit.Count, value=1)
            if status is RunStatus.UNKNOWN:
                return RunResult(run=finished)
            error.run_id = str(record.run_id)
            raise
        finished = self._finish(
            record,
            status=RunStatus.SUBMITTED,
            hilos_execution_id=execution.id,
            hilos_status=execution.status,
            last_error=None,
        )
        metrics.add_metric(name="RunsSubmitted", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="ContactsSubmitted", unit=MetricUnit.Count, value=record.num_contacts)
        return RunResult(run=finished, hilos=execution)

    def _not_resent(self, existing: ExecutionRecord) -> RunResult:
        logger.info(
            "run already sent to Hilos earlier; not sending it again",
            extra={"run_id": str(existing.run_id), "status": existing.status},
        )
        if existing.status is RunStatus.SENDING and existing.next_sync_at and existing.next_sync_at <= utc_now():
            # An earlier attempt stopped between sending and recording the answer (its call budget is over).
            existing = self._finish(
                existing,
                status=RunStatus.UNKNOWN,
                last_error="an earlier attempt stopped after sending the run to Hilos; it may have started, and "
                "is looked up in Hilos instead of being resent",
            )
            metrics.add_metric(name="RunsUnknown", unit=MetricUnit.Count, value=1)
        return RunResult(run=existing)

    def _finish(self, record: ExecutionRecord, **changes: object) -> ExecutionRecord:
        """``record`` with ``changes``, written only if the stored one is still ``record``; what is stored after."""
        now = utc_now()
        changed = record.changed(at=now, **changes)
        # Hilos answered (or surely will not): the next status sync or reconciliation pass looks at once.
        changed.next_sync_at = now if changed.awaits_sync else None
        try:
            if self._store.replace_if_unchanged(changed, record):
                return changed
        except HilosRunnerError:
            # The Hilos call is done and must not be repeated because bookkeeping failed; the caller gets
            # the outcome as it is, the stored record stays SENDING and reconciliation catches it up later.
            logger.exception("execution record update failed", extra={"run_id": str(record.run_id)})
            metrics.add_metric(name="RecordUpdateFailures", unit=MetricUnit.Count, value=1)
            return changed
        # Reconciliation decided this run meanwhile (this writer was past its call budget): its word stands.
        logger.warning("execution record changed meanwhile; not overwritten", extra={"run_id": str(record.run_id)})
        return self._store.get(record.run_id) or record

    def _past_call_budget(self, sent_at: datetime) -> datetime:
        """When a SENDING record is surely no longer being worked on: reconciliation may look it up then."""
        return sent_at + timedelta(seconds=self._settings.hilos_call_budget_seconds)
