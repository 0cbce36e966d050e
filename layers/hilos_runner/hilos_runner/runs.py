"""Starting one run: record it, call Hilos, record the outcome. Shared by the API and the worker.

The record is written *before* Hilos is called (status SENDING), so a run that started upstream can
never be without a record, even if the process dies between the call and the final write: a record
stuck in SENDING reads as "outcome unknown".

``start`` returns for the two outcomes that must never be resent (SUBMITTED, UNKNOWN) and raises for
the others after recording them. With an idempotency key, Powertools stores the returned result, so a
repeated key gets the first answer (even an UNKNOWN one) instead of a second Hilos call; an error
removes the idempotency record, so a retry with the same key may try again.
"""

import hashlib
from typing import Any
from uuid import UUID

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, Field

from hilos_runner.errors import HilosRejectedError, HilosRunnerError
from hilos_runner.executions import ExecutionRecord, ExecutionStore, RunSource, RunStatus, utc_now
from hilos_runner.hilos import HilosClient
from hilos_runner.models import FlowExecution, FlowRunRequest
from hilos_runner.observability import logger, metrics

IDEMPOTENCY_KEY_PATTERN = r"^[A-Za-z0-9._:\-]{1,128}$"
# A caller's key, or one derived from it for the n-th Hilos call of a split message ("key#n"). Callers'
# keys cannot contain '#', so a derived key never collides with a key someone chose.
RUN_IDEMPOTENCY_KEY_PATTERN = r"^[A-Za-z0-9._:\-]{1,128}(#[0-9]{1,6})?$"
# A run in one of these states may have reached Hilos (or surely did): it is never sent again.
_MAYBE_SENT = frozenset({RunStatus.SENDING, RunStatus.UNKNOWN} | {status for status in RunStatus if status.started})


class RunFingerprint(BaseModel):
    """The idempotency payload of a run (key + [flow_id, request]): the digest of the body Hilos gets instead
    of the contacts, so Powertools copies and hashes a few bytes, not the whole request (it deep-copies its
    payload: ~70 ms for 250 contacts)."""

    flow_id: UUID
    request: str
    idempotency_key: str | None = None


class RunCommand(BaseModel):
    """Everything needed to start one run; its ``fingerprint()`` is the idempotency payload."""

    flow_id: UUID
    request: FlowRunRequest
    source: RunSource
    idempotency_key: str | None = Field(default=None, pattern=RUN_IDEMPOTENCY_KEY_PATTERN)
    # Set for queued runs: a bulk chunk's existing record, or an id derived from the SQS message, so
    # that a redelivery finds what an earlier attempt did.
    run_id: UUID | None = None
    parent_id: UUID | None = None
    chunk_index: int | None = None
    attempt: int = 1

    def fingerprint(self) -> RunFingerprint:
        digest = hashlib.sha256(self.request.hilos_body()).hexdigest()
        return RunFingerprint(flow_id=self.flow_id, request=digest, idempotency_key=self.idempotency_key)


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


class RunService:
    def __init__(self, hilos: HilosClient, store: ExecutionStore) -> None:
        self._hilos = hilos
        self._store = store

    def start(self, command: RunCommand) -> RunResult:
        # Idempotency records expire and a worker can die mid-call: the execution record is the
        # lasting memory of whether this run may already have reached Hilos.
        existing = self._store.get(command.run_id) if command.run_id else None
        if existing is not None and existing.status in _MAYBE_SENT:
            return self._not_resent(existing)
        record = ExecutionRecord(
            flow_id=command.flow_id,
            source=command.source,
            status=RunStatus.SENDING,
            num_contacts=len(command.request.contact_list),
            idempotency_key=command.idempotency_key,
            parent_id=command.parent_id,
            chunk_index=command.chunk_index,
            attempts=command.attempt,
            **({"run_id": command.run_id} if command.run_id else {}),
            **({"created_at": existing.created_at} if existing else {}),
        )
        self._store.put(record)  # fails before anything is sent: the caller may simply retry
        try:
            execution = self._hilos.create_flow_execution(command.flow_id, command.request)
        except HilosRunnerError as error:
            status = status_after(error)
            self._finish(record, status=status, last_error=error.message)
            metrics.add_metric(name=f"Runs{status.title()}", unit=MetricUnit.Count, value=1)
            if status is RunStatus.UNKNOWN:
                return RunResult(run=record)
            error.run_id = str(record.run_id)
            raise
        self._finish(
            record,
            status=RunStatus.SUBMITTED,
            hilos_execution_id=execution.id,
            hilos_status=execution.status,
            last_error=None,
        )
        metrics.add_metric(name="RunsSubmitted", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="ContactsSubmitted", unit=MetricUnit.Count, value=record.num_contacts)
        return RunResult(run=record, hilos=execution)

    def _not_resent(self, existing: ExecutionRecord) -> RunResult:
        logger.info(
            "run already sent to Hilos earlier; not sending it again",
            extra={"run_id": str(existing.run_id), "status": existing.status},
        )
        if existing.status is RunStatus.SENDING:
            # An earlier attempt stopped between sending and recording the answer.
            self._finish(
                existing,
                status=RunStatus.UNKNOWN,
                last_error="an earlier attempt stopped after sending the run to Hilos; it may have started "
                "and is not resent",
            )
            metrics.add_metric(name="RunsUnknown", unit=MetricUnit.Count, value=1)
        return RunResult(run=existing)

    def _finish(self, record: ExecutionRecord, **changes: Any) -> None:
        for name, value in changes.items():
            setattr(record, name, value)
        record.updated_at = utc_now()
        if record.awaits_sync and record.next_sync_at is None:
            record.next_sync_at = record.updated_at  # Hilos accepted it: the next status sync pass looks
        try:
            self._store.put(record)
        except HilosRunnerError:
            # The Hilos call is done and must not be repeated because bookkeeping failed; the
            # record stays SENDING (= unknown) and the failure is visible in logs and metrics.
            logger.exception("execution record update failed", extra={"run_id": str(record.run_id)})
            metrics.add_metric(name="RecordUpdateFailures", unit=MetricUnit.Count, value=1)
