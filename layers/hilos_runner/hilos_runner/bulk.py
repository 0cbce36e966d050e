"""Bulk runs: a large contact list split into queued chunks, and the progress of those chunks.

``submit`` writes a record per chunk (QUEUED) and then the parent record *before* sending anything,
so nothing is ever on the queue without a record. Chunk record ids are derived from the bulk id
(``chunk_run_id``), so the parent finds its chunks with one BatchGetItem and no index.

With an Idempotency-Key the bulk id is derived from (flow, key, body): a repeat within the
idempotency TTL gets the first 202 from Powertools; a repeat after a failed submit (some chunks could
not be queued, 503) resumes it, re-sending the chunks not yet run. Without a key every submit is
a new bulk run.

The parent record's status follows its chunks (``BulkTracker``): QUEUED while no chunk has been sent,
IN_PROGRESS until every chunk's execution is finished in Hilos (or the chunk is known not started), then
COMPLETED, or COMPLETED_WITH_ERRORS when a chunk was not started (rejected, failed) or canceled, or a contact
failed or expired. The status sync moves it (the parent sits in the ``sync-pending`` index until it is finished
and announced, one "Hilos Bulk Run Finished" event), and so does every read of ``GET /bulk-runs/{id}``, so the
bulk run's view, its record and every listing say the same.
"""

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple
from uuid import UUID, uuid4, uuid5

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from hilos_runner.chunking import chunk_messages, chunk_run_id
from hilos_runner.duplicates import DuplicatesRemoved
from hilos_runner.errors import ConfigurationError, DependencyUnavailableError, NotFoundError
from hilos_runner.execution_records import ExecutionCounters, ExecutionRecord, RunSource, RunStatus, utc_now
from hilos_runner.execution_store import ExecutionStore
from hilos_runner.messages import BulkRunRequest, QueuedRun
from hilos_runner.models import IDEMPOTENCY_KEY_PATTERN, run_options_json
from hilos_runner.observability import logger
from hilos_runner.queue_sender import QueueSender

if TYPE_CHECKING:
    from hilos_runner.scheduling import RunScheduler

_BULK_ID_NAMESPACE = UUID("6f0b1c9e-3d0a-4f7e-9a51-2a7c4c1d8e3b")
_NOT_QUEUED_PREFIX = "not queued: "
# Built on first use, not at import: run_api's cold start serves single runs more often than bulk ones.
_DEFERRED = ConfigDict(defer_build=True)


class BulkCommand(BaseModel):
    """A bulk submit."""

    model_config = _DEFERRED

    flow_id: UUID
    request: BulkRunRequest
    idempotency_key: str | None = Field(default=None, pattern=IDEMPOTENCY_KEY_PATTERN)
    retry_of: UUID | None = None  # the bulk run whose failed contacts this one is for (hilos_runner.retries)
    _digest: str | None = PrivateAttr(default=None)

    def digest(self) -> str:
        """SHA-256 of the contact list as sent: a bulk run's identity next to its key."""
        if self._digest is None:
            self._digest = hashlib.sha256(self.request.model_dump_json(exclude_unset=True).encode()).hexdigest()
        return self._digest


class BulkAccepted(BaseModel):
    model_config = _DEFERRED

    id: UUID = Field(description="The bulk run's id (also its parent execution record).")
    num_contacts: int
    chunks: int = Field(description="Queued messages, one Hilos call each.")
    status_url: str = Field(description="Where to follow the bulk run: GET /bulk-runs/{id} (an absolute URL).")
    duplicates_removed: DuplicatesRemoved | None = None


class BulkChunkStatus(BaseModel):
    model_config = _DEFERRED

    run_id: UUID
    chunk_index: int | None
    status: RunStatus
    num_contacts: int
    hilos_execution_id: UUID | None = None
    hilos_status: str | None = None
    counters: ExecutionCounters | None = None
    attempts: int
    last_error: str | None = None
    updated_at: datetime


class BulkRunStatus(BaseModel):
    model_config = _DEFERRED

    id: UUID
    flow_id: UUID
    status: RunStatus = Field(
        description="QUEUED, IN_PROGRESS until every chunk's execution is finished, then COMPLETED or "
        "COMPLETED_WITH_ERRORS (a chunk not started or canceled, or a contact failed or expired)."
    )
    num_contacts: int
    num_chunks: int
    created_at: datetime
    chunks_by_status: dict[RunStatus, int]
    contacts_by_status: dict[RunStatus, int]
    counters: ExecutionCounters = Field(description="Hilos' contact counters, summed over the chunks.")
    chunks_finished: int = Field(description="Chunks Hilos has finished (COMPLETED or CANCELED).")
    contacts_url: str = Field(description="Where each contact's outcome is listed: GET /bulk-runs/{id}/contacts.")
    retry_of: UUID | None = Field(default=None, description="The bulk run whose failed contacts this one is for.")
    chunks: list[BulkChunkStatus]


def status_url(bulk_id: UUID) -> str:
    return f"/bulk-runs/{bulk_id}"


@dataclass(frozen=True)
class BulkRunService:
    store: ExecutionStore
    sender: QueueSender
    chunk_size: int
    scheduler: "Callable[[], RunScheduler] | None" = None  # start_at: hilos_runner.scheduling

    def submit(self, command: BulkCommand) -> BulkAccepted:
        request = command.request
        bulk_id = _bulk_id(command)
        messages = chunk_messages(command.flow_id, request, chunk_size=self.chunk_size, bulk_id=bulk_id)
        accepted = BulkAccepted(
            id=bulk_id,
            num_contacts=len(request.contact_list),
            chunks=len(messages),
            status_url=status_url(bulk_id),
            duplicates_removed=request.duplicates_removed,
        )
        parent = self.store.get(bulk_id) if command.idempotency_key else None
        # start_at: every chunk recorded SCHEDULED with the body it will send, and one schedule queues them then.
        scheduler = self.scheduler() if self.scheduler and request.start_at else None
        if parent is None:
            pending = messages
            if scheduler:
                scheduler.record_chunks(command.flow_id, messages)
            else:
                self.store.put_many([_chunk_record(command.flow_id, message) for message in messages])
            # Last: a parent has all its chunks.
            parent = _parent_record(command, bulk_id, len(messages))
            self.store.put(parent, options=run_options_json(command.request).encode())
        else:
            pending = [] if scheduler else self._resumable(parent, messages)
        if scheduler:
            scheduler.trigger_bulk(parent)
            return accepted
        failed = self.sender.send([message.body() for message in pending])
        if failed:
            self._record_not_queued(command.flow_id, [pending[index] for index in failed], failed)
            error = DependencyUnavailableError(
                f"{len(failed)} of {len(messages)} chunks could not be queued; repeat the request with the same "
                "Idempotency-Key to queue them (chunks already queued are not run twice)"
            )
            error.run_id = str(bulk_id)
            raise error
        logger.info(
            "bulk run queued",
            extra={"bulk_id": str(bulk_id), "contacts": accepted.num_contacts, "chunks": len(pending)},
        )
        return accepted

    def status(self, bulk_id: UUID) -> BulkRunStatus:
        """The bulk run as its chunks are now; the parent record is brought up to date on the way."""
        parent = self.store.get(bulk_id)
        if parent is None or not parent.is_bulk:
            raise NotFoundError(f"no bulk run {bulk_id}")
        parent, found, *_ = BulkTracker(self.store).follow(parent)
        chunks = [BulkChunkStatus.model_validate(chunk, from_attributes=True) for chunk in found]
        contacts: Counter[RunStatus] = Counter()
        for chunk in chunks:
            contacts[chunk.status] += chunk.num_contacts
        return BulkRunStatus(
            id=bulk_id,
            flow_id=parent.flow_id,
            status=parent.status,
            num_contacts=parent.num_contacts,
            num_chunks=parent.num_chunks or 0,
            created_at=parent.created_at,
            chunks_by_status=dict(Counter(chunk.status for chunk in chunks)),
            contacts_by_status=dict(contacts),
            counters=parent.counters or ExecutionCounters(),
            chunks_finished=sum(1 for chunk in chunks if chunk.status.finished),
            contacts_url=parent.contacts_url,
            retry_of=parent.retry_of,
            chunks=chunks,
        )

    def _resumable(self, parent: ExecutionRecord, messages: list[QueuedRun]) -> list[QueuedRun]:
        """The chunks of an earlier submit of the same (flow, key, body) that may not be on the queue:
        those SQS refused, and those still QUEUED (an earlier submit may have stopped before sending
        them). A chunk sent twice is harmless: its idempotency key starts it once."""
        if parent.num_chunks != len(messages):
            raise ConfigurationError("BULK_CHUNK_SIZE changed since this bulk run was first submitted")
        found = self.store.get_many([_run_id(message) for message in messages])
        pending, requeued = [], []
        for message in messages:
            record = found.get(_run_id(message))
            if record is None or _not_queued(record):
                requeued.append(message)
            if record is None or _not_queued(record) or record.status is RunStatus.QUEUED:
                pending.append(message)
        self.store.put_many([_chunk_record(parent.flow_id, message) for message in requeued])  # QUEUED again
        return pending

    def _record_not_queued(self, flow_id: UUID, messages: list[QueuedRun], reasons: dict[int, str]) -> None:
        self.store.put_many(
            [
                _chunk_record(flow_id, message, status=RunStatus.FAILED, last_error=_NOT_QUEUED_PREFIX + reason)
                for message, reason in zip(messages, reasons.values(), strict=True)
            ]
        )


# A chunk in one of these states will not change any more: finished in Hilos, or known never started.
_CHUNK_DONE = frozenset({RunStatus.COMPLETED, RunStatus.CANCELED, RunStatus.REJECTED, RunStatus.FAILED})


class BulkTracker:
    """A bulk run's parent record, moved along by its chunks' records (one BatchGetItem for all of them)."""

    def __init__(self, store: ExecutionStore) -> None:
        self._store = store

    def chunks(self, parent: ExecutionRecord) -> list[ExecutionRecord]:
        """The parent's chunk records that exist, in chunk order."""
        chunk_ids = [chunk_run_id(parent.run_id, index) for index in range(parent.num_chunks or 0)]
        found = self._store.get_many(chunk_ids)
        return [found[run_id] for run_id in chunk_ids if run_id in found]

    def follow(self, parent: ExecutionRecord, *, revisit_at: datetime | None = None) -> "Followed":
        """``parent`` with the status and summed counters its chunks give it, written when they changed (or, with
        ``revisit_at``, a status sync's visit: always, due again then unless finished), with its chunks. The write is
        conditional on the parent being as read; when someone else wrote it first, their version is returned."""
        chunks = self.chunks(parent)
        status, counters = bulk_progress(parent, chunks)
        if revisit_at is None and (status, counters) == (parent.status, parent.counters or ExecutionCounters()):
            return Followed(parent, chunks)
        now = utc_now()
        followed = parent.changed(
            at=now,
            status=status,
            counters=counters,
            synced_at=now,
            next_sync_at=now if status.finished else (revisit_at or parent.next_sync_at),
        )
        if not self._store.replace_if_unchanged(followed, parent):
            return Followed(self._store.get(parent.run_id) or parent, chunks, changed_meanwhile=True)
        if status.finished and not parent.status.finished:
            logger.info("bulk run finished", extra={"bulk_id": str(parent.run_id), "status": status.value})
        return Followed(followed, chunks)


class Followed(NamedTuple):
    record: ExecutionRecord  # the parent as stored now
    chunks: list[ExecutionRecord]
    changed_meanwhile: bool = False  # someone else wrote the parent first (their version is ``record``)


def bulk_progress(parent: ExecutionRecord, chunks: list[ExecutionRecord]) -> tuple[RunStatus, ExecutionCounters]:
    """A bulk run's status and Hilos' contact counters summed over its chunks."""
    counters = sum((chunk.counters for chunk in chunks if chunk.counters), ExecutionCounters())
    if parent.status is RunStatus.SCHEDULED or parent.canceled_at is not None:
        return parent.status, counters  # not started yet, or canceled before: hilos_runner.scheduling moves it
    statuses = {chunk.status for chunk in chunks}
    if len(chunks) < (parent.num_chunks or 0) or not statuses <= _CHUNK_DONE:
        waiting = {RunStatus.QUEUED, RunStatus.SCHEDULED}  # a started scheduled bulk run's chunks on their way
        nothing_sent = statuses <= waiting and not any(chunk.attempts for chunk in chunks)
        return (RunStatus.QUEUED if nothing_sent else RunStatus.IN_PROGRESS), counters
    if statuses == {RunStatus.COMPLETED} and not (counters.failed or counters.expired or counters.canceled):
        return RunStatus.COMPLETED, counters
    return RunStatus.COMPLETED_WITH_ERRORS, counters


def _bulk_id(command: BulkCommand) -> UUID:
    if command.idempotency_key is None:
        return uuid4()
    return uuid5(_BULK_ID_NAMESPACE, f"{command.flow_id}/{command.idempotency_key}/{command.digest()}")


def _run_id(message: QueuedRun) -> UUID:
    if message.run_id is None:
        raise ValueError("a bulk chunk message carries its record id")
    return message.run_id


def _not_queued(record: ExecutionRecord) -> bool:
    """A chunk whose message SQS refused in a failed submit."""
    return (
        record.status is RunStatus.FAILED
        and record.attempts == 0
        and (record.last_error or "").startswith(_NOT_QUEUED_PREFIX)
    )


def _chunk_record(flow_id: UUID, message: QueuedRun, **more: Any) -> ExecutionRecord:
    run_id, contacts, key = _run_id(message), len(message.contact_list), message.idempotency_key
    return ExecutionRecord.of_queued_run(run_id, flow_id, contacts, key, (message.bulk_id, message.chunk_index), **more)


def _parent_record(command: BulkCommand, bulk_id: UUID, num_chunks: int) -> ExecutionRecord:
    start_at = command.request.start_at
    return ExecutionRecord(
        run_id=bulk_id,
        flow_id=command.flow_id,
        source=RunSource.API,
        status=RunStatus.SCHEDULED if start_at else RunStatus.QUEUED,
        start_at=start_at,
        next_sync_at=start_at,  # the status sync has nothing to look at before
        num_contacts=len(command.request.contact_list),
        idempotency_key=command.idempotency_key,
        num_chunks=num_chunks,
        duplicates_removed=removed.for_record() if (removed := command.request.duplicates_removed) else None,
        retry_of=command.retry_of,
    )
