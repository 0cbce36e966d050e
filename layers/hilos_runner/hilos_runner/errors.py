"""Domain errors, shared by both functions.

Each error says whether sending the same run again could succeed (``retryable``) and whether the
run may already have started upstream (``outcome_unknown``). The API maps them to HTTP answers in
one place (``hilos_runner.api``); the worker maps them to acknowledge / retry decisions.
Messages never contain the Hilos token: they are built here from fixed text and upstream bodies.
"""

from collections.abc import Sequence
from typing import Any


class HilosRunnerError(Exception):
    """Base of every error the service reports to a caller."""

    code = "internal_error"
    retryable = False
    outcome_unknown = False

    def __init_subclass__(cls, *, code: str, retryable: bool = False, outcome_unknown: bool = False) -> None:
        # Each error's code and kind, declared in its class line: class X(HilosRunnerError, code="x", retryable=True).
        super().__init_subclass__()
        cls.code = code
        cls.retryable = retryable or cls.retryable
        cls.outcome_unknown = outcome_unknown or cls.outcome_unknown

    def __init__(self, message: str, *, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        # Set when the failed run was recorded, so the caller can look it up later.
        self.run_id: str | None = None


class ConfigurationError(HilosRunnerError, code="configuration_error"):
    """The deployment is wrong (settings, secret content); no retry fixes it."""


class NotFoundError(HilosRunnerError, code="not_found"):
    """No run (or bulk run) with that id."""


class RunNotFinishedError(HilosRunnerError, code="run_not_finished"):
    """The run (or bulk run) is still going: what became of its contacts is not known yet."""


class RunNotCancelableError(HilosRunnerError, code="run_not_cancelable"):
    """DELETE of a run (or bulk run) that has started: only a scheduled run can be canceled, before its time."""


class ContactsNotReadYetError(HilosRunnerError, code="contacts_not_read_yet", retryable=True):
    """A retry of a large bulk run needs more of Hilos' contact lists than one request can read: what was read is
    kept, so the same request again goes on from there."""

    def __init__(self, message: str, *, retry_after: float = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InvalidRequestError(HilosRunnerError, code="validation_error"):
    """Input we could not express as a pydantic model error (an opaque cursor, a CSV file)."""


class UnsupportedMediaTypeError(HilosRunnerError, code="unsupported_media_type"):
    """The body is in a format the route does not read (bulk runs take JSON or CSV)."""


class IdempotencyInProgressError(HilosRunnerError, code="idempotency_in_progress", retryable=True):
    """A request with the same idempotency key is still being processed."""


class IdempotencyKeyReusedError(HilosRunnerError, code="idempotency_key_reused"):
    """The idempotency key was first used with another request body."""


class DependencyUnavailableError(HilosRunnerError, code="dependency_unavailable", retryable=True):
    """An AWS dependency (Secrets Manager, DynamoDB, SQS) failed or throttled; nothing was sent to Hilos."""


class HilosError(HilosRunnerError, code="hilos_error"):
    """Hilos answered with an error, or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message, details=details)
        self.status = status


class HilosRejectedError(HilosError, code="hilos_rejected"):
    """Hilos answered 400 (or another 4xx): the request itself is wrong; resending it cannot help."""


class FlowNotFoundError(HilosError, code="flow_not_found"):
    """Hilos answered 404 for the flow."""


class ExecutionNotFoundError(HilosError, code="hilos_execution_not_found"):
    """Hilos answered 404 for a flow execution's status."""


class HilosAuthError(HilosError, code="hilos_auth_failed"):
    """Hilos refused the token twice (before and after a fresh read of the secret)."""


class HilosUnavailableError(HilosError, code="hilos_unavailable", retryable=True):
    """429, 5xx or a connection that never opened: the run surely did not start; retry later."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class HilosOutcomeUnknownError(HilosError, code="hilos_outcome_unknown", outcome_unknown=True):
    """The request was sent but no answer came (read timeout, reset): it may have started the flow.

    Never resent automatically: a duplicate WhatsApp message is worse than a run to check by hand.
    """


def validation_details(pydantic_errors: Sequence[Any]) -> list[dict[str, str]]:
    """Pydantic / Powertools validation errors as field paths and reasons (never the input values): the
    ``details`` of an invalid request (API) or message (worker)."""
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
