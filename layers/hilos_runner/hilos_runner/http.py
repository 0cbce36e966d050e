"""HTTP side of errors: one JSON shape for every error answer, and one table from domain errors to
status codes. Used by run_api's exception handlers (and by the local HTTP front for its own 401).

Shape: ``{"code": "...", "message": "...", "details": [{"field": "body.contact_list.0.phone",
"reason": "..."}]}``. No stack traces, exception class names or upstream internals.
"""

import math
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from hilos_runner import errors

JSON_CONTENT_TYPE = "application/json"


class ErrorDetail(BaseModel):
    field: str = Field(description="Where the problem is, e.g. body.contact_list.3.email ('' for the whole request).")
    reason: str


class ErrorBody(BaseModel):
    code: str = Field(description="Stable, machine-readable error code.")
    message: str
    details: list[ErrorDetail] = []
    run_id: str | None = Field(default=None, description="The recorded run this error belongs to, if any.")


# Domain error -> HTTP status. Checked in order: subclasses before their bases.
_STATUS_BY_ERROR: tuple[tuple[type[errors.HilosRunnerError], int], ...] = (
    (errors.InvalidRequestError, 422),
    (errors.UnsupportedMediaTypeError, 415),
    (errors.IdempotencyKeyReusedError, 422),
    (errors.IdempotencyInProgressError, 409),
    (errors.RunNotFinishedError, 409),
    (errors.NotFoundError, 404),
    (errors.HilosRejectedError, 422),
    (errors.FlowNotFoundError, 404),
    (errors.HilosAuthError, 502),
    (errors.HilosUnavailableError, 503),
    (errors.HilosOutcomeUnknownError, 504),
    # Any other Hilos answer we cannot use (a status read refused, an execution Hilos no longer knows).
    (errors.HilosError, 502),
    (errors.DependencyUnavailableError, 503),
    (errors.ContactsNotReadYetError, 503),
    (errors.ConfigurationError, 500),
)

# Seconds a client should wait before retrying a transient failure when upstream gave no hint.
DEFAULT_RETRY_AFTER_SECONDS = 5


def error_body(code: str, message: str, details: Sequence[dict[str, Any]] = (), *, run_id: str | None = None) -> str:
    body = ErrorBody(code=code, message=message, details=[ErrorDetail(**d) for d in details], run_id=run_id)
    return body.model_dump_json(exclude_none=True)


def status_for(error: errors.HilosRunnerError) -> int:
    for error_type, status in _STATUS_BY_ERROR:
        if isinstance(error, error_type):
            return status
    return 500


def headers_for(error: errors.HilosRunnerError) -> dict[str, str]:
    if not error.retryable:
        return {}
    retry_after = getattr(error, "retry_after", None) or DEFAULT_RETRY_AFTER_SECONDS
    return {"Retry-After": str(math.ceil(retry_after))}


def public_message(error: errors.HilosRunnerError) -> str:
    # Configuration problems are for the operator (logged), not for the frontend.
    if isinstance(error, errors.ConfigurationError):
        return "the service is misconfigured; the operator has been told"
    return error.message


def validation_details(pydantic_errors: Sequence[Any]) -> list[dict[str, str]]:
    """Pydantic / Powertools validation errors as field paths and reasons (never the input values)."""
    details = []
    for error in pydantic_errors:
        location = [str(part) for part in error.get("loc", ())]
        if error.get("type") == "extra_forbidden":
            reason = "unknown field (not accepted by Hilos)"
        elif error.get("type") == "value_error" and "error" in error.get("ctx", {}):
            reason = str(error["ctx"]["error"])  # without pydantic's "Value error, " prefix
        else:
            reason = str(error.get("msg", "invalid value"))
        details.append({"field": ".".join(location), "reason": reason})
    return details


def api_gateway_error(status: int, code: str, message: str, details: Sequence[dict[str, Any]] = ()) -> dict:
    """A complete API Gateway proxy answer, for checks made before the router runs (body size)."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": JSON_CONTENT_TYPE},
        "body": error_body(code, message, details),
        "isBase64Encoded": False,
    }
