"""Powertools Logger, Metrics and Tracer shared by both functions.

Service name and metrics namespace come from POWERTOOLS_SERVICE_NAME and
POWERTOOLS_METRICS_NAMESPACE (set in template.yaml).

The Tracer is built only where tracing is on: constructing one imports the X-Ray SDK (with botocore's
session machinery), ~0.2-0.3 s of every cold start, even when tracing is disabled. Where it is off
(POWERTOOLS_TRACE_DISABLED, outside Lambda, sam local: Powertools' own rules), ``tracer`` is a
pass-through with the same decorators, and the X-Ray SDK is never imported.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.tracing.tracer import Tracer


class PassThroughTracer:
    """What the functions use of ``Tracer`` when tracing is off: decorators that return the function."""

    disabled = True

    def capture_lambda_handler(self, lambda_handler: Callable[..., Any] | None = None, **_: Any) -> Any:
        if lambda_handler is None:
            return lambda handler: handler
        return lambda_handler

    def capture_method(self, method: Callable[..., Any] | None = None, **_: Any) -> Any:
        if method is None:
            return lambda function: function
        return method

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str | None = None) -> None:
        pass


def tracing_enabled() -> bool:
    # Powertools' own rules (the same ones Tracer() applies), without constructing a Tracer.
    return not Tracer._is_tracer_disabled()


logger = Logger()
metrics = Metrics()
tracer: Tracer | PassThroughTracer = Tracer() if tracing_enabled() else PassThroughTracer()


@contextmanager
def log_keys(**keys: str) -> Iterator[None]:
    """``keys`` on every log line this thread writes inside the block. Per thread, because the records
    of one batch are processed in parallel threads: Logger.append_keys would mix their ids up."""
    logger.thread_safe_append_keys(**keys)
    try:
        yield
    finally:
        logger.thread_safe_remove_keys(keys)
