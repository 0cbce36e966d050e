"""Contact outcomes: who of a run's contacts got the flow, who did not, and why, as Hilos lists them.

Hilos' List Flow Execution Contacts (``GET /flow-execution-contact?flow_execution=<id>``, pages of 100) gives each
contact of an execution with its status and, for a contact that failed or expired, the reason. ``ContactOutcomes``
reads a run's contacts from there into ``ContactOutcome`` (the bulk CSV's contact columns plus status and reason).
Once the run is finished (COMPLETED, CANCELED) and Hilos listed every contact, they are kept beside the run's
record (hilos_runner.execution_store: compressed, the record's TTL), so every later read costs Hilos nothing; a run
still going is read from Hilos each time.

A bulk run's contacts are its chunks' contacts, chunk after chunk: the same pages, the same cursor (opaque: which
run of the list and which contact in it comes next), so ``GET /runs/{id}/contacts`` and
``GET /bulk-runs/{id}/contacts`` are one piece of code. A page that would need many Hilos reads (chunks still
running) or pass a Lambda answer's size stops early with a cursor: a page may hold fewer than ``limit`` contacts;
``next_cursor`` null is the end.

Contacts of a run that never started in Hilos (REJECTED, FAILED: a bulk chunk Hilos refused, or that failed every
retry) are not in Hilos: they are listed from the body kept for the run (``REQUEST_BODY_TTL_HOURS``) with status
NOT_STARTED and the run's ``last_error`` as reason, and kept like any finished run's; once that body has expired
they cannot be listed.

As CSV (``contacts_csv``) the columns are the bulk API's own contact fields, so the file can be fixed and
submitted again to ``POST /flows/{flow_id}/bulk-runs`` as it is.
"""

import csv
import io
import json
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Any
from uuid import UUID

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from hilos_runner.cursors import decode_cursor, encode_cursor
from hilos_runner.errors import ContactsNotReadYetError, InvalidRequestError, NotFoundError
from hilos_runner.execution_records import ExecutionRecord, RunStatus
from hilos_runner.execution_store import ExecutionStore
from hilos_runner.hilos import CONTACTS_PAGE_SIZE, HilosClient
from hilos_runner.models import Contact, FlowExecutionContact, FlowRunRequest
from hilos_runner.observability import metrics

# The columns of a contacts CSV: contact fields the bulk API reads back as they are.
CSV_COLUMNS = ("phone", "first_name", "last_name", "email", "meta")
# Hilos reads one page of ours may make before it stops early (a bulk run whose chunks are still running): at
# ~0.3 s a read, well inside the API's 29 s.
MAX_HILOS_READS_PER_PAGE = 30
# Hilos reads one request may make to gather every contact of a bulk run (a retry): ~0.3 s each, inside 29 s.
MAX_HILOS_READS_PER_REQUEST = 60
# A page stops before its contacts pass this many bytes (of JSON): a Lambda answer holds at most 6 MB, and a bulk run's
# contacts may carry up to 64 KiB of fields each.
MAX_PAGE_BYTES = 4_000_000


class ContactStatus(StrEnum):
    """Hilos' FlowExecutionContactStatusEnum, and NOT_STARTED (ours) for the contacts of a run Hilos never started."""

    READY = "READY"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    CANCELED = "CANCELED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"
    NOT_STARTED = "NOT_STARTED"  # ours, not Hilos': the contact's run never started in Hilos (rejected, failed)


# A run that will never start in Hilos: its contacts are listed from the request kept for it.
_NOT_STARTED_RUNS = frozenset({RunStatus.REJECTED, RunStatus.FAILED})


# What a retry sends again unless told otherwise: the contacts who did not get the flow.
DEFAULT_RETRY_STATUSES = (ContactStatus.FAILED, ContactStatus.EXPIRED)


class ContactOutcome(BaseModel):
    """One contact of a run and what became of it in Hilos."""

    model_config = ConfigDict(defer_build=True)

    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    meta: dict[str, JsonValue] | None = None
    status: str | None = Field(
        default=None,
        description="Hilos' status of the contact: READY, RUNNING, PAUSED, COMPLETED, CANCELED, FAILED or EXPIRED; "
        "NOT_STARTED when its run never started in Hilos (the reason says why).",
    )
    reason: str | None = Field(
        default=None, description="Why the contact failed or expired, as Hilos says (or why its run did not start)."
    )

    @classmethod
    def of(cls, listed: FlowExecutionContact) -> "ContactOutcome":
        contact = listed.contact
        return cls(
            phone=contact.phone,
            first_name=contact.first_name or None,
            last_name=contact.last_name or None,
            email=contact.email or None,
            meta=contact.meta or None,
            status=listed.status,
            reason=listed.reason or None,
        )

    def contact(self) -> Contact | None:
        """The contact to send the flow to again: as Hilos knows it, or by phone alone when a field Hilos holds is
        not one a run takes (Hilos knows the rest of the contact by its phone anyway); None when even its phone is
        not one a run takes."""
        fields = self.model_dump(include=set(CSV_COLUMNS), exclude_none=True)
        for attempt in (fields, {"phone": self.phone}):
            try:
                return Contact.model_validate(attempt)
            except ValidationError:
                continue
        return None


class _Kept(BaseModel):
    """What is kept beside a run's record: its contacts' outcomes, and the Hilos execution they are of (None: the run
    had not started), so that a run started after all (a dead-lettered chunk redriven) is never answered stale ones."""

    model_config = ConfigDict(defer_build=True)

    execution_id: UUID | None = None
    contacts: list[ContactOutcome]

    def json_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


class ContactPage(BaseModel):
    model_config = ConfigDict(defer_build=True)

    items: list[ContactOutcome]
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` to get the next page.")


class ContactOutcomes:
    def __init__(self, hilos: HilosClient, store: ExecutionStore) -> None:
        self._hilos = hilos
        self._store = store

    def owner(self, run_id: UUID, *, bulk: bool) -> ExecutionRecord:
        """The run (``bulk``: the bulk run) whose contacts are asked for; NotFoundError when there is none."""
        record = self._store.get(run_id)
        if record is None or record.is_bulk != bulk:
            hint = " (a bulk run: use /bulk-runs/{id}/...)" if record is not None and record.is_bulk else ""
            raise NotFoundError(f"no {'bulk ' if bulk else ''}run {run_id}{hint}")
        return record

    def of_run(self, record: ExecutionRecord) -> tuple[list[ContactOutcome], int]:
        """Every contact of one run (not a bulk parent) and the Hilos reads it took: 0 once a finished run's
        contacts are kept."""
        data = self._store.contact_outcomes(record.run_id)
        kept = _Kept.model_validate_json(data) if data is not None else None
        if kept is not None and kept.execution_id == record.hilos_execution_id:
            return kept.contacts, 0
        if record.hilos_execution_id is None:
            return self._not_started(record), 0
        outcomes: list[ContactOutcome] = []
        reads, complete = 0, False
        while not complete:
            reads += 1
            page = self._hilos.list_execution_contacts(record.hilos_execution_id, reads, CONTACTS_PAGE_SIZE)
            outcomes += [ContactOutcome.of(listed) for listed in page.results]
            complete = page.next is None
        metrics.add_metric(name="HilosContactReads", unit=MetricUnit.Count, value=reads)
        if record.status.finished and len(outcomes) >= record.num_contacts:
            kept = _Kept(execution_id=record.hilos_execution_id, contacts=outcomes)
            self._store.put_contact_outcomes(record, kept.json_bytes())
        return outcomes, reads

    def _not_started(self, record: ExecutionRecord) -> list[ContactOutcome]:
        """The contacts of a run that will never start in Hilos, from the body kept for it (none while it may still
        start, or once the body has expired); kept for the record's lifetime like a finished run's."""
        never_sent = record.status in _NOT_STARTED_RUNS or record.canceled_at is not None  # canceled before its start
        body = self._store.request_body(record.run_id) if never_sent else None
        if body is None:
            return []
        request = FlowRunRequest.model_validate_json(body)
        outcomes = [
            ContactOutcome.model_validate(
                {
                    **contact.model_dump(include=set(CSV_COLUMNS), exclude_none=True),
                    "status": ContactStatus.NOT_STARTED,
                    "reason": record.last_error,
                }
            )
            for contact in request.contact_list
        ]
        self._store.put_contact_outcomes(record, _Kept(execution_id=None, contacts=outcomes).json_bytes())
        return outcomes

    def page(
        self,
        owner: ExecutionRecord,
        *,
        statuses: frozenset[str],
        limit: int,
        cursor: str | None,
    ) -> ContactPage:
        """One page of the contacts of ``owner`` (a run, or a bulk run: its chunks in order) in ``statuses`` (all
        when empty), from ``cursor``."""
        runs = self._runs_of(owner)
        position, index = _decode_cursor(cursor, owner.run_id) if cursor else (0, 0)
        items: list[ContactOutcome] = []
        reads, size = 0, 0
        for at in range(position, len(runs)):
            outcomes, spent = self.of_run(runs[at])
            reads += spent
            for offset in range(index if at == position else 0, len(outcomes)):
                outcome = outcomes[offset]
                if statuses and outcome.status not in statuses:
                    continue
                size += len(outcome.model_dump_json(exclude_none=True))
                if len(items) == limit or (items and size > MAX_PAGE_BYTES):
                    return ContactPage(items=items, next_cursor=_encode_cursor(owner.run_id, at, offset))
                items.append(outcome)
            if reads >= MAX_HILOS_READS_PER_PAGE and at + 1 < len(runs):
                return ContactPage(items=items, next_cursor=_encode_cursor(owner.run_id, at + 1, 0))
        return ContactPage(items=items)

    def matching(self, owner: ExecutionRecord, statuses: Iterable[str]) -> list[ContactOutcome]:
        """Every contact of ``owner`` (a run, or a bulk run's chunks) in ``statuses``. A bulk run whose chunks' contacts
        take more Hilos reads than one request has time for raises ContactsNotReadYetError once that many are read:
        finished chunks' contacts are kept, so the same call again goes on where this one stopped."""
        wanted = frozenset(statuses)
        runs = self._runs_of(owner)
        found: list[ContactOutcome] = []
        reads = 0
        for at, run in enumerate(runs):
            if reads >= MAX_HILOS_READS_PER_REQUEST:
                raise ContactsNotReadYetError(
                    f"the contacts of {len(runs) - at} of {len(runs)} chunks are still to be read from Hilos; "
                    "repeat the request (what was read is kept)",
                    retry_after=1,
                )
            outcomes, spent = self.of_run(run)
            reads += spent
            found += [outcome for outcome in outcomes if outcome.status in wanted]
        return found

    def _runs_of(self, owner: ExecutionRecord) -> list[ExecutionRecord]:
        if owner.is_bulk:
            from hilos_runner.bulk import BulkTracker

            return BulkTracker(self._store).chunks(owner)
        return [owner]


def parse_statuses(text: str | None, *, field: str = "query.status") -> frozenset[str]:
    """A comma-separated list of contact statuses (empty: every status)."""
    names = [name.strip().upper() for name in (text or "").split(",") if name.strip()]
    unknown = [name for name in names if name not in ContactStatus.__members__]
    if unknown:
        raise InvalidRequestError(
            "unknown contact status",
            details=[{"field": field, "reason": f"{unknown[0][:40]!r} is not one of {', '.join(ContactStatus)}"}],
        )
    return frozenset(names)


def contacts_csv(outcomes: Sequence[ContactOutcome]) -> str:
    """The contacts as a CSV the bulk API takes back (header row of contact fields; meta as a JSON object)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for outcome in outcomes:
        writer.writerow([_cell(getattr(outcome, column)) for column in CSV_COLUMNS])
    return buffer.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")) if isinstance(value, dict) else str(value)


def _encode_cursor(owner_id: UUID, position: int, index: int) -> str:
    return encode_cursor({"r": str(owner_id), "p": position, "i": index})


def _decode_cursor(cursor: str, owner_id: UUID) -> tuple[int, int]:
    key = decode_cursor(
        cursor,
        lambda key: (
            set(key) == {"r", "p", "i"}
            and key["r"] == str(owner_id)
            and all(type(key[name]) is int and key[name] >= 0 for name in ("p", "i"))
        ),
        "this run",
    )
    return key["p"], key["i"]
