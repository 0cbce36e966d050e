"""HilosClient when Hilos is unavailable or its answer is lost: a run that surely did not start is retryable, one
whose answer never came is an unknown outcome and never resent, and the session's retry policy.

Most tests use the fake Hilos (no network). Two use real sockets on 127.0.0.1, because what they prove lives below
``requests``: that urllib3 retries a refused connection, and that a request which was sent but never answered is not
sent a second time."""

import contextlib
import email.utils
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
import requests
import urllib3.util.connection
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError, ProtocolError

from hilos_runner.errors import HilosError, HilosOutcomeUnknownError, HilosUnavailableError
from hilos_runner.hilos import build_session
from tests.fake_hilos import FakeHilos, reply
from tests.helpers import HILOS_EXECUTION_ID, RUN_URL, TEST_TOKEN, closed_port
from tests.unit.hilos_client_calls import assert_no_token, make_client, start

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


def failed_run_call(hilos: FakeHilos, failure: Exception, error_type: type[HilosError]) -> HilosError:
    """A run call whose connection fails with ``failure``: the client raises ``error_type`` after one call, without
    the token."""
    hilos.answer_runs(failure)
    with pytest.raises(error_type) as info:
        start(make_client())
    assert len(hilos.calls) == 1
    assert_no_token(info.value)
    return info.value


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
    error = failed_run_call(hilos, failure, HilosUnavailableError)
    assert error.retryable
    assert not error.outcome_unknown


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
    error = failed_run_call(hilos, failure, HilosOutcomeUnknownError)
    assert error.outcome_unknown
    assert not error.retryable


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
