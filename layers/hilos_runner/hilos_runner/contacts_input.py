"""Reading a bulk contact list from JSON or CSV, validating every contact before anything is queued.

Used by ``POST /flows/{flow_id}/bulk-runs`` and by the ``hilos-runner enqueue`` CLI, so a file is
judged the same way in both places. All problems are collected (up to ``MAX_REPORTED_PROBLEMS``) and
raised together as one ``InvalidRequestError`` whose details name the row and field; field paths are
relative to the body: ``contact_list.17.email`` (JSON) or ``row.18.email`` (CSV, spreadsheet row
numbers: the header is row 1).

JSON: ``{"contact_list": [...], "has_priority": false, "flow_execution_variables": {...}}`` or a bare
list of contacts. CSV: a header row of contact field names, one contact per row; an empty cell means
the field is absent. Typed columns: ``tags`` and ``default_assignees`` are ``;``-separated (tag names,
whole numbers), ``meta`` is a JSON object, ``default_channel`` a whole number, and ``is_deleted`` /
``overwrite_*`` are ``true`` or ``false``. ``has_priority``, ``flow_execution_variables`` and ``start_at`` come
from outside the file (query parameters, CLI options) for CSV and for a bare JSON list.
"""

import csv
import difflib
import io
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError

from hilos_runner import json_input
from hilos_runner.duplicates import OnDuplicate, without_duplicates
from hilos_runner.errors import InvalidRequestError, UnsupportedMediaTypeError, validation_details
from hilos_runner.messages import BulkRunRequest
from hilos_runner.models import Contact

MediaType = Literal["json", "csv"]
MAX_REPORTED_PROBLEMS = 1000
LIST_SEPARATOR = ";"
_BOOLEANS = {"true": True, "false": False}


# The media types a bulk contact list is read from (also what the API's body guard lets through).
BULK_MEDIA_TYPES: dict[str, MediaType] = {"application/json": "json", "text/csv": "csv"}


def content_type_essence(content_type: str | None) -> str:
    """A Content-Type's essence (``application/json``), or "" when none is given (taken as JSON)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def media_type_of(content_type: str | None) -> MediaType:
    """``json`` or ``csv`` from a Content-Type header (JSON when none is given)."""
    essence = content_type_essence(content_type) or "application/json"
    if essence in BULK_MEDIA_TYPES:
        return BULK_MEDIA_TYPES[essence]
    raise UnsupportedMediaTypeError(
        f"bulk runs take application/json or text/csv, not {essence!r}",
        details=[{"field": "header.content-type", "reason": "use application/json or text/csv"}],
    )


def variables_from_json(text: str | None, *, field: str) -> dict[str, Any] | None:
    """``flow_execution_variables`` given as JSON text outside the body (query parameter, CLI option)."""
    if text is None:
        return None
    value = json_input.loads(text, location=field)
    if not isinstance(value, dict):
        raise InvalidRequestError(
            "flow_execution_variables must be a JSON object", details=[{"field": field, "reason": "not a JSON object"}]
        )
    return value


def parse_contacts(
    data: bytes | str,
    media_type: MediaType,
    *,
    has_priority: bool | None = None,
    flow_execution_variables: dict[str, Any] | None = None,
    start_at: datetime | None = None,
    location: str = "",
    max_contacts: int | None = None,
    on_duplicate: OnDuplicate = OnDuplicate.DROP,
) -> BulkRunRequest:
    """The validated bulk request in ``data``; raises ``InvalidRequestError`` listing every problem,
    with field paths under ``location`` (the API says ``body``). More than ``max_contacts`` contacts
    are refused before any is validated. Later copies of a contact's phone are dropped (noted in the
    request's ``duplicates_removed``) or, with ``on_duplicate=reject``, refused."""
    outside = {"has_priority": has_priority, "flow_execution_variables": flow_execution_variables, "start_at": start_at}
    outside = {name: value for name, value in outside.items() if value is not None}
    try:
        text = _text_of(data)
        if media_type == "csv":
            request, rows = _from_csv(text, outside, max_contacts)
            field_of = _named(location, lambda i: f"row.{rows[i]}")
        else:
            request, field_of = _from_json(text, outside, max_contacts), _named(location, lambda i: f"contact_list.{i}")
    except InvalidRequestError as error:
        if location:
            error.details = [{**d, "field": ".".join(p for p in (location, d["field"]) if p)} for d in error.details]
        raise
    contacts, duplicates = without_duplicates(request.contact_list, on_duplicate, field_of)
    if duplicates is None:
        return request
    deduplicated = request.model_copy(update={"contact_list": contacts})
    deduplicated._duplicates_removed = duplicates
    return deduplicated


def _named(location: str, field_of: Callable[[int], str]) -> Callable[[int], str]:
    """Field names of contacts as the answer gives them, under ``location`` (``body.row.9``)."""
    return (lambda i: f"{location}.{field_of(i)}") if location else field_of


def _text_of(data: bytes | str) -> str:
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidRequestError(
            "the contact list is not UTF-8 text", details=[{"field": "", "reason": f"not UTF-8 (byte {exc.start})"}]
        ) from None


class _Problems:
    """Collects problems up to a cap, remembering which rows had any."""

    def __init__(self) -> None:
        self.details: list[dict[str, str]] = []
        self.rows: set[int] = set()
        self.unlisted = 0

    def add(self, field: str, reason: str, row: int | None = None) -> None:
        if row is not None:
            self.rows.add(row)
        if len(self.details) < MAX_REPORTED_PROBLEMS:
            self.details.append({"field": field, "reason": reason})
        else:
            self.unlisted += 1

    def add_validation(
        self, error: ValidationError, prefix: tuple[str | int, ...] = (), row: int | None = None
    ) -> None:
        errors = error.errors(include_url=False, include_input=False)
        located = [{**e, "loc": (*prefix, *e["loc"])} for e in errors]
        for problem, detail in zip(errors, validation_details(located), strict=True):
            self.add(detail["field"], detail["reason"], row if row is not None else _contact_index(problem["loc"]))

    def raise_if_any(self, total: int, noun: str) -> None:
        if not self.details:
            return
        if self.unlisted:
            self.details.append({"field": "", "reason": f"... and {self.unlisted} more problems not listed"})
        what = f"{len(self.rows)} of {total} {noun} are not valid" if self.rows else "the contact list is not valid"
        raise InvalidRequestError(f"{what}; nothing was queued", details=self.details)


def _check_count(count: int, max_contacts: int | None) -> None:
    if max_contacts is not None and count > max_contacts:
        raise InvalidRequestError(
            f"{count} contacts are more than the {max_contacts} one bulk run takes; split the list, or queue it "
            "with the hilos-runner CLI",
            details=[{"field": "contact_list", "reason": f"at most {max_contacts} contacts"}],
        )


def _from_json(text: str, outside: dict[str, Any], max_contacts: int | None) -> BulkRunRequest:
    document = json_input.loads(text, location="")
    problems = _Problems()
    if isinstance(document, list):
        document = {"contact_list": document}
    elif isinstance(document, dict):
        for name in outside:
            if name in document:
                problems.add(name, "given both in the body and outside it (query parameter or option); give it once")
    else:
        raise InvalidRequestError(
            "the body must be a JSON object or a list of contacts",
            details=[{"field": "", "reason": "expected a JSON object or array"}],
        )
    contacts = document.get("contact_list")
    if isinstance(contacts, list):
        _check_count(len(contacts), max_contacts)
    try:
        request = BulkRunRequest.model_validate({**document, **outside})
    except ValidationError as error:
        problems.add_validation(error)
    problems.raise_if_any(len(contacts) if isinstance(contacts, list) else 0, "contacts")
    return request


def _contact_index(location: tuple[Any, ...]) -> int | None:
    """The index of the contact a JSON validation error is about (``contact_list.<n>...``)."""
    if len(location) > 1 and location[0] == "contact_list" and isinstance(location[1], int):
        return location[1]
    return None


# -- CSV -------------------------------------------------------------------------------------------
def _boolean(cell: str) -> bool:
    try:
        return _BOOLEANS[cell.lower()]
    except KeyError:
        raise ValueError("expected true or false") from None


def _whole_number(cell: str) -> int:
    try:
        return int(cell)
    except ValueError:
        raise ValueError("expected a whole number") from None


def _whole_numbers(cell: str) -> list[int]:
    try:
        return [int(part) for part in _parts(cell)]
    except ValueError:
        raise ValueError(f"expected whole numbers separated by '{LIST_SEPARATOR}'") from None


def _tags(cell: str) -> list[dict[str, str]]:
    return [{"name": name} for name in _parts(cell)]


def _json_object(cell: str) -> dict[str, Any]:
    try:
        value = json_input.loads(cell, location="")
    except InvalidRequestError as error:
        (detail,) = error.details
        raise ValueError(f"{detail['reason']} (at {detail['field'] or 'the top'})") from None
    if not isinstance(value, dict):
        raise ValueError('expected a JSON object, e.g. {"plan": "gold"}')
    return value


def _parts(cell: str) -> list[str]:
    return [part.strip() for part in cell.split(LIST_SEPARATOR) if part.strip()]


# Columns whose cells are not plain text; every other contact field is taken as written.
_CELL_DECODERS: Mapping[str, Callable[[str], Any]] = {
    "is_deleted": _boolean,
    "overwrite_tags": _boolean,
    "overwrite_default_assignees": _boolean,
    "overwrite_meta": _boolean,
    "default_channel": _whole_number,
    "default_assignees": _whole_numbers,
    "tags": _tags,
    "meta": _json_object,
}


def _from_csv(text: str, outside: dict[str, Any], max_contacts: int | None) -> tuple[BulkRunRequest, list[int]]:
    """The request, and the spreadsheet row of each of its contacts."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise InvalidRequestError(
            "the CSV file is empty", details=[{"field": "row.1", "reason": "no header row"}]
        ) from None
    except csv.Error as exc:
        raise InvalidRequestError(
            "the CSV file cannot be read", details=[{"field": "row.1", "reason": str(exc)}]
        ) from None
    columns = [name.strip() for name in header]
    _check_header(columns)
    problems = _Problems()
    rows: list[tuple[int, list[str]]] = []
    row = 1
    try:
        for row, cells in enumerate(reader, start=2):
            if any(cell.strip() for cell in cells):  # blank lines are skipped
                rows.append((row, cells))
    except csv.Error as exc:
        problems.add(f"row.{row + 1}", f"not valid CSV: {exc}", row + 1)
    _check_count(len(rows), max_contacts)
    total = len(rows)
    contacts: list[Contact] = []
    for row, cells in rows:
        contact = _contact_from_row(row, columns, cells, problems)
        if contact is not None:
            contacts.append(contact)
    if not problems.details:
        try:
            return BulkRunRequest.model_validate({"contact_list": contacts, **outside}), [row for row, _ in rows]
        except ValidationError as error:
            problems.add_validation(error, row=0)
    problems.raise_if_any(total, "rows")
    raise AssertionError("unreachable: problems were found")  # pragma: no cover


def _check_header(columns: list[str]) -> None:
    details = []
    for position, name in enumerate(columns, start=1):
        if name not in Contact.model_fields:
            reason = "empty column name" if not name else _unknown_column(name)
            details.append({"field": f"row.1.column.{position}", "reason": reason})
        elif columns.index(name) != position - 1:
            details.append({"field": f"row.1.column.{position}", "reason": f"column {name!r} appears twice"})
    if details:
        raise InvalidRequestError("the CSV header is not valid; nothing was queued", details=details)


_OTHER_SEPARATORS = (";", "\t", "|")


def _unknown_column(name: str) -> str:
    """Why a header cell is not a contact field, and what the file probably meant."""
    reason = f"unknown column {name[:100]!r} (not a contact field)"
    separator = next((mark for mark in _OTHER_SEPARATORS if mark in name), None)
    if separator is not None:
        return f"{reason}; the file seems to separate columns with {separator!r}: save it with ',' separators"
    close = difflib.get_close_matches(name.lower().replace(" ", "_"), list(Contact.model_fields), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{reason}; {hint}other data goes in the meta column, as a JSON object"


def _contact_from_row(row: int, columns: list[str], cells: list[str], problems: _Problems) -> Contact | None:
    if len(cells) != len(columns):
        problems.add(f"row.{row}", f"has {len(cells)} cells, the header has {len(columns)}", row)
        return None
    values: dict[str, Any] = {}
    bad_cell = False
    for name, cell in zip(columns, cells, strict=True):
        if not cell.strip():
            continue  # an empty cell: the field is absent
        decode = _CELL_DECODERS.get(name)
        if decode is None:
            values[name] = cell
            continue
        try:
            values[name] = decode(cell.strip())
        except ValueError as exc:
            problems.add(f"row.{row}.{name}", str(exc), row)
            bad_cell = True
    try:
        contact = Contact.model_validate(values)
    except ValidationError as error:
        problems.add_validation(error, ("row", row), row)
        return None
    return None if bad_cell else contact
