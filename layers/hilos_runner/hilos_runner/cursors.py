"""Opaque cursors for paged listings (runs of a flow, contacts of a run): URL-safe base64 of the position's
JSON, checked on the way back in so a forged or stale cursor is an invalid request, never a DynamoDB error."""

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

from hilos_runner.errors import InvalidRequestError


def encode_cursor(key: dict[str, Any]) -> str:
    """An opaque cursor for a listing's position (URL-safe base64 of its JSON)."""
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, valid: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    """The position ``encode_cursor`` wrote into ``cursor``, if ``valid`` says it is one of this listing's (``what``:
    "this flow", "this run"); anything else (forged, stale, of another listing) is an invalid request."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        accepted = isinstance(key, dict) and valid(key)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        accepted = False
    if not accepted:
        raise InvalidRequestError(
            f"cursor is not valid for {what}",
            details=[{"field": "query.cursor", "reason": "not a cursor returned by this listing"}],
        )
    return dict(key)
