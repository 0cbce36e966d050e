"""Scheduled runs: a run, a bulk submit or a queued message with ``start_at`` is validated and recorded at once
(SCHEDULED, with the body Hilos is to get), and started at that time through the same guarded path as any run.

- **At that time**: a one-time EventBridge Scheduler schedule (``at(...)``, UTC, ``ActionAfterCompletion: DELETE``)
  in the stack's schedule group puts a *start message* on the runs queue, ``{"scheduled_runs": [run id, ...]}``,
  sent with a role that may only send to that queue. A run due within ``SCHEDULE_MIN_LEAD_SECONDS`` (EventBridge
  Scheduler fires within the minute of its time) goes straight onto the queue instead, delayed by SQS.
- **Exactly once**: the start message carries ids, never contacts. The worker starts a run only by moving its record
  from SCHEDULED to SENDING with a conditional write, then calls Hilos (``RunService.start_scheduled``): a redelivery,
  a schedule that fires twice, or a start racing a cancel finds the record moved on and starts nothing. After that
  the run is like any other: an ambiguous answer is reconciled, a 5xx retried (the record goes back to SCHEDULED
  until the queue's last attempt).
- **Not before**: a start message that arrives early (EventBridge's minute precision) waits on the queue until
  ``start_at``.
- **Bulk runs** have one schedule. Its start message names the bulk run; the worker moves the parent from SCHEDULED
  to QUEUED (the bulk run has started: it can no longer be canceled) and puts one start message per chunk on the
  queue, so the chunks start together, within the worker's concurrency brake. A queued message split into several
  parts works the same way, without a parent.
- **Cancel** (``DELETE /runs/{id}``, ``DELETE /bulk-runs/{id}``): the record moves from SCHEDULED to CANCELED
  (conditional write; a bulk run's parent first, then its chunks) with ``canceled_at`` and a reason saying Hilos never
  saw it, and the schedule is deleted. A run that has started answers 409. A schedule that fires after the cancel
  finds CANCELED and starts nothing, so a failed delete is harmless.
"""

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from uuid import UUID, uuid5

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import BaseModel, ConfigDict, Field

from hilos_runner.bulk import BulkTracker
from hilos_runner.errors import (
    DependencyUnavailableError,
    HilosRunnerError,
    InvalidRequestError,
    NotFoundError,
    RunNotCancelableError,
)
from hilos_runner.execution_records import ExecutionRecord, RunSource, RunStatus, utc_now
from hilos_runner.execution_store import ExecutionStore
from hilos_runner.messages import QueuedRun
from hilos_runner.models import FlowRunRequest
from hilos_runner.observability import logger
from hilos_runner.queue_sender import QueueSender
from hilos_runner.runs import RunCommand, RunResult, RunService, worth_retrying
from hilos_runner.settings import Deadline, Settings, has_time_for

# SQS holds a message back at most 15 minutes (DelaySeconds) and keeps it invisible at most 12 hours.
_SQS_MAX_DELAY_SECONDS = 900
_SQS_MAX_VISIBILITY_SECONDS = 43_200
_MESSAGE_SCHEDULE_NAMESPACE = UUID("b7e0d7a2-51c4-4f0e-9d8b-0c7a3e1f6a24")
CANCELED_REASON = "canceled before its start time (DELETE); it was never sent to Hilos"
START_AT_HELP = (
    "Start at this time instead of now: an RFC 3339 date-time with an offset (2026-01-31T09:00:00-06:00), at most "
    "SCHEDULE_HORIZON_DAYS (30) ahead. The run is validated and recorded SCHEDULED at once (202); DELETE cancels it "
    "until then."
)


class StartMessage(BaseModel):
    """What a schedule puts on the runs queue when its time comes: the runs to start (ids of records already
    SCHEDULED: a run, a bulk run, or the parts of a queued message), never their contacts."""

    model_config = ConfigDict(extra="forbid")

    scheduled_runs: list[UUID] = Field(min_length=1, max_length=1000)

    def body(self) -> str:
        return self.model_dump_json()


def check_start_at(start_at: datetime, settings: Settings, *, field: str, now: datetime | None = None) -> datetime:
    """``start_at`` in UTC, if it is within the horizon and not in the past beyond the tolerance (as of ``now``: when
    the request was made); otherwise an InvalidRequestError naming ``field``."""
    now = now or utc_now()
    if start_at.tzinfo is None:  # the models take aware date-times only; this guards other callers
        raise _invalid(field, "needs a UTC offset, e.g. 2026-01-31T09:00:00-06:00")
    tolerance = settings.schedule_past_tolerance_seconds
    if start_at < now - timedelta(seconds=tolerance):
        raise _invalid(field, f"is in the past (more than {tolerance} s before now, {_iso(now)})")
    horizon = min(settings.schedule_horizon_days, settings.record_ttl_days)  # the record outlives the start
    if start_at > now + timedelta(days=horizon):
        raise _invalid(field, f"is more than {horizon} days ahead (SCHEDULE_HORIZON_DAYS)")
    return start_at.astimezone(UTC)


def _invalid(field: str, reason: str) -> InvalidRequestError:
    return InvalidRequestError(f"start_at {reason}", details=[{"field": field, "reason": reason}])


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def schedule_name(run_id: UUID) -> str:
    """The schedule of a run or of a bulk run (cancel deletes it by this name)."""
    return f"run-{run_id}"


class ScheduleClient:
    """One-time EventBridge Scheduler schedules in the stack's group, each putting one start message on the runs
    queue with the scheduler's role."""

    def __init__(self, client: Any, settings: Settings) -> None:
        self._client = client
        self._settings = settings

    def create(self, name: str, at: datetime, message: StartMessage) -> None:
        """A schedule ``name`` that sends ``message`` at ``at``; one that already exists (a repeated request) stays."""
        from botocore.exceptions import BotoCoreError, ClientError

        moment = at.astimezone(UTC)
        moment = moment.replace(microsecond=0) + timedelta(seconds=1 if moment.microsecond else 0)  # never early
        try:
            self._client.create_schedule(
                Name=name,
                GroupName=self._settings.schedule_group_name,
                ScheduleExpression=f"at({moment:%Y-%m-%dT%H:%M:%S})",
                ScheduleExpressionTimezone="UTC",
                FlexibleTimeWindow={"Mode": "OFF"},
                Target={
                    "Arn": self._settings.runs_queue_arn,
                    "RoleArn": self._settings.scheduler_role_arn,
                    "Input": message.body(),
                    # A day of retries: a queue that cannot be reached for longer than that needs a person anyway.
                    "RetryPolicy": {"MaximumEventAgeInSeconds": 86_400, "MaximumRetryAttempts": 185},
                },
                ActionAfterCompletion="DELETE",
                Description="hilos-runner: start a scheduled run",
            )
        except ClientError as exc:
            if _error_code(exc) == "ConflictException":
                return
            raise DependencyUnavailableError(
                f"EventBridge Scheduler create_schedule failed ({_error_code(exc)})"
            ) from exc
        except BotoCoreError as exc:
            raise DependencyUnavailableError(
                f"EventBridge Scheduler create_schedule failed ({type(exc).__name__})"
            ) from exc

    def delete(self, name: str) -> bool:
        """Remove schedule ``name``; False when it is not there (it has fired, or was never made) or could not be
        removed (logged: a schedule firing after a cancel starts nothing)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.delete_schedule(Name=name, GroupName=self._settings.schedule_group_name)
        except ClientError as exc:
            if _error_code(exc) != "ResourceNotFoundException":
                logger.warning("could not delete a schedule", extra={"schedule": name, "reason": _error_code(exc)})
            return False
        except BotoCoreError as exc:
            logger.warning("could not delete a schedule", extra={"schedule": name, "reason": type(exc).__name__})
            return False
        return True


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__))


class RetryPolicy(Protocol):
    """How the worker (hilos_runner.worker.QueuedRunWorker) retries a record: the same for start messages."""

    def retry_later(self, reason: str, delay_seconds: int) -> Exception: ...
    def delay_seconds(self, error: HilosRunnerError, attempt: int) -> int: ...
    def note_retry(self, run_id: UUID, error: HilosRunnerError, attempt: int, *, back_to: RunStatus) -> None: ...


class RunScheduler:
    """Recording runs to start later and triggering their start (API, worker), canceling them before it (API), and
    starting them when their start message comes (worker)."""

    def __init__(
        self, settings: Settings, store: ExecutionStore, runs: RunService, schedules: ScheduleClient, queue: QueueSender
    ) -> None:
        self._settings = settings
        self._store = store
        self._runs = runs
        self._schedules = schedules
        self._queue = queue

    # -- scheduling ----------------------------------------------------------------------------------------------
    def schedule_run(self, command: RunCommand) -> RunResult:
        """``command``'s run recorded SCHEDULED and its start triggered for ``command.start_at`` (API runs). A repeat
        of a keyed run finds its record and only makes sure its start is triggered."""
        (record,) = self.record_scheduled([command])
        if record.status is RunStatus.SCHEDULED:
            self._trigger(schedule_name(record.run_id), [record.run_id], _start_of(record), record.run_id)
        return RunResult(run=record)

    def schedule_parts(self, commands: Sequence[RunCommand], message_id: str) -> list[ExecutionRecord]:
        """The parts of one queued message, recorded SCHEDULED and started together at their ``start_at``."""
        records = self.record_scheduled(commands)
        waiting = [record for record in records if record.status is RunStatus.SCHEDULED]
        if waiting:
            if len(records) == 1:
                name = schedule_name(records[0].run_id)
            else:  # not any one part's name: canceling one part must not unschedule the others
                name = f"message-{uuid5(_MESSAGE_SCHEDULE_NAMESPACE, message_id)}"
            self._trigger(name, [record.run_id for record in waiting], _start_of(waiting[0]), waiting[0].run_id)
        return records

    def record_scheduled(self, commands: Sequence[RunCommand]) -> list[ExecutionRecord]:
        """Each command's run recorded SCHEDULED with the body Hilos is to get (kept until its start plus
        REQUEST_BODY_TTL_HOURS); a run already recorded (a repeat, a redelivery) is left as it is."""
        records = []
        for command in commands:
            existing = self._store.get(command.run_id) if command.run_id else None
            if existing is not None:
                records.append(existing)
                continue
            if command.start_at is None:
                raise ValueError("a scheduled run has a start_at")
            now = utc_now()
            record = self._runs.new_record(command, status=RunStatus.SCHEDULED, start_at=command.start_at)
            body_for = max(command.start_at - now, timedelta(0)) + timedelta(
                hours=self._settings.request_body_ttl_hours
            )
            self._runs.keep(record, command, body_for)
            records.append(record)
        return records

    def record_chunks(self, flow_id: UUID, messages: Sequence[QueuedRun]) -> None:
        """A scheduled bulk run's chunks (the bulk API's chunk messages), recorded SCHEDULED with their bodies."""
        commands = [
            RunCommand(
                flow_id=flow_id,
                request=message.run_request(message.contact_list),
                source=RunSource.QUEUE,
                idempotency_key=message.idempotency_key,
                run_id=message.run_id,
                parent_id=message.bulk_id,
                chunk_index=message.chunk_index,
                start_at=message.start_at,
            )
            for message in messages
        ]
        self.record_scheduled(commands)

    def trigger_bulk(self, parent: ExecutionRecord) -> None:
        """Trigger the start of a scheduled bulk run (its parent and chunks recorded SCHEDULED)."""
        if parent.status is RunStatus.SCHEDULED:
            self._trigger(schedule_name(parent.run_id), [parent.run_id], _start_of(parent), parent.run_id)

    def _trigger(self, name: str, run_ids: list[UUID], start_at: datetime, owner: UUID) -> None:
        """A start message for ``run_ids`` at ``start_at``: a schedule, or for a start within the scheduler's
        precision, the queue with a delay. When neither can be made, 503: the run stays SCHEDULED (a repeat with the
        same Idempotency-Key triggers it again; DELETE cancels it)."""
        message = StartMessage(scheduled_runs=run_ids)
        wait = (start_at - utc_now()).total_seconds()
        try:
            if wait < self._settings.schedule_min_lead_seconds:
                delay = min(_SQS_MAX_DELAY_SECONDS, max(0, math.ceil(wait)))
                failed = self._queue.send([message.body()], delay_seconds=delay)
                if failed:
                    raise DependencyUnavailableError(f"the start message could not be queued ({failed[0]})")
            else:
                self._schedules.create(name, start_at, message)
        except DependencyUnavailableError as error:
            error.message = f"the run is recorded SCHEDULED but its start could not be scheduled ({error.message})"
            error.run_id = str(owner)
            raise
        logger.info("run scheduled", extra={"run_ids": [str(run_id) for run_id in run_ids], "start_at": _iso(start_at)})

    # -- canceling -----------------------------------------------------------------------------------------------
    def cancel_run(self, run_id: UUID) -> ExecutionRecord:
        """Cancel a run that has not started (SCHEDULED): CANCELED, never sent; its schedule removed."""
        record = self._store.get(run_id)
        if record is None or record.is_bulk:
            hint = ": it is a bulk run (DELETE /bulk-runs/{id})" if record else ""
            raise NotFoundError(f"no run {run_id}{hint}")
        canceled = self._cancel(record)
        self._schedules.delete(schedule_name(run_id))  # after the record: a start racing it finds CANCELED
        return canceled

    def cancel_bulk(self, bulk_id: UUID) -> ExecutionRecord:
        """Cancel a bulk run none of whose chunks has started: the parent first (the worker moves it to QUEUED before
        it starts any chunk, so exactly one of the two wins), then every chunk, then its schedule."""
        parent = self._store.get(bulk_id)
        if parent is None or not parent.is_bulk:
            raise NotFoundError(f"no bulk run {bulk_id}")
        canceled = self._cancel(parent)
        for chunk in BulkTracker(self._store).chunks(parent):
            if chunk.status is RunStatus.SCHEDULED:
                self._cancel(chunk)
        self._schedules.delete(schedule_name(bulk_id))
        return canceled

    def _cancel(self, record: ExecutionRecord) -> ExecutionRecord:
        for _ in range(3):  # bounded: a record only moves on from SCHEDULED once
            if record.canceled_at is not None:
                return record  # canceled already: DELETE is repeatable
            if record.status is not RunStatus.SCHEDULED:
                refused = RunNotCancelableError(
                    f"the run is {record.status.value}: only a run that has not started (SCHEDULED) can be canceled"
                )
                refused.run_id = str(record.run_id)
                raise refused
            now = utc_now()
            canceled = record.changed(
                at=now, status=RunStatus.CANCELED, canceled_at=now, last_error=CANCELED_REASON, next_sync_at=None
            )
            if self._store.replace_if_status(canceled, RunStatus.SCHEDULED):
                logger.info("scheduled run canceled", extra={"run_id": str(record.run_id)})
                return canceled
            record = self._store.get(record.run_id) or record
        raise DependencyUnavailableError("the run kept changing while it was being canceled; try again")

    # -- starting (the worker, when a start message comes) ---------------------------------------------------------
    def process_start(
        self, message: StartMessage, record: SQSRecord, deadline: Deadline, attempt: int, worker: RetryPolicy
    ) -> dict[str, Any]:
        """Start the run the message names, or, for a bulk run or several parts, put one start message per run on
        the queue. ``worker`` says how a retry is made (its RecordRetry, backoff and record of the retry)."""
        ids = message.scheduled_runs
        if len(ids) > 1:
            runs = self._fan_out(ids, worker)
        else:
            run = self._store.get(ids[0])
            if run is None:
                logger.warning("start message for a run that is not recorded", extra={"run_id": str(ids[0])})
                runs = [{"run_id": str(ids[0]), "status": None}]
            elif run.is_bulk:
                runs = self._start_bulk(run, worker)
            else:
                runs = [self._start_one(run, deadline, attempt, worker)]
        logger.info("start message processed", extra={"message_id": record.message_id, "runs": runs})
        return {"message_id": record.message_id, "runs": runs}

    def _start_one(self, run: ExecutionRecord, deadline: Deadline, attempt: int, worker: RetryPolicy) -> dict[str, Any]:
        outcome = {"run_id": str(run.run_id), "chunk_index": run.chunk_index, "status": run.status}
        if run.status is not RunStatus.SCHEDULED:
            return outcome  # started already (another delivery), canceled, or failed for good: nothing to start
        _not_before(run, worker)
        if not has_time_for(deadline, self._settings.hilos_call_budget_seconds):
            raise worker.retry_later("not enough time left in this invocation for another Hilos call", 0)
        body = self._store.request_body(run.run_id)
        if body is None:
            return {**outcome, "status": self._fail(run, "its request is no longer kept; it was not started")}
        try:
            result = self._runs.start_scheduled(run, FlowRunRequest.model_validate_json(body), attempt)
        except HilosRunnerError as error:
            if worth_retrying(error):
                worker.note_retry(run.run_id, error, attempt, back_to=RunStatus.SCHEDULED)
                raise worker.retry_later(error.message, worker.delay_seconds(error, attempt)) from error
            logger.info("scheduled run not started; not retried", extra={"run_id": str(run.run_id)})
            current = self._store.get(run.run_id)
            return {**outcome, "status": current.status if current else None}
        if result is None:
            return {**outcome, "status": "CHANGED_MEANWHILE"}  # a cancel or another delivery got there first
        return {**outcome, "status": result.run.status}

    def _start_bulk(self, parent: ExecutionRecord, worker: RetryPolicy) -> list[dict[str, Any]]:
        """The bulk run's start: parent SCHEDULED -> QUEUED (from then on it cannot be canceled), then a start message
        per chunk still SCHEDULED (again on a redelivery: a chunk starts once whatever the messages)."""
        if parent.status is RunStatus.SCHEDULED:
            _not_before(parent, worker)
            now = utc_now()
            started = parent.changed(at=now, status=RunStatus.QUEUED, next_sync_at=now)
            claimed = self._store.replace_if_status(started, RunStatus.SCHEDULED)
            parent = started if claimed else (self._store.get(parent.run_id) or parent)
        if parent.canceled_at is not None or parent.status is RunStatus.SCHEDULED:
            return [{"run_id": str(parent.run_id), "status": parent.status}]
        chunks = [chunk for chunk in BulkTracker(self._store).chunks(parent) if chunk.status is RunStatus.SCHEDULED]
        return self._fan_out([chunk.run_id for chunk in chunks], worker)

    def _fan_out(self, run_ids: Sequence[UUID], worker: RetryPolicy) -> list[dict[str, Any]]:
        bodies = [StartMessage(scheduled_runs=[run_id]).body() for run_id in run_ids]
        failed = self._queue.send(bodies)
        if failed:  # this message comes back and sends them all again: each run still starts once
            raise worker.retry_later(f"{len(failed)} start messages could not be queued", 1)
        return [{"run_id": str(run_id), "status": "START_QUEUED"} for run_id in run_ids]

    def _fail(self, run: ExecutionRecord, reason: str) -> RunStatus:
        failed = run.changed(status=RunStatus.FAILED, last_error=reason)
        return RunStatus.FAILED if self._store.replace_if_status(failed, RunStatus.SCHEDULED) else run.status


def _start_of(record: ExecutionRecord) -> datetime:
    if record.start_at is None:
        raise ValueError(f"run {record.run_id} has no start_at")
    return record.start_at


def _not_before(run: ExecutionRecord, worker: RetryPolicy) -> None:
    """A start message that came early (EventBridge fires within the minute) waits on the queue until start_at."""
    wait = (_start_of(run) - utc_now()).total_seconds()
    if wait > 0:
        raise worker.retry_later("scheduled for later", min(_SQS_MAX_VISIBILITY_SECONDS, math.ceil(wait)))
