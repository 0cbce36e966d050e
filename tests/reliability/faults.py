"""Faults injected at the boto3 client boundary (botocore's event hooks), for the crash and hygiene tests.

A hook on ``before-parameter-build`` runs before botocore's own retries, so raising there is what the
code sees once botocore has given up (throttled on every attempt, endpoint unreachable)."""

from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError, EndpointConnectionError


class InvocationKilled(BaseException):
    """The Lambda runtime stopping the invocation (timeout, out of memory): nothing after it runs, and
    nothing catches it (``except Exception`` does not), so no cleanup happens, as when Lambda kills the
    process. Powertools keeps the idempotency record IN_PROGRESS, the run record keeps what was written."""


def aws_error(code: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"injected {code}"}}, operation)


def unreachable(operation: str) -> EndpointConnectionError:
    return EndpointConnectionError(endpoint_url=f"https://{operation.lower()}.invalid")


def inject(
    client: Any,
    operation: str,
    error: Callable[[], BaseException],
    *,
    when: Callable[[dict[str, Any]], bool] = lambda _params: True,
    times: int = 1,
) -> list[dict[str, Any]]:
    """Make the next ``times`` calls of ``operation`` (matching ``when``) raise ``error()``; returns the
    parameters of the calls that were failed."""
    service = client.meta.service_model.service_name
    failed: list[dict[str, Any]] = []

    def hook(params: dict[str, Any], **_: Any) -> None:
        if len(failed) < times and when(params):
            failed.append(dict(params))
            raise error()

    client.meta.events.register(f"before-parameter-build.{service}.{operation}", hook)
    return failed
