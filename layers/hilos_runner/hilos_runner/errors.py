"""Domain errors, shared by both functions.

Each error says whether sending the same run again could succeed (``retryable``) and whether the
run may already have started upstream (``outcome_unknown``). The API maps them to HTTP answers in
one place (``hilos_runner.http``); the worker maps them to acknowledge / retry decisions.
Messages never contain the Hilos token: they are built here from fixed text and upstream bodies.
"""

from typing import Any


class HilosRunnerError(Exception):
    """Base of every error the service reports to a caller."""

    code = "internal_error"
    retryable = False
    outcome_unknown = False

    def __init__(self, message: str, *, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        # Set when the failed run was recorded, so the caller can look it up later.
        self.run_id: str | None = None


class ConfigurationError(HilosRunnerError):
    """The deployment is wrong (settings, secret content); no retry fixes it."""

    code = "configuration_error"


class NotFoundError(HilosRunnerError):
    code = "not_found"


class RunNotFinishedError(HilosRunnerError):
    """The run (or bulk run) is still going: what became of its contacts is not known yet."""

    code = "run_not_finished"


class ContactsNotReadYetError(HilosRunnerError):
    """A retry of a large bulk run needs more of Hilos' contact lists than one request can read: what was read is
    kept, so the same request again goes on from there."""

    code = "contacts_not_read_yet"
    retryable = True

    def __init__(self, message: str, *, retry_after: float = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InvalidRequestError(HilosRunnerError):
    """Input we could not express as a pydantic model error (an opaque cursor, a CSV file)."""

    code = "validation_error"


class UnsupportedMediaTypeError(HilosRunnerError):
    """The body is in a format the route does not read (bulk runs take JSON or CSV)."""

    code = "unsupported_media_type"


class IdempotencyInProgressError(HilosRunnerError):
    """A request with the same idempotency key is still being processed."""

    code = "idempotency_in_progress"
    retryable = True


class IdempotencyKeyReusedError(HilosRunnerError):
    """The idempotency key was first used with another request body."""

    code = "idempotency_key_reused"


class DependencyUnavailableError(HilosRunnerError):
    """An AWS dependency (Secrets Manager, DynamoDB, SQS) failed or throttled; nothing was sent to Hilos."""

    code = "dependency_unavailable"
    retryable = True


class HilosError(HilosRunnerError):
    """Hilos answered with an error, or could not be reached."""

    code = "hilos_error"

    def __init__(self, message: str, *, status: int | None = None, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message, details=details)
        self.status = status


class HilosRejectedError(HilosError):
    """Hilos answered 400 (or another 4xx): the request itself is wrong; resending it cannot help."""

    code = "hilos_rejected"


class FlowNotFoundError(HilosError):
    """Hilos answered 404 for the flow."""

    code = "flow_not_found"


class ExecutionNotFoundError(HilosError):
    """Hilos answered 404 for a flow execution's status."""

    code = "hilos_execution_not_found"


class HilosAuthError(HilosError):
    """Hilos refused the token twice (before and after a fresh read of the secret)."""

    code = "hilos_auth_failed"


class HilosUnavailableError(HilosError):
    """429, 5xx or a connection that never opened: the run surely did not start; retry later."""

    code = "hilos_unavailable"
    retryable = True

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class HilosOutcomeUnknownError(HilosError):
    """The request was sent but no answer came (read timeout, reset): it may have started the flow.

    Never resent automatically: a duplicate WhatsApp message is worse than a run to check by hand.
    """

    code = "hilos_outcome_unknown"
    outcome_unknown = True
