"""The Hilos sandbox's list answers: DRF page-number pagination, filters, and the items of both list endpoints.

Hilos is a Django REST framework API, so its lists page as DRF's ``PageNumberPagination`` does on Django's
``Paginator``: ``?page=N`` (1 when absent or blank, ``last`` for the last page), ``count``/``next``/``previous``/
``results``, ``next`` and ``previous`` absolute URLs of the request with ``page`` replaced (query parameters sorted,
as DRF's ``replace_query_param`` writes them; ``previous`` of page 2 has no ``page``), and a page that is not an
integer or out of range answered 404 ``{"detail": "Invalid page."}``. ``?page_size=M`` (Flow Execution Contacts)
falls back to the default when it is not a positive integer and is capped at ``MAX_PAGE_SIZE``.

Pure functions of what the sandbox stored; the sandbox (local/sandbox.py) holds the state and the lock.
"""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit, urlunsplit

MAX_PAGE_SIZE = 100
LAST_PAGE_STRINGS = ("last",)
FLOW_NAME = "Sandbox flow"
# FlowExecutionList: the fields List Flow Executions answers for each execution (no nested flow).
FLOW_EXECUTION_LIST_FIELDS = (
    "status",
    "execute_for",
    "inbound_trigger_with",
    "inbound_start_message",
    "inbound_start_message_match_exact",
    "id",
    "has_priority",
    "flow_execution_variables",
    "start_on",
    "num_contacts",
    "expired",
    "running",
    "completed",
    "canceled",
    "failed",
    "created_on",
    "avg_completion_time",
    "created_by",
    "execution_type",
)
# What ?is_active=true selects (the spec's description); false selects the others.
ACTIVE_CONTACT_STATUSES = frozenset({"READY", "RUNNING", "PAUSED"})
CONTACT_REASONS = {
    "FAILED": "The message could not be delivered to this phone number.",
    "EXPIRED": "The contact did not answer before the flow's wait time ran out.",
}
_NOT_DIGITS = re.compile(r"\D")
_CANONICAL_DIGITS = 29  # canonical_phone has maxLength 30, "+" included


class InvalidPage(Exception):
    """The requested page is not an integer, or not one of the list's pages: DRF answers 404 "Invalid page."."""


class InvalidFilter(Exception):
    """A filter's value cannot be read; ``errors`` is django-filter's 400 answer ({"name": ["message"]})."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)
        self.errors = errors


def query_of(target: str) -> dict[str, str]:
    """The query parameters of a request target, the last value of each (as Django's QueryDict.get gives)."""
    return {name: values[-1] for name, values in parse_qs(urlsplit(target).query, keep_blank_values=True).items()}


def uuid_filter(query: dict[str, str], name: str) -> str | None:
    """A uuid filter's value, lower-case; None when absent or blank (no filter); InvalidFilter when not a uuid."""
    value = query.get(name, "").strip()
    if not value:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidFilter({name: ["Enter a valid UUID."]}) from None


def lenient_uuid(query: dict[str, str], name: str) -> str | None:
    """A uuid filter's value, or None if absent or not a uuid (to pick a fault plan before validation)."""
    try:
        return uuid_filter(query, name)
    except InvalidFilter:
        return None


def boolean_filter(query: dict[str, str], name: str) -> bool | None:
    """The spec's is_active: omitted or blank: no filter; 'false' or 0: false; any other value: true."""
    value = query.get(name, "").strip().lower()
    if not value:
        return None
    return value not in ("false", "0")


def page_size_of(query: dict[str, str], default: int) -> int:
    """DRF's get_page_size with page_size_query_param 'page_size' and max_page_size MAX_PAGE_SIZE."""
    try:
        size = int(query["page_size"])
    except (KeyError, ValueError):
        return default
    return min(size, MAX_PAGE_SIZE) if size > 0 else default


@dataclass(frozen=True)
class Page:
    number: int
    num_pages: int
    items: slice  # of the whole (filtered, ordered) list


def page_of(count: int, requested: str | None, size: int) -> Page:
    """Django's Paginator (allow_empty_first_page: a list of nothing has one empty page) as DRF asks it."""
    num_pages = max(1, math.ceil(count / size))
    text = (requested or "").strip() or "1"
    if text in LAST_PAGE_STRINGS:
        number = num_pages
    else:
        try:
            number = int(text)
        except ValueError:
            raise InvalidPage(text) from None
    if not 1 <= number <= num_pages:
        raise InvalidPage(text)
    start = (number - 1) * size
    return Page(number=number, num_pages=num_pages, items=slice(start, start + size))


def paginated(url: str, page: Page, count: int, results: list[dict[str, Any]]) -> dict[str, Any]:
    """The Paginated...List answer: ``url`` is the request's absolute URL, as DRF's build_absolute_uri gives it."""
    following = _replace_query_param(url, "page", page.number + 1) if page.number < page.num_pages else None
    if page.number == 1:
        preceding = None
    elif page.number == 2:
        preceding = _remove_query_param(url, "page")
    else:
        preceding = _replace_query_param(url, "page", page.number - 1)
    return {"count": count, "next": following, "previous": preceding, "results": results}


def _replace_query_param(url: str, key: str, value: int) -> str:
    scheme, netloc, path, query, fragment = urlsplit(url)
    params = parse_qs(query, keep_blank_values=True)
    params[key] = [str(value)]
    return urlunsplit((scheme, netloc, path, urlencode(sorted(params.items()), doseq=True, quote_via=quote), fragment))


def _remove_query_param(url: str, key: str) -> str:
    scheme, netloc, path, query, fragment = urlsplit(url)
    params = parse_qs(query, keep_blank_values=True)
    params.pop(key, None)
    return urlunsplit((scheme, netloc, path, urlencode(sorted(params.items()), doseq=True, quote_via=quote), fragment))


def flow_execution_list_item(detail: dict[str, Any]) -> dict[str, Any]:
    """FlowExecutionList, from the execution's FlowExecutionReadDetail."""
    return {name: detail[name] for name in FLOW_EXECUTION_LIST_FIELDS}


def contact_status(execution_status: str, outcome: str) -> str:
    """A contact's status, following its execution's and consistent with its counters: READY until the flow
    runs; while RUNNING a failing contact has failed already (on the first message), the others run; at the
    end each has its outcome (COMPLETED, FAILED, EXPIRED), or CANCELED unless it had failed."""
    if execution_status in ("PROCESSING", "READY", "AWAITING_CONFIRMATION", "CONFIRMED", "STARTING"):
        return "READY"
    if execution_status == "RUNNING":
        return "FAILED" if outcome == "FAILED" else "RUNNING"
    if execution_status == "CANCELED":
        return "FAILED" if outcome == "FAILED" else "CANCELED"
    return outcome


def canonical_phone(phone: str) -> str:
    return "+" + _NOT_DIGITS.sub("", phone)[:_CANONICAL_DIGITS]


def fake_phone(seed: str) -> str:
    """A deterministic phone for a contact sent without one (by id): +1555 and ten digits of a hash."""
    digits = int(hashlib.sha256(seed.encode()).hexdigest(), 16) % 10**10
    return f"+1555{digits:010d}"


def contact_read_simple(sent: dict[str, Any], created_on: str, fallback_seed: str) -> dict[str, Any]:
    """ContactReadSimple of a contact as the run sent it: the phone exactly as sent, the id as sent (else one per
    canonical phone, so a phone is one contact across executions), the rest as sent or Hilos' defaults.
    ``fallback_seed`` names the contact when it came with neither a phone nor an id."""
    sent_phone = sent.get("phone")
    has_phone = isinstance(sent_phone, str) and bool(sent_phone.strip())
    phone = str(sent_phone) if has_phone else fake_phone(str(sent.get("id") or fallback_seed))
    canonical = canonical_phone(phone)
    if sent.get("id"):
        contact_id = str(sent["id"])
    elif has_phone:
        contact_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox-contact:{canonical}"))
    else:
        contact_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox-contact:{fallback_seed}"))
    return {
        "id": contact_id,
        "phone": phone,
        "canonical_phone": canonical,
        "first_name": sent.get("first_name"),
        "last_name": sent.get("last_name"),
        "email": sent.get("email"),
        "meta": sent.get("meta") or {},
        "is_deleted": bool(sent.get("is_deleted", False)),
        "created_on": created_on,
        "last_updated_on": created_on,
        "source": sent.get("source") or "website",
        "external_url": sent.get("external_url"),
    }


def flow_execution_contact(
    execution_id: str, index: int, sent: dict[str, Any], *, outcome: str, execution_status: str, created_on: str
) -> dict[str, Any]:
    """FlowExecutionContactListSimple of the ``index``-th contact of an execution (a stable id per pair)."""
    status = contact_status(execution_status, outcome)
    key = f"{execution_id}:{index}"
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox-flow-execution-contact:{key}")),
        "contact": contact_read_simple(sent, created_on, fallback_seed=key),
        "status": status,
        "created_on": created_on,
        "reason": CONTACT_REASONS.get(status),
        "flow_name": FLOW_NAME,
        "is_chatbot_execution": False,
    }
