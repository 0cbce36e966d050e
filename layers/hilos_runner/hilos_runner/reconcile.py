"""Reconciliation: a run whose answer from Hilos was lost is looked up in Hilos' own records.

A run may have reached Hilos without our learning its execution id: the answer never came (UNKNOWN: read
timeout, reset, gateway timeout), or the process stopped between the call and the final write (SENDING past
one call budget). Hilos knows what happened. ``Reconciler.lookup`` reads the flow's executions (List Flow
Executions, newest first) created in the send window (from ``sent_at`` less the clock skew allowance to
the grace period plus the allowance after it) with the run's number of contacts, and for each such
candidate the phones of its contacts (List Flow Execution Contacts), compared by digest
(hilos_runner.matching). Then:

- **one match** -> the run started: SUBMITTED with that execution id; the status sync follows it from there
  and its completion event goes out as for any run;
- **no match, and the lookup was conclusive** (every page that could hold it was read, every candidate's
  contacts were complete) once the grace period is over -> the run never started: it is sent again through
  the same guarded path (``RunService.resend``: record first, then call), keeping its run id, up to
  ``RECONCILE_MAX_RESENDS`` times; with resends off or used up it becomes FAILED, "not started";
- **anything else** (several matches, a candidate whose contacts Hilos is still listing, Hilos unreadable or
  throttling, more pages than ``RECONCILE_MAX_PAGES``) -> never resent: the run stays UNKNOWN with the
  reason, is looked at again later, and counts in ``RunsUnresolved`` (alarmed) once it has been unresolved
  for ``RECONCILE_ALARM_AFTER_SECONDS``.

A run known not started whose resend surely did not reach Hilos either (503, 429, connection refused) waits
QUEUED with resolution RESENT and is sent at the next pass without another lookup.

Every write is conditional on the record being as it was read, so reconciliation, a late original writer
and the status sync never undo each other. The status sync's scheduled pass runs it for the due records of
the ``sync-pending`` index (no scan), within the pass's budget; ``GET /runs/{id}?refresh=true`` runs the
lookup at once (a resend it decides on goes out at the next pass, within the API's time limit).
"""

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID, uuid4

from aws_lambda_powertools.metrics import MetricUnit

from hilos_runner.errors import HilosRunnerError, HilosUnavailableError
from hilos_runner.execution_records import ExecutionRecord, Resolution, RunStatus, utc_now
from hilos_runner.execution_store import ExecutionStore
from hilos_runner.hilos import CONTACTS_PAGE_SIZE, HilosClient
from hilos_runner.matching import hilos_contacts_digest
from hilos_runner.models import FlowExecution, FlowExecutionContact, FlowRunRequest
from hilos_runner.observability import logger, metrics
from hilos_runner.runs import RunService
from hilos_runner.settings import Deadline, Settings, has_time_for

_MAX_REASON = 500
# How far past the send window (in clock skew allowances) a run's contacts still stop a resend.
_LATE_HORIZON_SKEWS = 5


class ReconcileOutcome(StrEnum):
    FOUND = "found"  # Hilos had started it; the record holds its execution id now
    RESENT = "resent"  # Hilos had not started it; sent again (or waiting to be, after a refused attempt)
    NOT_STARTED = "not_started"  # Hilos had not started it; not resent: FAILED
    AMBIGUOUS = "ambiguous"  # undecided; looked at again later
    WAITING = "waiting"  # not in Hilos yet, but the grace period is not over
    DEFERRED = "deferred"  # not looked up: no time left in this invocation, or Hilos throttled the pass
    CHANGED_MEANWHILE = "changed_meanwhile"  # someone else wrote the record first; left to them


class _Found(StrEnum):
    ONE = "one"
    NONE = "none"
    UNDECIDED = "undecided"


@dataclass
class Lookup:
    """What Hilos' lists say about one run."""

    found: _Found
    execution: FlowExecution | None = None
    reason: str = ""
    reads: int = 0  # Hilos reads this lookup made (pages another run of the pass had read are not counted)
    throttled: bool = False
    listed_at: datetime | None = None  # when the first page of the flow's listing was read


class HilosView:
    """What one pass reads of Hilos' lists, shared by the runs it reconciles (threads): each flow's executions
    are read once, newest first, only as far back as some run of the pass needs. Executions only ever join
    the head of the list, so a page read later shows no fewer of the older ones (repeats are dropped by id)."""

    def __init__(self, hilos: HilosClient, max_pages: int, before_read: Callable[[Deadline | None], None]) -> None:
        self._hilos = hilos
        self._max_pages = max_pages
        self._before_read = before_read
        self._flows: dict[UUID, _FlowListing] = {}
        self._lock = threading.Lock()

    def executions_since(
        self, flow_id: UUID, earliest: datetime, deadline: Deadline | None, lookup: Lookup
    ) -> tuple[list[FlowExecution], datetime] | None:
        """The flow's executions down to ``earliest`` at least (all if Hilos does not list newest first), and when
        the first page was read; None when that takes more than the page limit."""
        with self._lock:
            listing = self._flows.setdefault(flow_id, _FlowListing())
        with listing.lock:
            while not listing.reaches(earliest):
                if listing.pages >= self._max_pages:
                    return None
                self._before_read(deadline)
                read_at = utc_now()
                page = self._hilos.list_flow_executions(flow_id, listing.pages + 1)
                lookup.reads += 1
                listing.add(page.results, last=page.next is None, read_at=read_at)
            assert listing.first_read_at is not None
            return list(listing.executions.values()), listing.first_read_at

    def contacts_digest(
        self,
        execution: FlowExecution,
        num_contacts: int,
        contact_ids: list[str],
        deadline: Deadline | None,
        lookup: Lookup,
    ) -> str | None:
        """The digest of ``execution``'s contacts as a run with ``contact_ids`` counts them; None while Hilos lists
        fewer contacts than the execution has. Complete digests are kept for the process: they never change."""
        if execution.id is None:
            return None
        if not contact_ids and (known := _complete_digests.get(execution.id)) is not None:
            return known
        contacts: list[FlowExecutionContact] = []
        for page in range(1, num_contacts // CONTACTS_PAGE_SIZE + 2):
            self._before_read(deadline)
            listed = self._hilos.list_execution_contacts(execution.id, page, CONTACTS_PAGE_SIZE)
            lookup.reads += 1
            contacts += listed.results
            if listed.next is None:
                break
        if len(contacts) < (execution.num_contacts or num_contacts):
            return None
        digest = hilos_contacts_digest(contacts, contact_ids)
        if not contact_ids:
            _complete_digests.put(execution.id, digest)
        return digest


class _FlowListing:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.executions: dict[UUID | None, FlowExecution] = {}
        self.pages = 0
        self.complete = False
        self.newest_first = True
        self.oldest: datetime | None = None
        self.first_read_at: datetime | None = None

    def add(self, executions: list[FlowExecution], *, last: bool, read_at: datetime) -> None:
        self.pages += 1
        self.complete = last
        self.first_read_at = self.first_read_at or read_at
        for execution in executions:
            created = _created_on(execution)
            if created is not None:
                # Hilos lists newest first; one item out of that order turns off the early stop.
                self.newest_first = self.newest_first and (self.oldest is None or created <= self.oldest)
                self.oldest = created if self.oldest is None else min(self.oldest, created)
            self.executions[execution.id or uuid4()] = execution

    def reaches(self, earliest: datetime) -> bool:
        return self.complete or (self.newest_first and self.oldest is not None and self.oldest < earliest)


class _DigestCache:
    """Digests of executions whose contacts Hilos listed in full, most recently used kept (bounded)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._digests: OrderedDict[UUID, str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, execution_id: UUID) -> str | None:
        with self._lock:
            digest = self._digests.get(execution_id)
            if digest is not None:
                self._digests.move_to_end(execution_id)
            return digest

    def put(self, execution_id: UUID, digest: str) -> None:
        with self._lock:
            self._digests[execution_id] = digest
            if len(self._digests) > self._size:
                self._digests.popitem(last=False)


# ~100 bytes an entry: 10,000 executions' digests cost about a megabyte of a warm function's memory.
_complete_digests = _DigestCache(10_000)


@dataclass
class Reconciled:
    record: ExecutionRecord
    outcome: ReconcileOutcome
    throttled: bool = False  # Hilos answered 429: the pass should start no more Hilos calls
    lookup: Lookup | None = field(default=None, repr=False)


class _OutOfTime(Exception):
    """The invocation has no time left for another Hilos read."""


class Reconciler:
    def __init__(self, settings: Settings, hilos: HilosClient, store: ExecutionStore, runs: RunService) -> None:
        self._settings = settings
        self._hilos = hilos
        self._store = store
        self._runs = runs

    def reconcile(
        self,
        record: ExecutionRecord,
        deadline: Deadline | None,
        *,
        resend_now: bool = True,
        view: "HilosView | None" = None,
    ) -> Reconciled:
        """Resolve one run that awaits reconciliation. ``deadline``: no Hilos call starts that could not end
        before it. ``resend_now=False`` (an API refresh): a run found not started is left QUEUED for the next
        pass to send. ``view``: what this pass has read of Hilos' lists already (shared by its runs).
        Raises HilosRunnerError only when DynamoDB fails."""
        if record.status is RunStatus.QUEUED:  # known not started; the last resend surely did not reach Hilos
            return self._resend(record, deadline, {}, resend_now)
        try:
            lookup = self.lookup(record, deadline, view or self.view())
        except _OutOfTime:
            return Reconciled(record, ReconcileOutcome.DEFERRED)
        now = utc_now()
        looked = {"reconciled_at": now, "reconcile_attempts": record.reconcile_attempts + 1}
        if lookup.found is _Found.ONE:
            assert lookup.execution is not None
            found = self._found(lookup.execution, now) | looked
            return self._write(record, ReconcileOutcome.FOUND, lookup, found, at=now)
        if lookup.found is _Found.NONE:
            # Conclusive only if the listing was read after every request of this run must have ended: an
            # execution Hilos created before the first page was read is on one of the pages.
            if lookup.listed_at is None or lookup.listed_at < self._conclusive_at(record):
                later = {"next_sync_at": max(self._conclusive_at(record), now)}
                return self._write(record, ReconcileOutcome.WAITING, lookup, later | looked, at=now)
            return self._not_started(record, deadline, looked, resend_now, lookup)
        return self._undecided(record, lookup, looked, now)

    def view(self) -> "HilosView":
        """A fresh view of Hilos' lists, for one pass (or one API refresh)."""
        return HilosView(self._hilos, self._settings.reconcile_max_pages, self._before_read)

    def lookup(self, record: ExecutionRecord, deadline: Deadline | None, view: "HilosView") -> Lookup:
        """Find ``record``'s run among Hilos' executions. Raises _OutOfTime before a read the deadline forbids."""
        lookup = Lookup(found=_Found.UNDECIDED)
        try:
            sent_at = _sent_at(record)
            skew = timedelta(seconds=self._settings.reconcile_clock_skew_seconds)
            earliest, latest = sent_at - skew, self._conclusive_at(record) + skew
            listed = view.executions_since(record.flow_id, earliest, deadline, lookup)
            if listed is None:
                lookup.reason = (
                    f"the flow's executions since the send take more than {self._settings.reconcile_max_pages} pages"
                )
                return lookup
            executions, lookup.listed_at = listed
            same_size = [execution for execution in executions if execution.num_contacts == record.num_contacts]
            in_window = [e for e in same_size if (created := _created_on(e)) is None or earliest <= created <= latest]
            matches, incomplete = self._matching(record, in_window, view, deadline, lookup)
            if not matches and not incomplete:
                # Before concluding "not started": an execution with these contacts created soon after the window
                # may be this run under a Hilos clock further off than the allowance (or a new run of the same
                # contacts the caller started since). Either way, sending it again could make a second one.
                horizon = latest + _LATE_HORIZON_SKEWS * skew
                later = [
                    e for e in same_size if (created := _created_on(e)) is not None and latest < created <= horizon
                ]
                late_matches, late_incomplete = self._matching(record, later, view, deadline, lookup)
                if late_matches or late_incomplete:
                    lookup.reason = (
                        f"execution {(late_matches or late_incomplete)[0].id} was created after the send window "
                        "with this run's contacts (or is still being listed); not resent"
                    )
                    return lookup
        except HilosRunnerError as error:
            lookup.reason = f"Hilos could not be read: {error.message}"
            lookup.throttled = isinstance(error, HilosUnavailableError) and error.status == 429
            return lookup
        finally:
            metrics.add_metric(name="HilosLookupReads", unit=MetricUnit.Count, value=lookup.reads)
        if len(matches) > 1:
            lookup.reason = f"{len(matches)} executions in Hilos match this run: " + ", ".join(
                str(match.id) for match in matches
            )
        elif incomplete:
            lookup.reason = f"Hilos has not listed every contact of execution {incomplete[0].id} yet"
        elif matches:
            lookup.found, lookup.execution = _Found.ONE, matches[0]
        else:
            lookup.found = _Found.NONE
        return lookup

    def _matching(
        self,
        record: ExecutionRecord,
        executions: list[FlowExecution],
        view: "HilosView",
        deadline: Deadline | None,
        lookup: Lookup,
    ) -> tuple[list[FlowExecution], list[FlowExecution]]:
        """Of ``executions``, those whose contacts are the run's, and those Hilos has not listed in full yet."""
        matches, incomplete = [], []
        for execution in executions:
            digest = view.contacts_digest(execution, record.num_contacts, record.contact_ids or [], deadline, lookup)
            if digest is None:
                incomplete.append(execution)
            elif digest == record.contacts_digest:
                matches.append(execution)
        return matches, incomplete

    def _before_read(self, deadline: Deadline | None) -> None:
        if deadline is not None and not has_time_for(deadline, self._settings.hilos_status_read_budget_seconds):
            raise _OutOfTime

    # -- deciding ---------------------------------------------------------------------------------
    def _found(self, execution: FlowExecution, now: datetime) -> dict[str, object]:
        metrics.add_metric(name="RunsReconciledFound", unit=MetricUnit.Count, value=1)
        return {
            "status": RunStatus.SUBMITTED,
            "hilos_execution_id": execution.id,
            "hilos_status": execution.status,
            "resolution": Resolution.FOUND,
            "last_error": None,
            "sync_error": None,
            "next_sync_at": now,  # the status sync reads its progress at the next pass
        }

    def _not_started(
        self,
        record: ExecutionRecord,
        deadline: Deadline | None,
        looked: dict[str, object],
        resend_now: bool,
        lookup: Lookup,
    ) -> Reconciled:
        limit = self._settings.reconcile_max_resends
        if record.resends >= limit:
            why = "resending is off" if limit == 0 else f"already resent {record.resends} time(s)"
            metrics.add_metric(name="RunsNotStarted", unit=MetricUnit.Count, value=1)
            failed = {
                "status": RunStatus.FAILED,
                "resolution": Resolution.NOT_STARTED,
                "last_error": f"Hilos shows this run never started; not sent again ({why})",
                "sync_error": None,
            }
            return self._write(record, ReconcileOutcome.NOT_STARTED, lookup, failed | looked)
        return self._resend(record, deadline, looked, resend_now, lookup)

    def _resend(
        self,
        record: ExecutionRecord,
        deadline: Deadline | None,
        looked: dict[str, object],
        resend_now: bool,
        lookup: Lookup | None = None,
    ) -> Reconciled:
        now = utc_now()
        if not resend_now or (
            deadline is not None and not has_time_for(deadline, self._settings.hilos_call_budget_seconds)
        ):
            if record.status is RunStatus.QUEUED:
                return Reconciled(record, ReconcileOutcome.DEFERRED)
            waiting = {
                "status": RunStatus.QUEUED,
                "resolution": Resolution.RESENT,
                "next_sync_at": now,
            }
            return self._write(record, ReconcileOutcome.RESENT, lookup, waiting | looked, at=now)
        body = self._store.request_body(record.run_id)
        if body is None:
            gone = {
                "status": RunStatus.FAILED,
                "resolution": Resolution.NOT_STARTED,
                "last_error": "Hilos shows this run never started; its request is no longer kept, so it was not "
                "sent again",
            }
            metrics.add_metric(name="RunsNotStarted", unit=MetricUnit.Count, value=1)
            return self._write(record, ReconcileOutcome.NOT_STARTED, lookup, gone | looked, at=now)
        logger.info("run not started in Hilos; sending it again", extra={"run_id": str(record.run_id)})
        try:
            result = self._runs.resend(record, FlowRunRequest.model_validate_json(body), **looked)
        except HilosRunnerError as error:  # recorded by the run service (REJECTED or FAILED)
            current = self._store.get(record.run_id) or record
            logger.info("resent run not started", extra={"run_id": str(record.run_id), "reason": error.message})
            return Reconciled(current, ReconcileOutcome.RESENT, lookup=lookup)
        if result is None:
            return Reconciled(record, ReconcileOutcome.CHANGED_MEANWHILE, lookup=lookup)
        return Reconciled(result.run, ReconcileOutcome.RESENT, lookup=lookup)

    def _undecided(
        self, record: ExecutionRecord, lookup: Lookup, looked: dict[str, object], now: datetime
    ) -> Reconciled:
        unresolved_for = (now - _sent_at(record)).total_seconds()
        if unresolved_for >= self._settings.reconcile_alarm_after_seconds:
            metrics.add_metric(name="RunsUnresolved", unit=MetricUnit.Count, value=1)
        logger.warning(
            "run still unresolved",
            extra={"run_id": str(record.run_id), "reason": lookup.reason, "seconds": unresolved_for},
        )
        status = RunStatus.UNKNOWN  # a stale SENDING is no longer being worked on: its outcome is unknown
        note = {
            "status": status,
            "resolution": Resolution.AMBIGUOUS,
            "sync_error": lookup.reason[:_MAX_REASON],
            "next_sync_at": now + self._settings.revisit_after(unresolved_for),
        }
        return self._write(record, ReconcileOutcome.AMBIGUOUS, lookup, note | looked, at=now)

    def _write(
        self,
        record: ExecutionRecord,
        outcome: ReconcileOutcome,
        lookup: Lookup | None,
        changes: dict[str, object],
        *,
        at: datetime | None = None,
    ) -> Reconciled:
        """``record`` with ``changes`` (stamped ``at``, or now), written only if the stored one is still ``record``."""
        changed = record.changed(at=at, **changes)
        throttled = lookup.throttled if lookup else False
        if not self._store.replace_if_unchanged(changed, record):
            return Reconciled(record, ReconcileOutcome.CHANGED_MEANWHILE, throttled, lookup)
        logger.info("run reconciled", extra={"run_id": str(record.run_id), "outcome": outcome.value})
        return Reconciled(changed, outcome, throttled, lookup)

    def _conclusive_at(self, record: ExecutionRecord) -> datetime:
        """From then on, a run that Hilos does not list never started: no request can still be in flight."""
        grace = max(self._settings.reconcile_grace_seconds, self._settings.hilos_call_budget_seconds)
        return _sent_at(record) + timedelta(seconds=grace)


def _sent_at(record: ExecutionRecord) -> datetime:
    return record.sent_at or record.created_at


def _created_on(execution: FlowExecution) -> datetime | None:
    if not execution.created_on:
        return None
    try:
        created = datetime.fromisoformat(execution.created_on)
    except ValueError:
        return None
    return created if created.tzinfo is not None else None
