"""One record of the runs queue: validate, start the flow (once), decide acknowledge or retry.

``QueuedRunWorker.process`` returns when the record is done (acknowledged: deleted from the queue)
and raises ``RecordRetry`` when it must come back (reported in ``batchItemFailures``):

- an invalid message is recorded REJECTED (keyed by its SQS message id) and acknowledged;
- SUBMITTED and UNKNOWN runs are acknowledged; an UNKNOWN run is never resent;
- Hilos 400/404 and a reused idempotency key are recorded and acknowledged: resending cannot help;
- 429/5xx/connection refused, AWS dependencies down, a duplicate still in flight, and also a refused
  token or a broken configuration are retried: the record is failed, its run record goes back to
  QUEUED (FAILED on the last attempt) and the message's visibility is set so it returns after
  Hilos' Retry-After or an exponential backoff (capped). A bad token is not fixed by retrying soon,
  but dropping the message would lose the run: it waits the longest delay, then ends in the
  dead-letter queue (alarmed), from where it can be redriven once the token is fixed;
- a message with more contacts than the chunk size becomes several Hilos calls, keys ``<key>#<n>``,
  so a redelivery resumes after the calls already made (their results come from the idempotency
  store, or from the execution record once that has expired);
- no Hilos call starts when the invocation's remaining time is below one call's budget: the record
  is failed and made visible again at once, for a fresh invocation.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid5

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import ValidationError

from hilos_runner import json_input
from hilos_runner.chunking import chunk_contacts
from hilos_runner.duplicates import DuplicatesRemoved, without_duplicates
from hilos_runner.errors import (
    ConfigurationError,
    HilosAuthError,
    HilosRunnerError,
    HilosUnavailableError,
    IdempotencyInProgressError,
    IdempotencyKeyReusedError,
    InvalidRequestError,
    validation_details,
)
from hilos_runner.execution_records import ExecutionRecord, RunSource, RunStatus, utc_now
from hilos_runner.execution_store import ExecutionStore
from hilos_runner.messages import QueuedRun
from hilos_runner.models import Contact
from hilos_runner.observability import log_keys, logger, metrics
from hilos_runner.queue_sender import QueueSender
from hilos_runner.runs import RunCommand, RunResult, status_after, worth_retrying
from hilos_runner.settings import Deadline, Settings, has_time_for

if TYPE_CHECKING:
    from hilos_runner.scheduling import RunScheduler

# Run ids of queued runs are derived from the SQS message id, so every delivery of a message finds
# the records of the earlier ones.
_MESSAGE_RUN_NAMESPACE = UUID("0c7e2f55-8f0c-4b6a-b1d4-5f3e9a6c2d71")
_NIL_FLOW_ID = UUID(int=0)
_MAX_REJECTION_TEXT = 1000


def message_run_id(message_id: str, part: int | None = None) -> UUID:
    """The run id of a queued message (or of its ``part``-th Hilos call, when it is split): every delivery of
    the message finds the records of the earlier ones, and so can a producer or an operator."""
    return uuid5(_MESSAGE_RUN_NAMESPACE, message_id if part is None else f"{message_id}#{part}")


class RecordRetry(Exception):
    """The record must be delivered again (after ``delay_seconds``); raised to fail it in the batch."""

    def __init__(self, reason: str, delay_seconds: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay_seconds = delay_seconds


@dataclass(frozen=True)
class _Part:
    """One Hilos call of a message: its contacts, record id, idempotency key and bulk references."""

    contacts: list[Contact]
    run_id: UUID
    key: str
    parent_id: UUID | None
    chunk_index: int | None


class QueuedRunWorker:
    def __init__(
        self,
        settings: Settings,
        store: ExecutionStore,
        queue: QueueSender,
        start: Callable[[RunCommand], RunResult],  # idempotency.start_run: idempotent per key
        scheduler: "Callable[[], RunScheduler] | None" = None,  # start_at: hilos_runner.scheduling (built on first use)
    ) -> None:
        self._settings = settings
        self._store = store
        self._queue = queue
        self._start = start
        self._scheduler = scheduler

    def process(self, record: SQSRecord, deadline: Deadline) -> dict[str, Any]:
        # The message id is the correlation id of every log line written for this record.
        with log_keys(correlation_id=record.message_id):
            return self._process(record, deadline)

    def _process(self, record: SQSRecord, deadline: Deadline) -> dict[str, Any]:
        attempt = int(record.attributes.approximate_receive_count or 1)
        try:
            document: Any = None
            try:
                document = json_input.loads(record.body, location="")
                if self._scheduler is not None and _is_start_message(document):
                    return self._start_scheduled(document, record, deadline, attempt)
                message = QueuedRun.model_validate(document)
                contacts, duplicates = without_duplicates(
                    message.contact_list, message.on_duplicate, lambda index: f"contact_list.{index}"
                )
                if message.start_at is not None:
                    self._check_start_at(message.start_at, record)
            except ValidationError as error:
                details = validation_details(error.errors(include_url=False, include_input=False))
                return self._reject_message(record, details, attempt, document)
            except InvalidRequestError as error:
                return self._reject_message(record, error.details, attempt, document)
            return self._run(message, record, deadline, attempt, contacts=contacts, duplicates=duplicates)
        except RecordRetry as retry:
            self._come_back_later(record, retry, attempt)
            raise
        except HilosRunnerError as error:
            if not error.retryable:
                raise
            # Bookkeeping outside a run (DynamoDB throttled while recording): the record comes back.
            later = RecordRetry(error.message, self.delay_seconds(error, attempt))
            self._come_back_later(record, later, attempt)
            raise later from error
        except Exception:
            # A bug: the record fails and returns after the visibility timeout (then the DLQ).
            logger.exception("unexpected error processing a record", extra={"message_id": record.message_id})
            raise

    def _come_back_later(self, record: SQSRecord, retry: RecordRetry, attempt: int) -> None:
        queue_url = self._settings.runs_queue_url or record.queue_url
        self._queue.delay(record.receipt_handle, retry.delay_seconds, queue_url)
        metrics.add_metric(name="RecordsRetried", unit=MetricUnit.Count, value=1)
        logger.warning(
            "record will be retried",
            extra={
                "message_id": record.message_id,
                "reason": retry.reason,
                "attempt": attempt,
                "delay_seconds": retry.delay_seconds,
            },
        )

    def _run(
        self,
        message: QueuedRun,
        record: SQSRecord,
        deadline: Deadline,
        attempt: int,
        *,
        contacts: list[Contact],
        duplicates: DuplicatesRemoved | None,
    ) -> dict[str, Any]:
        parts = self._parts(message, contacts, record.message_id)
        if message.start_at is not None and self._scheduler is not None:
            return self._schedule(message, parts, record, attempt, duplicates)
        runs = []
        for part in parts:
            if not has_time_for(deadline, self._settings.hilos_call_budget_seconds):
                metrics.add_metric(name="RecordsHeldBack", unit=MetricUnit.Count, value=1)
                raise RecordRetry("not enough time left in this invocation for another Hilos call", 0)
            command = self._command(message, part, attempt, duplicates)
            try:
                result: RunResult = self._start(command)
                status = result.run.status
            except HilosRunnerError as error:
                if worth_retrying(error):
                    self.note_retry(part.run_id, error, attempt)
                    raise RecordRetry(error.message, self.delay_seconds(error, attempt)) from error
                if isinstance(error, IdempotencyKeyReusedError):
                    self._record_key_reused(message, part, attempt)
                status = status_after(error) if error.run_id else RunStatus.REJECTED
                logger.info("run not started; not retried", extra={"run_id": str(part.run_id), "reason": error.message})
            runs.append({"run_id": str(part.run_id), "chunk_index": part.chunk_index, "status": status})
        logger.info("record processed", extra={"message_id": record.message_id, "runs": runs})
        return {"message_id": record.message_id, "runs": runs}

    def _command(
        self, message: QueuedRun, part: _Part, attempt: int, duplicates: DuplicatesRemoved | None
    ) -> RunCommand:
        return RunCommand(
            flow_id=message.flow_id,
            request=message.run_request(part.contacts),
            source=RunSource.QUEUE,
            idempotency_key=part.key,
            run_id=part.run_id,
            parent_id=part.parent_id,
            chunk_index=part.chunk_index,
            attempt=attempt,
            duplicates_removed=duplicates,
            start_at=message.start_at,
        )

    # -- scheduled runs (hilos_runner.scheduling) ----------------------------------------------------------------
    def _check_start_at(self, start_at: datetime, record: SQSRecord) -> None:
        """A message's start_at is judged as of when the producer sent it: a message that waited on the queue is
        not refused for that."""
        from hilos_runner.scheduling import check_start_at

        sent_ms = record.attributes.sent_timestamp
        sent = datetime.fromtimestamp(int(sent_ms) / 1000, UTC) if sent_ms else utc_now()
        check_start_at(start_at, self._settings, field="start_at", now=sent)

    def _schedule(
        self,
        message: QueuedRun,
        parts: list[_Part],
        record: SQSRecord,
        attempt: int,
        duplicates: DuplicatesRemoved | None,
    ) -> dict[str, Any]:
        """A queued message with start_at: its parts recorded SCHEDULED, started together at that time."""
        assert self._scheduler is not None
        commands = [self._command(message, part, attempt, duplicates) for part in parts]
        scheduled = self._scheduler().schedule_parts(commands, record.message_id)
        runs = [{"run_id": str(run.run_id), "chunk_index": run.chunk_index, "status": run.status} for run in scheduled]
        logger.info("record scheduled", extra={"message_id": record.message_id, "runs": runs})
        return {"message_id": record.message_id, "runs": runs}

    def _start_scheduled(self, document: Any, record: SQSRecord, deadline: Deadline, attempt: int) -> dict[str, Any]:
        from hilos_runner.scheduling import StartMessage

        assert self._scheduler is not None
        return self._scheduler().process_start(StartMessage.model_validate(document), record, deadline, attempt, self)

    def retry_later(self, reason: str, delay_seconds: int) -> RecordRetry:
        """The exception that sends the record back to the queue, visible again in ``delay_seconds``."""
        return RecordRetry(reason, delay_seconds)

    def _parts(self, message: QueuedRun, contacts: list[Contact], message_id: str) -> list[_Part]:
        key = message.idempotency_key or f"sqs-{message_id}"
        if message.run_id is not None:  # a bulk chunk made by the API: one call, its own record
            return [_Part(contacts, message.run_id, key, message.bulk_id, message.chunk_index)]
        chunks = chunk_contacts(contacts, self._settings.bulk_chunk_size)
        if len(chunks) == 1:
            return [_Part(chunks[0], message_run_id(message_id), key, None, None)]
        return [
            _Part(contacts, message_run_id(message_id, index), f"{key}#{index}", None, index)
            for index, contacts in enumerate(chunks)
        ]

    def delay_seconds(self, error: HilosRunnerError, attempt: int) -> int:
        cap = self._settings.retry_after_max_seconds
        if isinstance(error, HilosAuthError | ConfigurationError):
            return cap  # an operator has to act; do not hammer Hilos with a refused token meanwhile
        if isinstance(error, IdempotencyInProgressError):
            return min(cap, math.ceil(self._settings.hilos_call_budget_seconds))  # the other call ends by then
        if isinstance(error, HilosUnavailableError) and error.retry_after is not None:
            return min(cap, math.ceil(error.retry_after))
        return min(cap, self._settings.retry_base_delay_seconds * 2 ** (attempt - 1))

    def note_retry(
        self, run_id: UUID, error: HilosRunnerError, attempt: int, *, back_to: RunStatus = RunStatus.QUEUED
    ) -> None:
        """Show the run as ``back_to`` again (QUEUED on the queue, or SCHEDULED for a scheduled run's start message),
        or FAILED for good on the last attempt."""
        if error.run_id is None:
            return  # nothing was recorded for this attempt (it failed before the record was written)
        last = attempt >= self._settings.max_receive_count
        try:
            record = self._store.get(run_id)
            if record is None:
                return
            then = "no more retries; the message goes to the dead-letter queue" if last else "it will be retried"
            waiting = record.changed(
                status=RunStatus.FAILED if last else back_to,
                last_error=f"{error.message} (attempt {attempt} of {self._settings.max_receive_count}; {then})",
            )
            # Conditional: another delivery of the same message may have SUBMITTED it since we read it.
            self._store.replace_if_status(waiting, record.status)
        except HilosRunnerError:
            logger.exception("could not update the record of a run to retry", extra={"run_id": str(run_id)})

    def _record_key_reused(self, message: QueuedRun, part: _Part, attempt: int) -> None:
        existing = self._store.get(part.run_id)
        if existing is not None and existing.status is not RunStatus.QUEUED:
            return
        reason = "the idempotency key was already used with a different flow or body"
        noted: dict[str, Any] = {"status": RunStatus.REJECTED, "attempts": attempt, "last_error": reason}
        chunk_of = (part.parent_id, part.chunk_index)
        rejected = ExecutionRecord.of_queued_run(
            part.run_id, message.flow_id, len(part.contacts), part.key, chunk_of, **noted
        )
        self._store.put(rejected)

    def _reject_message(
        self, record: SQSRecord, details: list[dict[str, str]], attempt: int, document: Any
    ) -> dict[str, Any]:
        """Record a message that is not a valid QueuedRun (REJECTED, keyed by message id) and acknowledge it."""
        flow_id, contacts = _salvage(document)
        problems = "; ".join(f"{detail['field'] or 'body'}: {detail['reason']}" for detail in details)
        run_id = message_run_id(record.message_id)
        reason = f"the message is not a valid QueuedRun: {problems}"[:_MAX_REJECTION_TEXT]
        key = f"sqs-{record.message_id}"
        rejected = ExecutionRecord.of_queued_run(
            run_id, flow_id, contacts, key, status=RunStatus.REJECTED, attempts=attempt, last_error=reason
        )
        self._store.put(rejected)  # if DynamoDB fails, the message comes back: never dropped unrecorded
        metrics.add_metric(name="MessagesRejected", unit=MetricUnit.Count, value=1)
        logger.warning(
            "message rejected",
            extra={"message_id": record.message_id, "run_id": str(run_id), "reason": problems[:_MAX_REJECTION_TEXT]},
        )
        return {"message_id": record.message_id, "runs": [{"run_id": str(run_id), "status": RunStatus.REJECTED}]}


def _is_start_message(document: Any) -> bool:
    """A scheduled run's start message (hilos_runner.scheduling.StartMessage), not a QueuedRun."""
    return isinstance(document, dict) and "scheduled_runs" in document


def _salvage(document: Any) -> tuple[UUID, int]:
    """The flow id and contact count of an invalid message, where readable (nil flow id otherwise), so
    its record can be found with the flow's runs. ``document`` is the message as json_input read it, or None
    when it is not JSON within our limits: nothing here parses the body again."""
    if not isinstance(document, dict):
        return _NIL_FLOW_ID, 0
    try:
        flow_id = UUID(str(document.get("flow_id"))[:64])
    except ValueError:
        flow_id = _NIL_FLOW_ID
    contacts = document.get("contact_list")
    return flow_id, len(contacts) if isinstance(contacts, list) else 0
