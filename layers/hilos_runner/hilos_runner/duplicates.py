"""The same contact twice in one run, bulk submit or queued message: once is enough.

Contacts are the same when their phones are (after hilos_runner.phones made both ``+<digits>``), or, for a
contact given by the id of a Hilos contact and no phone, their ids are. Hilos would start the flow for each
copy: the person would get the same WhatsApp message several times.

``on_duplicate=drop`` (the default) keeps the first and drops later copies, and says which
(``DuplicatesRemoved``: in the answer and on the record); ``on_duplicate=reject`` refuses the whole request,
listing every later copy (422). Rows are named as the request's own field paths (``body.contact_list.7`` or,
for CSV, ``body.row.9``), never by phone: records and logs keep no phone numbers.
"""

from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from hilos_runner.errors import InvalidRequestError
from hilos_runner.models import Contact

# Rows listed in a DuplicatesRemoved (the count is always complete), and in a 422.
MAX_LISTED = 1000


class OnDuplicate(StrEnum):
    DROP = "drop"
    REJECT = "reject"


class DuplicateRow(BaseModel):
    field: str = Field(description="The dropped copy, e.g. body.contact_list.7 (body.row.9 for CSV).")
    same_as: str = Field(description="The first contact with that phone (or id), which is kept.")


class DuplicatesRemoved(BaseModel):
    count: int = Field(description="Copies dropped: Hilos gets each phone once.")
    rows: list[DuplicateRow] = Field(description="The first copies dropped, at most 1,000 (100 on a record).")

    def for_record(self) -> "DuplicatesRemoved":
        """At most 100 rows: a record stays far below DynamoDB's 400 KB item limit."""
        return DuplicatesRemoved(count=self.count, rows=self.rows[:100])


def _identity(contact: Contact) -> Any:
    return contact.phone if contact.phone is not None else contact.id


def without_duplicates(
    contacts: Sequence[Contact], on_duplicate: OnDuplicate, field_of: Callable[[int], str]
) -> tuple[list[Contact], DuplicatesRemoved | None]:
    """``contacts`` with later copies of a phone (or id) dropped, and what was dropped (None: nothing).
    ``field_of(i)`` names the i-th contact as the caller sent it. Raises InvalidRequestError on ``reject``."""
    first_seen: dict[Any, int] = {}
    kept: list[Contact] = []
    copies: list[tuple[int, int]] = []
    for index, contact in enumerate(contacts):
        identity = _identity(contact)
        first = first_seen.setdefault(identity, index)
        if first == index:
            kept.append(contact)
        else:
            copies.append((index, first))
    if not copies:
        return kept, None
    rows = [DuplicateRow(field=field_of(index), same_as=field_of(first)) for index, first in copies[:MAX_LISTED]]
    if on_duplicate is OnDuplicate.REJECT:
        details = [{"field": row.field, "reason": f"the same phone (or id) as {row.same_as}"} for row in rows]
        if len(copies) > MAX_LISTED:
            details.append({"field": "", "reason": f"... and {len(copies) - MAX_LISTED} more copies not listed"})
        raise InvalidRequestError(
            f"{len(copies)} contacts repeat an earlier contact's phone (on_duplicate=reject); nothing was started",
            details=details,
        )
    return kept, DuplicatesRemoved(count=len(copies), rows=rows)
