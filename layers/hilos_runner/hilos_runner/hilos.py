"""HilosClient: one ``requests.Session`` per process, explicit timeouts, and error mapping.

A POST to Hilos is not idempotent, so the rule for retrying it is "only when it surely never
arrived": urllib3 retries connection failures (nothing was sent) inside the call; everything
else is mapped to a domain error and the caller decides. A read timeout or a reset after sending
is an *unknown outcome*: the flow may have started, and it is never resent blindly.

A GET (an execution's status) changes nothing, so urllib3 also retries it after a read timeout, a
broken connection or a 500/502/503/504. A 429 is not retried inside the call: the status sync
stops its pass instead, and comes back at its next tick.
"""

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar
from uuid import UUID

import requests
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, InvalidHeader, NameResolutionError, NewConnectionError
from urllib3.util.retry import Retry

from hilos_runner import errors
from hilos_runner.models import FlowExecution, FlowExecutionContact, FlowRunRequest, HilosPage
from hilos_runner.observability import metrics, tracer
from hilos_runner.settings import Settings

# Hilos' gateway timing out means our request reached it and may have been processed.
_OUTCOME_UNKNOWN_STATUSES = {504}
_MAX_UPSTREAM_MESSAGE = 500

# The page size asked of Hilos' List Flow Execution Contacts (its spec sets no maximum; 100 is DRF's usual cap).
CONTACTS_PAGE_SIZE = 100
_Page = TypeVar("_Page", bound=BaseModel)
TokenGetter = Callable[..., str]  # get(force_refresh: bool = False) -> token


def build_session(connect_retries: int, pool_size: int = 10) -> requests.Session:
    """A pooled session whose adapter retries a POST only when it cannot have reached Hilos, and a GET
    also when it did (reading twice is harmless)."""
    retry = Retry(
        total=None,
        connect=connect_retries,  # connection never opened: safe for any method
        # Sent but no answer, or a 5xx: retried only for the methods below (urllib3 checks the method
        # for read and status retries, not for connect ones). A POST's run may exist: never resent here.
        read=connect_retries,
        status=connect_retries,
        allowed_methods=frozenset({"GET"}),
        status_forcelist=frozenset({500, 502, 503, 504}),
        other=0,
        redirect=0,
        backoff_factor=0.1,
        raise_on_status=False,
        respect_retry_after_header=False,  # 429 is not in the list; the caller decides when to come back
    )
    session = requests.Session()
    # No proxy/.netrc lookups from the environment on every request (~0.5 ms each): Lambda has none,
    # and the Authorization header is ours alone to set.
    session.trust_env = False
    adapter = HTTPAdapter(max_retries=retry, pool_connections=1, pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class HilosClient:
    def __init__(self, settings: Settings, get_token: TokenGetter, session: requests.Session) -> None:
        self._settings = settings
        self._get_token = get_token
        self._session = session
        self._timeout = (settings.hilos_connect_timeout_seconds, settings.hilos_read_timeout_seconds)
        self._status_timeout = (settings.hilos_connect_timeout_seconds, settings.hilos_status_read_timeout_seconds)

    @tracer.capture_method(capture_response=False)
    def create_flow_execution(self, flow_id: UUID, request: FlowRunRequest) -> FlowExecution:
        """Start ``flow_id`` for the request's contacts; returns Hilos' FlowExecutionEdit."""
        response = self._request("POST", self._settings.run_url(flow_id), request.hilos_body(), "HilosLatency")
        return _parse_execution(response)

    @tracer.capture_method(capture_response=False)
    def get_flow_execution(self, execution_id: UUID) -> FlowExecution:
        """Hilos' FlowExecutionReadDetail of an execution: its status and contact counters."""
        return _parse_execution(self._get(self._settings.execution_url(execution_id), "HilosStatusLatency"))

    @tracer.capture_method(capture_response=False)
    def list_flow_executions(self, flow_id: UUID, page: int) -> HilosPage[FlowExecution]:
        """One page of Hilos' List Flow Executions of ``flow_id`` (FlowExecutionList items)."""
        query = {"flow": str(flow_id), "page": str(page)}
        return _parse_page(
            self._get(self._settings.executions_url(), "HilosLookupLatency", query), HilosPage[FlowExecution]
        )

    @tracer.capture_method(capture_response=False)
    def list_execution_contacts(self, execution_id: UUID, page: int, page_size: int) -> HilosPage[FlowExecutionContact]:
        """One page of Hilos' List Flow Execution Contacts of ``execution_id``."""
        query = {"flow_execution": str(execution_id), "page": str(page), "page_size": str(page_size)}
        response = self._get(self._settings.execution_contacts_url(), "HilosLookupLatency", query)
        return _parse_page(response, HilosPage[FlowExecutionContact])

    def _get(self, url: str, latency_metric: str, params: dict[str, str] | None = None) -> requests.Response:
        return self._request("GET", url, None, latency_metric, params)

    def _request(
        self,
        method: str,
        url: str,
        body: bytes | None,
        latency_metric: str,
        params: dict[str, str] | None = None,
    ) -> requests.Response:
        started = time.perf_counter()
        try:
            return self._authorized(method, url, body, params)
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            metrics.add_metric(name=latency_metric, unit=MetricUnit.Milliseconds, value=round(elapsed_ms, 1))

    def _authorized(
        self, method: str, url: str, body: bytes | None, params: dict[str, str] | None
    ) -> requests.Response:
        # A 401/403 means Hilos did not act on the request: refresh the token once and resend.
        for force_refresh in (False, True):
            token = self._get_token(force_refresh=force_refresh)
            headers = {"Authorization": f"Token {token}", "Accept": "application/json"}
            if body is not None:
                headers["Content-Type"] = "application/json"
            response = self._send(method, url, body, headers, params)
            if response.status_code not in (401, 403):
                return _checked(response, token, method)
        raise errors.HilosAuthError(
            f"Hilos refused the API token (HTTP {response.status_code}) after a fresh read of the secret; "
            "check the Hilos token secret",
            status=response.status_code,
        )

    def _send(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str], params: dict[str, str] | None
    ) -> requests.Response:
        timeout = self._status_timeout if method == "GET" else self._timeout
        try:
            # Session.send with a request prepared here, not Session.post: we set every header
            # ourselves, and Session.request's merging (runtime Protocol checks on Python 3.11) costs
            # ~0.3 ms a call on the warm path.
            prepared = requests.Request(method, url, data=body, headers=headers, params=params).prepare()
            return self._session.send(prepared, timeout=timeout, allow_redirects=False)
        except requests.ConnectTimeout:
            raise errors.HilosUnavailableError("Hilos could not be reached (connect timeout)") from None
        except (requests.ReadTimeout, requests.ConnectionError) as exc:
            if isinstance(exc, requests.ConnectionError) and _never_sent(exc):
                raise errors.HilosUnavailableError("Hilos could not be reached (connection failed)") from None
            # Sent, and no answer: read timeouts or broken connections (on every retry, for a GET).
            lost = f"Hilos did not answer within {timeout[1]:g} s" if isinstance(exc, requests.ReadTimeout) else None
            if method == "GET":  # a read: nothing can have started
                raise errors.HilosUnavailableError(
                    lost or "Hilos did not answer the status read, retries included"
                ) from None
            lost = lost or "the connection to Hilos broke after the request was sent"
            raise errors.HilosOutcomeUnknownError(f"{lost}; the run may have started") from None


def _never_sent(exc: requests.ConnectionError) -> bool:
    """True when the connection was never established, so Hilos cannot have seen the request."""
    reason = getattr(exc.args[0], "reason", exc.args[0]) if exc.args else None
    return isinstance(reason, NewConnectionError | NameResolutionError | ConnectTimeoutError)


def _checked(response: requests.Response, token: str, method: str) -> requests.Response:
    status = response.status_code
    if status < 300:
        if token and token.encode() in response.content:
            # What Hilos answers is stored and answered (a contact's reason, say): never our token, even echoed.
            response._content = response.content.replace(token.encode(), b"[redacted]")
        return response
    reading = method == "GET"  # a status read: nothing can have started, whatever the answer
    if status == 404:
        if reading:
            raise errors.ExecutionNotFoundError("Hilos found no such flow execution (HTTP 404)", status=404)
        raise errors.FlowNotFoundError("Hilos found no such flow (HTTP 404)", status=404)
    if status == 429 or (status >= 500 and (reading or status not in _OUTCOME_UNKNOWN_STATUSES)):
        raise errors.HilosUnavailableError(
            f"Hilos is unavailable (HTTP {status})" + ("" if reading else "; the run was not started"),
            status=status,
            retry_after=_retry_after_seconds(response.headers.get("Retry-After")),
        )
    if status in _OUTCOME_UNKNOWN_STATUSES:
        raise errors.HilosOutcomeUnknownError(f"Hilos' gateway timed out (HTTP {status}); the run may have started")
    message, details = _upstream_problem(response, token)
    if reading:
        raise errors.HilosError(
            f"Hilos refused the status read (HTTP {status}): {message}", status=status, details=details
        )
    raise errors.HilosRejectedError(
        f"Hilos rejected the run (HTTP {status}): {message}", status=status, details=details
    )


# Only for its Retry-After parser (delta-seconds or an HTTP date, RFC 9110).
_RETRY_AFTER = Retry(0)


def _retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: delta-seconds (fractions, which urllib3 refuses, taken too) or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return _RETRY_AFTER.parse_retry_after(value)
    except InvalidHeader:
        return None


def _upstream_problem(response: requests.Response, token: str) -> tuple[str, list[dict[str, Any]]]:
    """Hilos' plain-JSON error body as a message plus field details (DRF shapes).

    The body goes into answers and records, so the token is cut out of it first, in case an
    upstream error page ever echoes our request headers.
    """
    text = response.text.replace(token, "[redacted]")
    try:
        body = json.loads(text)
    except ValueError:
        return (text.strip()[:_MAX_UPSTREAM_MESSAGE] or response.reason or "no message"), []
    details: list[dict[str, Any]] = []
    _flatten_problem(body, (), details)
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        message = body["detail"]
    elif details:
        message = "; ".join(f"{d['field']}: {d['reason']}" if d["field"] else d["reason"] for d in details[:5])
    else:
        message = str(body)
    return message[:_MAX_UPSTREAM_MESSAGE], details[:50]


def _flatten_problem(node: Any, path: tuple[str, ...], out: list[dict[str, Any]]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            _flatten_problem(value, (*path, str(key)) if key not in ("detail", "non_field_errors") else path, out)
    elif isinstance(node, list) and node and all(isinstance(item, str) for item in node):
        out.extend({"field": ".".join(path), "reason": item[:_MAX_UPSTREAM_MESSAGE]} for item in node)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            _flatten_problem(item, (*path, str(index)), out)
    elif node not in (None, "", {}):
        out.append({"field": ".".join(path), "reason": str(node)[:_MAX_UPSTREAM_MESSAGE]})


def _parse_execution(response: requests.Response) -> FlowExecution:
    # The run has started whatever the body says: an unreadable body must not turn it into a failure.
    try:
        return FlowExecution.model_validate_json(response.content)
    except ValueError:
        return FlowExecution()


def _parse_page(response: requests.Response, model: type[_Page]) -> _Page:
    # A list page decides whether a run is resent: one we cannot read makes the lookup inconclusive.
    try:
        return model.model_validate_json(response.content)
    except ValueError:
        raise errors.HilosError(
            f"Hilos answered a list page that is not valid ({model.__name__})", status=200
        ) from None
