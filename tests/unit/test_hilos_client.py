"""HilosClient: the request it sends, and how every answer (or its absence) maps to a domain error.

Most tests use ``responses`` (no network). Two use real sockets on 127.0.0.1, because what they
prove lives below ``requests``: that urllib3 retries a refused connection, and that a request
which was sent but never answered is not sent a second time.
"""

import contextlib
import email.utils
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from unittest.mock import Mock, call
from uuid import UUID

import pytest
import requests
import urllib3.util.connection
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError, ProtocolError

from hilos_runner.errors import (
    ExecutionNotFoundError,
    FlowNotFoundError,
    HilosAuthError,
    HilosError,
    HilosOutcomeUnknownError,
    HilosRejectedError,
    HilosUnavailableError,
)
from hilos_runner.hilos import HilosClient, build_session
from hilos_runner.models import FlowRunRequest
from hilos_runner.settings import Settings
from tests.fake_hilos import FakeHilos, reply
from tests.helpers import FLOW_ID, HILOS_EXECUTION_ID, RUN_URL, TEST_TOKEN, closed_port, hilos_execution, run_body

FRESH_TOKEN = "hilos-fresh-token-0a9b8c7d"


def make_client(get_token: Any = None, **settings: Any) -> HilosClient:
    config = Settings(**settings)
    return HilosClient(config, get_token or Mock(return_value=TEST_TOKEN), build_session(config.hilos_connect_retries))


def run_request(contacts: int = 1) -> FlowRunRequest:
    return FlowRunRequest.model_validate(run_body(contacts=contacts))


def start(client: HilosClient) -> Any:
    return client.create_flow_execution(UUID(FLOW_ID), run_request())


def assert_no_token(error: Exception) -> None:
    text = f"{error} {error!r} {getattr(error, 'details', '')}"
    assert TEST_TOKEN not in text
    assert FRESH_TOKEN not in text


# --- the request ----------------------------------------------------------------------------------


def test_posts_the_exact_body_to_the_run_url_with_the_token_and_explicit_timeouts(hilos: FakeHilos):
    hilos.answer_runs(reply(201, hilos_execution(num_contacts=2)))
    client = make_client(hilos_connect_timeout_seconds=1.5, hilos_read_timeout_seconds=7)
    request = run_request(contacts=2)

    execution = client.create_flow_execution(UUID(FLOW_ID), request)

    assert execution.id == UUID(HILOS_EXECUTION_ID)
    assert execution.num_contacts == 2
    (sent,) = hilos.calls
    assert sent.request.method == "POST"
    assert sent.request.url == RUN_URL
    assert sent.request.headers["Authorization"] == f"Token {TEST_TOKEN}"
    assert sent.request.headers["Content-Type"] == "application/json"
    assert sent.request.body == request.hilos_body()
    assert sent.request.req_kwargs["timeout"] == (1.5, 7.0)  # type: ignore[attr-defined]  # set by responses


def test_the_activecampaign_style_run_path_is_a_setting(hilos: FakeHilos):
    url = f"https://hilos.example.com/api/channel/whatsapp/flow/{FLOW_ID}/run"
    hilos.answer_runs(reply(201, hilos_execution()))
    client = make_client(
        hilos_api_url="https://hilos.example.com/api/", hilos_run_path="/channel/whatsapp/flow/{flow_id}/run"
    )

    start(client)

    assert [c.request.url for c in hilos.calls] == [url]


@pytest.mark.parametrize("status", [200, 201])
def test_2xx_is_a_started_run(hilos: FakeHilos, status: int):
    hilos.answer_runs(reply(status, hilos_execution(status="READY")))
    assert start(make_client()).status == "READY"


@pytest.mark.parametrize("body", ["<html>created</html>", "", '{"id": "not-a-uuid"}', "[1, 2]"])
def test_an_unreadable_201_body_is_still_a_started_run(hilos: FakeHilos, body: str):
    hilos.answer_runs(reply(201, text=body, headers={"Content-Type": "application/json"}))
    execution = start(make_client())
    assert execution.id is None
    assert len(hilos.calls) == 1


# --- Hilos said no --------------------------------------------------------------------------------

DRF_PROBLEMS = {
    "detail": (
        {"detail": "Flow is not published."},
        "Flow is not published.",
        [{"field": "", "reason": "Flow is not published."}],
    ),
    "field lists": (
        {"contact_list": [{}, {"phone": ["Enter a valid phone number."], "email": ["Enter a valid email."]}]},
        "contact_list.1.phone: Enter a valid phone number.",
        [
            {"field": "contact_list.1.phone", "reason": "Enter a valid phone number."},
            {"field": "contact_list.1.email", "reason": "Enter a valid email."},
        ],
    ),
    "non_field_errors": (
        {"non_field_errors": ["The flow has no published version."]},
        "The flow has no published version.",
        [{"field": "", "reason": "The flow has no published version."}],
    ),
    "top-level list": (["Invalid input."], "Invalid input.", [{"field": "", "reason": "Invalid input."}]),
}


@pytest.mark.parametrize(("problem", "message", "details"), DRF_PROBLEMS.values(), ids=DRF_PROBLEMS.keys())
def test_400_is_rejected_with_hilos_message_and_flattened_details(
    hilos: FakeHilos, problem: Any, message: str, details: list[dict[str, str]]
):
    hilos.answer_runs(reply(400, problem))

    with pytest.raises(HilosRejectedError) as info:
        start(make_client())

    assert info.value.status == 400
    assert message in info.value.message
    assert info.value.details == details
    assert not info.value.retryable
    assert len(hilos.calls) == 1
    assert_no_token(info.value)


@pytest.mark.parametrize(("body", "message"), [("Bad things happened\n", "Bad things happened"), ("", "Bad Request")])
def test_400_with_a_non_json_body_uses_the_text_or_the_reason(hilos: FakeHilos, body: str, message: str):
    hilos.answer_runs(reply(400, text=body, headers={"Content-Type": "text/plain"}))

    with pytest.raises(HilosRejectedError) as info:
        start(make_client())

    assert info.value.message.endswith(message)
    assert info.value.details == []


@pytest.mark.parametrize(
    "echo",
    [
        {"detail": f"bad header Authorization: Token {TEST_TOKEN}"},
        {"headers": {"Authorization": [f"Token {TEST_TOKEN}"]}},
        f"<html>Authorization: Token {TEST_TOKEN}</html>",
    ],
)
def test_an_upstream_error_that_echoes_the_token_never_carries_it_further(hilos: FakeHilos, echo: Any):
    if isinstance(echo, str):
        hilos.answer_runs(reply(400, text=echo, headers={"Content-Type": "text/html"}))
    else:
        hilos.answer_runs(reply(400, echo))

    with pytest.raises(HilosRejectedError) as info:
        start(make_client())

    assert_no_token(info.value)
    assert "[redacted]" in f"{info.value.message} {info.value.details}"


def test_a_huge_upstream_message_is_cut(hilos: FakeHilos):
    hilos.answer_runs(reply(400, {"detail": "x" * 10_000}))
    with pytest.raises(HilosRejectedError) as info:
        start(make_client())
    assert len(info.value.message) < 700


@pytest.mark.parametrize("status", [402, 405, 409, 413, 422])
def test_other_4xx_are_rejected(hilos: FakeHilos, status: int):
    hilos.answer_runs(reply(status, {"detail": "no"}))
    with pytest.raises(HilosRejectedError) as info:
        start(make_client())
    assert info.value.status == status
    assert len(hilos.calls) == 1


def test_404_is_flow_not_found(hilos: FakeHilos):
    hilos.answer_runs(reply(404, {"detail": "Not found."}))
    with pytest.raises(FlowNotFoundError) as info:
        start(make_client())
    assert info.value.status == 404
    assert not info.value.retryable
    assert len(hilos.calls) == 1


# --- the token was refused ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_token_is_read_again_once_and_the_run_sent_again(hilos: FakeHilos, status: int):
    hilos.answer_runs(reply(status, {"detail": "Invalid token."}))
    hilos.answer_runs(reply(201, hilos_execution()))
    get_token = Mock(side_effect=[TEST_TOKEN, FRESH_TOKEN])

    execution = start(make_client(get_token))

    assert execution.id == UUID(HILOS_EXECUTION_ID)
    assert get_token.call_args_list == [call(force_refresh=False), call(force_refresh=True)]
    assert [c.request.headers["Authorization"] for c in hilos.calls] == [f"Token {TEST_TOKEN}", f"Token {FRESH_TOKEN}"]


@pytest.mark.parametrize("statuses", [(401, 401), (403, 403), (401, 403)])
def test_a_token_refused_twice_is_an_auth_error(hilos: FakeHilos, statuses: tuple[int, int]):
    for status in statuses:
        hilos.answer_runs(reply(status, {"detail": "Invalid token."}))
    get_token = Mock(side_effect=[TEST_TOKEN, FRESH_TOKEN])

    with pytest.raises(HilosAuthError) as info:
        start(make_client(get_token))

    assert get_token.call_args_list == [call(force_refresh=False), call(force_refresh=True)]
    assert len(hilos.calls) == 2
    assert info.value.status == statuses[1]
    assert "secret" in info.value.message
    assert not info.value.retryable
    assert_no_token(info.value)


# --- Hilos is unavailable: the run surely did not start --------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_429_and_5xx_are_unavailable_and_retryable(hilos: FakeHilos, status: int):
    hilos.answer_runs(reply(status, text="busy"))

    with pytest.raises(HilosUnavailableError) as info:
        start(make_client())

    assert info.value.status == status
    assert info.value.retryable
    assert not info.value.outcome_unknown
    assert info.value.retry_after is None
    assert len(hilos.calls) == 1  # never retried inside the call: the caller decides
    assert_no_token(info.value)


def http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


@pytest.mark.parametrize(
    ("header", "low", "high"),
    [
        ("17", 17, 17),
        ("2.5", 2.5, 2.5),
        ("-3", 0, 0),
        (http_date(3600), 3000, 3600),  # a date an hour away: the wait is measured from now
        (http_date(-3600), 0, 0),
    ],
    ids=["delta-seconds", "fractional", "negative", "http-date", "past http-date"],
)
def test_retry_after_is_read_in_both_forms(hilos: FakeHilos, header: str, low: float, high: float):
    hilos.answer_runs(reply(503, headers={"Retry-After": header}))
    with pytest.raises(HilosUnavailableError) as info:
        start(make_client())
    assert info.value.retry_after is not None
    assert low <= info.value.retry_after <= high


def test_an_unreadable_retry_after_is_ignored(hilos: FakeHilos):
    hilos.answer_runs(reply(429, headers={"Retry-After": "soon"}))
    with pytest.raises(HilosUnavailableError) as info:
        start(make_client())
    assert info.value.retry_after is None


def refused(url: str) -> requests.ConnectionError:
    return requests.ConnectionError(MaxRetryError(None, url, reason=NewConnectionError(None, "refused")))  # type: ignore[arg-type]


def unresolvable(url: str) -> requests.ConnectionError:
    reason = NameResolutionError("api.hilos.io", None, socket.gaierror("no such host"))  # type: ignore[arg-type]
    return requests.ConnectionError(MaxRetryError(None, url, reason=reason))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "failure",
    [requests.ConnectTimeout("connect timed out"), refused(RUN_URL), unresolvable(RUN_URL)],
    ids=["connect timeout", "refused", "dns"],
)
def test_a_connection_that_never_opened_is_unavailable(hilos: FakeHilos, failure: Exception):
    hilos.answer_runs(failure)
    with pytest.raises(HilosUnavailableError) as info:
        start(make_client())
    assert info.value.retryable
    assert not info.value.outcome_unknown


# --- the request was sent and no answer came: never resent ----------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        requests.ReadTimeout("read timed out"),
        requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))),
        requests.ConnectionError("RemoteDisconnected"),
    ],
    ids=["read timeout", "reset after send", "unknown connection error"],
)
def test_a_lost_answer_is_an_unknown_outcome(hilos: FakeHilos, failure: Exception):
    hilos.answer_runs(failure)

    with pytest.raises(HilosOutcomeUnknownError) as info:
        start(make_client())

    assert info.value.outcome_unknown
    assert not info.value.retryable
    assert len(hilos.calls) == 1
    assert_no_token(info.value)


def test_504_from_hilos_gateway_is_an_unknown_outcome(hilos: FakeHilos):
    hilos.answer_runs(reply(504, text="Gateway Timeout"))
    with pytest.raises(HilosOutcomeUnknownError) as info:
        start(make_client())
    assert info.value.outcome_unknown
    assert len(hilos.calls) == 1


# --- the session's retry policy, and real sockets --------------------------------------------------


@pytest.mark.parametrize("scheme", ["https://", "http://"])
def test_the_session_retries_a_post_only_on_connection_failures_and_a_get_also_on_reads_and_5xx(scheme: str):
    adapter = build_session(connect_retries=3).get_adapter(f"{scheme}api.hilos.io")
    assert isinstance(adapter, HTTPAdapter)
    retry = adapter.max_retries

    assert retry.connect == 3
    assert (retry.other, retry.redirect) == (0, 0)
    # Read and status retries apply only to the allowed methods: never to the POST that starts a run.
    assert (retry.read, retry.status) == (3, 3)
    assert retry.allowed_methods == frozenset({"GET"})
    assert not retry.is_retry("POST", 503)
    assert retry.is_retry("GET", 503)
    assert not retry.is_retry("GET", 429)  # Hilos asked us to slow down: the status sync stops its pass


def test_a_refused_connection_is_retried_by_the_adapter_then_unavailable(monkeypatch: pytest.MonkeyPatch):
    attempts: list[tuple[str, int]] = []
    real_create_connection = urllib3.util.connection.create_connection

    def counting_create_connection(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        attempts.append(address)
        return real_create_connection(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", counting_create_connection)
    port = closed_port()
    client = make_client(hilos_api_url=f"http://127.0.0.1:{port}/api", hilos_connect_retries=2)

    with pytest.raises(HilosUnavailableError) as info:
        start(client)

    assert "could not be reached" in info.value.message
    assert attempts == [("127.0.0.1", port)] * 3  # the first connect and two retries


class SilentServer:
    """Accepts connections on 127.0.0.1 and reads what arrives, but never answers."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self.connections = 0
        self.received = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        open_connections = []
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                pass  # nobody new: go on reading the open connections
            else:
                connection.settimeout(0.05)
                open_connections.append(connection)
                self.connections += 1
            for connection in open_connections:
                with contextlib.suppress(TimeoutError):
                    self.received += connection.recv(65536)
        for connection in open_connections:
            connection.close()

    def __enter__(self) -> "SilentServer":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    with SilentServer() as server:
        yield server


def test_a_request_that_gets_no_answer_is_sent_once_and_is_an_unknown_outcome(silent_server: SilentServer):
    client = make_client(
        hilos_api_url=f"http://127.0.0.1:{silent_server.port}/api",
        hilos_read_timeout_seconds=0.2,
        hilos_connect_retries=3,
    )

    with pytest.raises(HilosOutcomeUnknownError) as info:
        start(client)
    silent_server.stop()  # stop reading before counting

    assert "may have started" in info.value.message
    assert silent_server.connections == 1
    assert silent_server.received.count(b"POST /api/flow/") == 1
    assert f"Token {TEST_TOKEN}".encode() in silent_server.received  # it really was sent
    assert_no_token(info.value)


def test_a_status_read_that_gets_no_answer_is_retried_then_unavailable(silent_server: SilentServer):
    client = make_client(
        hilos_api_url=f"http://127.0.0.1:{silent_server.port}/api",
        hilos_read_timeout_seconds=30,  # the run call's timeout: not the one a status read waits for
        hilos_status_read_timeout_seconds=0.2,
        hilos_connect_retries=2,
    )

    with pytest.raises(HilosUnavailableError) as info:
        client.get_flow_execution(UUID(HILOS_EXECUTION_ID))
    silent_server.stop()

    # A GET changes nothing upstream: reading again is safe, unlike the POST above.
    assert silent_server.received.count(f"GET /api/flow-execution/{HILOS_EXECUTION_ID}".encode()) == 3
    assert "did not answer" in info.value.message
    assert_no_token(info.value)


# --- status reads (GET /flow-execution/{id}) -------------------------------------------------------------

EXECUTION_URL = f"https://api.hilos.io/api/flow-execution/{HILOS_EXECUTION_ID}"


def test_a_status_read_gets_the_execution_with_the_token_and_parses_status_and_counters(
    hilos: FakeHilos,
):
    hilos.answer_reads(reply(200, hilos_execution(status="RUNNING", running=3, completed=1, failed=1, expired=0)))

    execution = make_client().get_flow_execution(UUID(HILOS_EXECUTION_ID))

    sent = hilos.calls[0].request
    assert sent.headers["Authorization"] == f"Token {TEST_TOKEN}"
    assert "Content-Type" not in sent.headers
    assert sent.body is None
    assert (execution.status, execution.running, execution.completed, execution.failed) == ("RUNNING", 3, 1, 1)


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(404, ExecutionNotFoundError), (429, HilosUnavailableError), (400, HilosError), (504, HilosUnavailableError)],
)
def test_a_failed_status_read_is_never_an_unknown_run_outcome(
    hilos: FakeHilos, status: int, error_type: type[Exception]
):
    hilos.answer_reads(reply(status, {"detail": "no"}))

    with pytest.raises(error_type) as info:
        make_client().get_flow_execution(UUID(HILOS_EXECUTION_ID))

    assert type(info.value) is error_type
    assert not info.value.outcome_unknown  # type: ignore[attr-defined]


def test_a_status_read_refreshes_a_refused_token_once(hilos: FakeHilos):
    hilos.answer_reads(reply(401))
    hilos.answer_reads(reply(200, hilos_execution(status="COMPLETED")))
    get_token = Mock(side_effect=[TEST_TOKEN, FRESH_TOKEN])

    execution = make_client(get_token).get_flow_execution(UUID(HILOS_EXECUTION_ID))

    assert execution.status == "COMPLETED"
    assert get_token.call_args_list == [call(force_refresh=False), call(force_refresh=True)]
    assert hilos.calls[1].request.headers["Authorization"] == f"Token {FRESH_TOKEN}"


def test_a_contact_list_that_echoes_the_token_in_a_reason_never_carries_it_further(hilos: FakeHilos):
    execution_id = hilos.add_execution(["+5215500000007"])
    hilos.contacts[execution_id][0].update(status="FAILED", reason=f"request had Authorization: Token {TEST_TOKEN}")

    page = make_client().list_execution_contacts(UUID(execution_id), 1, 100)

    [contact] = page.results
    assert contact.reason == "request had Authorization: Token [redacted]"
