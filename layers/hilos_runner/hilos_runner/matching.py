"""Which of Hilos' executions is a given run: a digest of the run's contacts, comparable with Hilos' own.

A run's record keeps this digest, not the contacts. Each contact counts by the last 10 digits of its
phone, so formatting (spaces, dashes, "+") and the form Hilos stores a number in (Mexican mobiles as 521 or
52) do not matter; a contact given only by its Hilos id counts by that id. An execution Hilos lists is the
run when the same digest comes out of the contacts Hilos lists for it.
"""

import hashlib
import re
from collections.abc import Iterable
from uuid import UUID

from hilos_runner.models import Contact, FlowExecutionContact

PHONE_DIGITS_COMPARED = 10
_NOT_DIGITS = re.compile(r"\D")


def _phone_key(phone: str | None) -> str:
    return "phone:" + _NOT_DIGITS.sub("", phone or "")[-PHONE_DIGITS_COMPARED:]


def _id_key(contact_id: str | UUID) -> str:
    return f"id:{str(contact_id).lower()}"


def _digest(keys: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()


def run_contacts_digest(contacts: Iterable[Contact]) -> tuple[str, list[str]]:
    """The digest of a run's contacts, and the ids of those given by id alone (to spot them in Hilos' list)."""
    keys: list[str] = []
    ids: list[str] = []
    for contact in contacts:
        if contact.phone is not None and contact.phone.strip():
            keys.append(_phone_key(contact.phone))
        else:
            assert contact.id is not None  # Contact._reachable: a phone or an id
            keys.append(_id_key(contact.id))
            ids.append(str(contact.id).lower())
    return _digest(keys), ids


def hilos_contacts_digest(contacts: Iterable[FlowExecutionContact], ids: Iterable[str]) -> str:
    """The digest of the contacts Hilos lists for an execution, counted as ``run_contacts_digest`` counts a run's
    (``ids``: the run's contacts given by id alone)."""
    by_id = set(ids)
    keys = []
    for item in contacts:
        contact = item.contact
        if contact.id is not None and contact.id.lower() in by_id:
            keys.append(_id_key(contact.id))
        else:
            keys.append(_phone_key(contact.phone or contact.canonical_phone))
    return _digest(keys)
