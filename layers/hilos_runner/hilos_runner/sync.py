"""Status sync: runs Hilos accepted follow Hilos' execution status until Hilos finishes them, and runs
whose answer was lost are reconciled with Hilos' records (hilos_runner.reconcile).

``StatusSync.refresh`` brings one record up to date: it reads Hilos' FlowExecutionReadDetail
(status + contact counters), writes what changed, and when the run reached a terminal state
(COMPLETED, CANCELED) publishes its completion event. ``sync_due`` does that for the records due in
the ``sync-pending`` index, oldest due first, within the invocation's budget (a record count and the
time left), reconciling the due records that have no execution id and moving bulk runs' parent records along
with their chunks (hilos_runner.bulk: no Hilos read, one BatchGetItem; announced once when every chunk is done);
it is the scheduled function's whole job, and ``GET /runs/{id}?refresh=true`` calls ``refresh`` for one run.

Every write is conditional on the record being as it was read (``replace_if_unchanged``): two syncs of
the same run (a tick and an on-demand refresh) never undo each other, and only the one that moves a run
to a terminal state publishes its event. A finished run leaves the index once its event is out, so it
is never fetched again; if publishing fails, the record stays in the index and the next pass publishes
without asking Hilos again.
"""

import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime, timedelta
from enum import StrEnum

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel

from hilos_runner.bulk import BulkTracker
from hilos_runner.completion_events import CompletionEventPublisher
from hilos_runner.errors import HilosRunnerError, HilosUnavailableError
from hilos_runner.execution_records import ExecutionCounters, ExecutionRecord, status_of_hilos, utc_now
from hilos_runner.execution_store import ExecutionStore
from hilos_runner.hilos import HilosClient
from hilos_runner.models import FlowExecution
from hilos_runner.observability import log_keys, logger, metrics
from hilos_runner.reconcile import HilosView, ReconcileOutcome, Reconciler
from hilos_runner.settings import Deadline, Settings, has_time_for

_MAX_SYNC_ERROR = 500


class SyncOutcome(StrEnum):
    UPDATED = "updated"  # Hilos' status or counters read and stored
    FINISHED = "finished"  # ... and the run reached a terminal state; its event is out
    CHANGED_MEANWHILE = "changed_meanwhile"  # someone else wrote the record first; left to them
    FAILED = "failed"  # Hilos or AWS failed; the record is tried again later


class SyncReport(BaseModel):
    """What one scheduled pass did (the function's return value, also logged)."""

    due: int = 0
    outcomes: dict[SyncOutcome, int] = {}
    reconciled: dict[ReconcileOutcome, int] = {}  # runs without an execution id, looked up in Hilos
    bulk_runs: dict[SyncOutcome, int] = {}  # bulk runs' parent records, moved along with their chunks
    not_reached: int = 0  # due records left for the next pass (time budget, Hilos throttling)
    throttled: bool = False


class StatusSync:
    def __init__(
        self,
        settings: Settings,
        hilos: HilosClient,
        store: ExecutionStore,
        publisher: CompletionEventPublisher,
        *,
        reconciler: Reconciler,
        executor: ThreadPoolExecutor,
    ) -> None:
        self._settings = settings
        self._hilos = hilos
        self._store = store
        self._publisher = publisher
        self._reconciler = reconciler
        self._executor = executor
        self._bulk = BulkTracker(store)

    def refresh(
        self, record: ExecutionRecord, *, scheduled: bool = False
    ) -> tuple[ExecutionRecord, SyncOutcome | None]:
        """Bring ``record`` up to date with Hilos; None as outcome when there is nothing to sync.
        Raises HilosRunnerError when Hilos or AWS failed (the record is then left as it was). A run whose
        answer was lost is looked up in Hilos first (a resend it calls for goes out at the next pass)."""
        if record.awaits_reconcile:
            record = self._reconciler.reconcile(record, None, resend_now=False).record
        if not record.awaits_sync or record.awaits_reconcile:
            return record, None
        outcome = SyncOutcome.UPDATED
        if record.is_bulk and not record.status.finished:
            # A parent costs no Hilos read: a pass looks at it again after the shortest interval. On demand (an API
            # refresh) it keeps its place in the index, so the next pass still sees it.
            revisit = timedelta(seconds=self._settings.status_sync_min_interval_seconds)
            followed = self._bulk.follow(record, revisit_at=utc_now() + revisit if scheduled else None)
            if followed.changed_meanwhile:
                return followed.record, SyncOutcome.CHANGED_MEANWHILE
            record = followed.record
        elif not record.status.finished:
            assert record.hilos_execution_id is not None  # awaits_sync
            detail = self._hilos.get_flow_execution(record.hilos_execution_id)
            synced = self._synced(record, detail)
            if not self._store.replace_if_unchanged(synced, record):
                return self._store.get(record.run_id) or record, SyncOutcome.CHANGED_MEANWHILE
            metrics.add_metric(name="RunsSynced", unit=MetricUnit.Count, value=1)
            record = synced
        if record.status.finished:
            outcome = SyncOutcome.FINISHED
            record = self._publish(record)
        return record, outcome

    def sync_due(self, deadline: Deadline) -> SyncReport:
        """One scheduled pass: refresh (or reconcile) the records due now, up to the batch limit and the time left.
        Bulk runs' parent records come after every other record of the pass, so they see their chunks as this
        pass left them."""
        due = self._store.due_for_sync(utc_now(), limit=self._settings.status_sync_batch_limit)
        report = SyncReport(due=len(due))
        throttled = threading.Event()  # Hilos answered 429: this pass starts no more reads
        view = self._reconciler.view()  # Hilos' lists as this pass reads them, shared by its reconciliations
        runs = [record for record in due if not record.is_bulk]
        parents = [record for record in due if record.is_bulk]
        report.not_reached = self._visit_all(
            runs, report.outcomes, report=report, throttled=throttled, deadline=deadline, view=view
        )
        # A parent's visit reads no Hilos: a throttled pass still moves bulk runs along.
        report.not_reached += self._visit_all(
            parents, report.bulk_runs, report=report, throttled=threading.Event(), deadline=deadline, view=view
        )
        report.throttled = throttled.is_set()
        metrics.add_metric(name="StatusSyncBacklog", unit=MetricUnit.Count, value=report.not_reached)
        logger.info("status sync pass", extra={"report": report.model_dump(mode="json")})
        return report

    def _visit_all(
        self,
        records: list[ExecutionRecord],
        outcomes: dict[SyncOutcome, int],
        *,
        report: SyncReport,
        throttled: threading.Event,
        deadline: Deadline,
        view: HilosView,
    ) -> int:
        """Visit ``records``, WORKER_CONCURRENCY at a time, counting into ``outcomes`` (and reconciliations into
        ``report``); the number of records left unvisited."""
        pending = iter(records)
        running: set[Future[SyncOutcome | ReconcileOutcome | None]] = set()
        for record in _take(pending, self._settings.worker_concurrency):
            running.add(self._executor.submit(self._visit, record, throttled, deadline, view))
        while running:
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                outcome = future.result()
                if isinstance(outcome, ReconcileOutcome):
                    report.reconciled[outcome] = report.reconciled.get(outcome, 0) + 1
                elif outcome is not None:
                    outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if throttled.is_set() or not has_time_for(deadline, self._settings.hilos_status_read_budget_seconds):
                continue  # start no new reads; let the running ones end
            for record in _take(pending, len(finished)):
                running.add(self._executor.submit(self._visit, record, throttled, deadline, view))
        return sum(1 for _ in pending)

    def _visit(
        self, record: ExecutionRecord, throttled: threading.Event, deadline: Deadline, view: HilosView
    ) -> SyncOutcome | ReconcileOutcome | None:
        with log_keys(run_id=str(record.run_id)):
            try:
                if record.awaits_reconcile:
                    if throttled.is_set():
                        return ReconcileOutcome.DEFERRED
                    reconciled = self._reconciler.reconcile(record, deadline, view=view)
                    if reconciled.throttled:
                        throttled.set()
                    return reconciled.outcome
                return self.refresh(record, scheduled=True)[1]
            except HilosRunnerError as error:
                if isinstance(error, HilosUnavailableError) and error.status == 429:
                    throttled.set()
                self._note_failure(record, error)
                return SyncOutcome.FAILED

    def _synced(self, record: ExecutionRecord, detail: FlowExecution) -> ExecutionRecord:
        now = utc_now()
        status = status_of_hilos(detail.status, record.status)
        if status.finished and not record.status.finished:
            metrics.add_metric(name="RunsFinished", unit=MetricUnit.Count, value=1)
        counters = ExecutionCounters(
            running=detail.running or 0,
            completed=detail.completed or 0,
            failed=detail.failed or 0,
            expired=detail.expired or 0,
            canceled=detail.canceled or 0,
        )
        return record.changed(
            at=now,
            status=status,
            hilos_status=detail.status or record.hilos_status,
            counters=counters,
            synced_at=now,
            next_sync_at=now + self._interval(record, now),
            sync_error=None,
        )

    def _publish(self, record: ExecutionRecord) -> ExecutionRecord:
        if record.event_published_at is not None:
            return record
        now = utc_now()
        try:
            self._publisher.publish(record, now)
        except HilosRunnerError:
            metrics.add_metric(name="CompletionEventFailures", unit=MetricUnit.Count, value=1)
            raise
        metrics.add_metric(name="CompletionEventsPublished", unit=MetricUnit.Count, value=1)
        published = record.changed(at=now, event_published_at=now, next_sync_at=None, sync_error=None)
        # If this write is lost, the next pass publishes again: at least once, consumers dedupe on run_id.
        return published if self._store.replace_if_unchanged(published, record) else record

    def _note_failure(self, record: ExecutionRecord, error: HilosRunnerError) -> None:
        """Say why, and push the record back by its interval so a run Hilos cannot answer for does not
        take the head of every pass. Read again first: the failure may come after a write of this pass
        (a finished run whose event EventBridge refused)."""
        logger.warning("status sync failed", extra={"run_id": str(record.run_id), "reason": error.message})
        try:
            current = self._store.get(record.run_id)
            if current is None or not current.awaits_sync:
                return
            now = utc_now()
            later = current.changed(
                at=now, next_sync_at=now + self._interval(current, now), sync_error=error.message[:_MAX_SYNC_ERROR]
            )
            self._store.replace_if_unchanged(later, current)
        except HilosRunnerError:
            logger.exception("could not note a status sync failure", extra={"run_id": str(record.run_id)})

    def _interval(self, record: ExecutionRecord, now: datetime) -> timedelta:
        return self._settings.revisit_after((now - record.created_at).total_seconds())


def _take(records: Iterator[ExecutionRecord], count: int) -> list[ExecutionRecord]:
    return [record for _, record in zip(range(count), records, strict=False)]
