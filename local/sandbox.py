"""A Hilos sandbox: the run, get-execution and list paths of Hilos' API, strict about what it accepts, with faults.

It answers like Hilos (201 with a FlowExecutionEdit, plain-JSON DRF-style errors), but checks more than
Hilos would: the ``Authorization: Token <token>`` header, the JSON content type and the body against
the Hilos schema the project carries (read-only fields are refused, not ignored), so a client bug shows
up as a 4xx here instead of as a silent oddity in production.

Faults are injected at set rates, globally or per flow, optionally only the first ``limit`` times, on the
calls a plan ``targets`` (run calls unless it names ``status`` reads or ``lookup``s, the list reads).
Before the run is created: ``500``, ``503`` and ``429`` (with Retry-After) are answered; ``slow_before``
holds the request past the client's read timeout, then answers 504; ``reset_before`` resets the connection
once the request was read. After the run was created (the worst case for a client that resends: a resend
shows up as a duplicate in the stats): ``slow`` answers after the client's read timeout, ``reset`` resets
the connection. To a client, each ``_before`` kind looks like its "after" twin. A plan without a ``mix``
uses DEFAULT_FAULT_MIX, which leaves the ``_before`` kinds out: they are asked for by name.

A created execution moves on by itself, so a client reading its status (Get Flow Execution, checked
against the FlowExecutionReadDetail schema) sees it progress: PROCESSING -> STARTING -> RUNNING ->
COMPLETED, or CANCELED for the flows in ``cancel_flows``. ``progression: "time"`` moves it after
``stage_seconds`` per stage; ``"per_read"`` moves it one stage per status read Hilos answers,
deterministic for tests; ``hold_flows`` keeps a flow's executions at a stage until released. Its
counters add up: while RUNNING, ``running`` counts the contacts still in the flow; at the end
completed + failed + expired (+ canceled) = num_contacts, where a contact whose phone ends in one of
``failed_phone_endings`` fails and one of ``expired_phone_endings`` expires. Every ``created_on`` of an
execution is Hilos' clock at its creation, off by ``clock_skew_seconds``.

The list endpoints (local/sandbox_lists.py), paged like DRF (``list_page_size`` per page unless ``page_size``
asks): ``GET /api/flow-execution?flow=&page=`` (PaginatedFlowExecutionListList, newest first) and
``GET /api/flow-execution-contact?flow_execution=&flow_execution__flow=&is_active=&page=&page_size=``
(PaginatedFlowExecutionContactListSimpleList, contacts in the order sent, each with a status that follows
its execution's and adds up to its counters). A list read shows an execution where it is now, but moves it
on only by its age: with ``per_read`` only status reads move it.

Control (no auth, 127.0.0.1 only): ``GET|POST /_sandbox/faults`` (POST merges the given fields; a
``seed`` makes the sequence of fault decisions repeatable),
``GET /_sandbox/stats`` (``requests``, ``responses``, ``faults``, ``recent`` (each call with its ``fault`` and
whether it ``created`` an execution)... count run calls, ``contact_lists`` per fingerprint their calls, creations
and ``execution_ids``; status reads have their own: ``status_reads`` per execution, answered or not,
``status_read_answers``, ``status_read_faults``, ``recent_status_reads``; and so do list reads:
``lookup_reads`` per endpoint, ``lookup_read_answers``, ``lookup_read_faults``, ``recent_lookup_reads``),
``POST /_sandbox/reset`` (stats and settings back to the start; created executions stay).

Three modules: this one is the HTTP server (routing, auth, faults at the gateway, the answers);
local/sandbox_state.py holds what Hilos holds (settings, stats, executions and their progression);
local/sandbox_settings.py is what it can be told (fault plans, progression, outcomes).
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import socket
import struct
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from local.hilos_schema import Problem, run_request_problems
from local.sandbox_lists import (
    InvalidFilter,
    InvalidPage,
    boolean_filter,
    lenient_uuid,
    page_size_of,
    query_of,
    uuid_filter,
)
from local.sandbox_settings import BEFORE_FAULTS, FaultKind, FaultTarget, SandboxSettings
from local.sandbox_state import SandboxState, contact_list_fingerprint
from local.servers import ServerThread

log = logging.getLogger("local.sandbox")

BASE_PATH = "/api"
_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_RUN_PATH = re.compile(rf"^{BASE_PATH}(?:/channel/whatsapp)?/flow/(?P<flow_id>{_UUID})/run/?$")
_EXECUTION_PATH = re.compile(rf"^{BASE_PATH}/flow-execution/(?P<execution_id>{_UUID})/?$")
# The list endpoints, by the name their reads are counted under in the stats.
EXECUTIONS_LIST = "flow-execution"
CONTACTS_LIST = "flow-execution-contact"
_LIST_PATHS = {
    re.compile(rf"^{BASE_PATH}/flow-execution/?$"): EXECUTIONS_LIST,
    re.compile(rf"^{BASE_PATH}/flow-execution-contact/?$"): CONTACTS_LIST,
}


class _SandboxServer(ThreadingHTTPServer):
    daemon_threads = True  # idle keep-alive connections must not hold up shutdown

    def __init__(self, address: tuple[str, int], state: SandboxState) -> None:
        super().__init__(address, _SandboxHandler)
        self.state = state
        self.stopping = threading.Event()


class _SandboxHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _SandboxServer
    timeout = 120  # an idle keep-alive connection is dropped after this
    _deferred_fault: FaultKind | None = None  # chosen at the gateway, applied after the run is created

    def log_message(self, format: str, *args: Any) -> None:
        pass  # _dispatch logs one line per request instead

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- routing ---------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        started = time.monotonic()
        path = urlsplit(self.path).path
        body = self._read_body()
        if path.startswith("/_sandbox/"):
            self._control(method, path, body)
            return
        run = _RUN_PATH.match(path)
        execution = _EXECUTION_PATH.match(path)
        listed = next((name for pattern, name in _LIST_PATHS.items() if pattern.match(path)), None)
        call: dict[str, Any] = {
            "at": datetime.now(UTC).isoformat(),
            "method": method,
            "path": path,
            "flow_id": run["flow_id"].lower() if run else None,
            "fault": None,
            **self._auth(),
        }
        if execution and method == "GET":
            call.update(status_read=True, execution_id=execution["execution_id"].lower())
        if listed and method == "GET":
            call.update(lookup_read=listed, query=urlsplit(self.path).query)
        if run and method == "POST":
            call.update(execution_id=None)  # until the execution is created
            self._run(call, run["flow_id"].lower(), body)
        elif execution and method == "GET":
            self._get_execution(call, execution["execution_id"])
        elif listed and method == "GET":
            self._list(call, listed)
        elif run or execution or listed:
            self._answer(call, 405, {"detail": f'Method "{method}" not allowed.'})
        else:
            self._answer(call, 404, {"detail": "Not found."})
        log.info(
            "hilos  %s %s %s%s %.0f ms",
            method,
            path,
            call.get("status", "-"),
            f" (fault: {call['fault']})" if call.get("fault") else "",
            (time.monotonic() - started) * 1000,
        )

    def _run(self, call: dict[str, Any], flow_id: str, raw: bytes) -> None:
        state = self.server.state
        try:
            body, parse_error = json.loads(raw), None
        except ValueError as exc:
            body, parse_error = None, str(exc)
        if isinstance(body, dict) and isinstance(body.get("contact_list"), list):
            # Every call is counted per contact list, even one that fails: repeats stay visible.
            call["fingerprint"] = contact_list_fingerprint(flow_id, body["contact_list"])
            call["num_contacts"] = len(body["contact_list"])
        if self._unauthorized_or_faulted(call, flow_id):
            return
        settings = state.settings
        if uuid.UUID(flow_id) in settings.unknown_flows:
            self._answer(call, 404, {"detail": "Not found."})
            return
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            self._answer(call, 415, {"detail": f'Unsupported media type "{content_type}" in request.'})
            return
        if parse_error is not None:
            self._answer(call, 400, {"detail": f"JSON parse error - {parse_error}"})
            return
        problems = run_request_problems(body)
        call["body_valid"] = not problems
        if problems:
            self._answer(call, 400, drf_errors(problems))
            return
        if uuid.UUID(flow_id) in settings.reject_flows:
            self._answer(call, 400, {"non_field_errors": ["This flow is not published; it cannot be executed."]})
            return
        execution = state.create_execution(call, body)
        self._answer_processed(call, 201, execution)

    def _get_execution(self, call: dict[str, Any], execution_id: str) -> None:
        state = self.server.state
        # The flow's own fault plan applies to the status reads of its executions, if it targets them.
        call["flow_id"] = flow_id = state.flow_of(execution_id)
        if self._unauthorized_or_faulted(call, flow_id, FaultTarget.STATUS):
            return
        detail = state.read_execution(execution_id)
        if detail is None:
            self._answer_processed(call, 404, {"detail": "Not found."})
        else:
            call["execution_status"] = detail["status"]
            self._answer_processed(call, 200, detail)

    def _list(self, call: dict[str, Any], endpoint: str) -> None:
        """List Flow Executions or List Flow Execution Contacts, filtered and paged as Hilos does."""
        state = self.server.state
        query = query_of(self.path)
        # The flow's own fault plan applies to the lookups of its executions, if it targets them.
        if endpoint == EXECUTIONS_LIST:
            flow_id = lenient_uuid(query, "flow")
        else:
            execution_id = lenient_uuid(query, "flow_execution")
            flow_id = lenient_uuid(query, "flow_execution__flow") or (execution_id and state.flow_of(execution_id))
        call["flow_id"] = flow_id
        if self._unauthorized_or_faulted(call, flow_id, FaultTarget.LOOKUP):
            return
        url = self._absolute_url()
        try:
            if endpoint == EXECUTIONS_LIST:
                answer = state.list_executions(uuid_filter(query, "flow"), query.get("page"), url)
            else:
                answer = state.list_contacts(
                    execution_id=uuid_filter(query, "flow_execution"),
                    flow_id=uuid_filter(query, "flow_execution__flow"),
                    is_active=boolean_filter(query, "is_active"),
                    requested_page=query.get("page"),
                    page_size=page_size_of(query, state.settings.list_page_size),
                    url=url,
                )
        except InvalidFilter as invalid:
            self._answer_processed(call, 400, invalid.errors)
        except InvalidPage:
            self._answer_processed(call, 404, {"detail": "Invalid page."})
        else:
            call.update(count=answer["count"], returned=len(answer["results"]))
            self._answer_processed(call, 200, answer)

    def _absolute_url(self) -> str:
        """The request's URL as Django's build_absolute_uri gives it: the Host header, the target as sent."""
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        return f"http://{host}{self.path}"

    def _unauthorized_or_faulted(
        self, call: dict[str, Any], flow_id: str | None, target: FaultTarget = FaultTarget.RUN
    ) -> bool:
        """Gateway-level behaviour, before Hilos looks at the request: latency, the faults that strike before it
        is processed (5xx/429, slow_before, reset_before), auth."""
        state = self.server.state
        settings = state.settings
        if settings.latency_ms:
            self.server.stopping.wait(settings.latency_ms / 1000)
        fault = state.choose_fault(flow_id, target)
        call["fault"] = fault.value if fault in BEFORE_FAULTS else None
        self._deferred_fault = fault if fault not in BEFORE_FAULTS else None
        if fault is FaultKind.RESET_BEFORE:
            self._reset(call)
        elif fault is FaultKind.SLOW_BEFORE:
            # The gateway gives up on an upstream that never got the request: 504, once the client has left.
            detail = {"detail": "Gateway timeout: the request was not processed in time."}
            self._answer(call, 504, detail, delay_seconds=settings.slow_seconds)
        elif fault is FaultKind.SERVER_ERROR:
            self._answer(call, 500, {"detail": "A server error occurred."})
        elif fault is FaultKind.UNAVAILABLE:
            self._answer(call, 503, {"detail": "Service temporarily unavailable, try again later."})
        elif fault is FaultKind.THROTTLED:
            wait = settings.retry_after_seconds
            detail = {"detail": f"Request was throttled. Expected available in {wait} second{'s' * (wait != 1)}."}
            self._answer(call, 429, detail, {"Retry-After": str(wait)})
        elif call["auth_scheme"] == "none":
            self._answer(call, 401, {"detail": "Authentication credentials were not provided."})
        elif not call["auth_ok"]:
            self._answer(call, 401, {"detail": "Invalid token."})
        else:
            return False
        return True

    def _answer_processed(self, call: dict[str, Any], status: int, body: Any) -> None:
        """Answer a request Hilos has processed, unless a fault strikes now: a reset, or the answer comes late."""
        fault, self._deferred_fault = self._deferred_fault, None
        if fault is not None:
            call["fault"] = fault.value
        if fault is FaultKind.RESET:
            self._reset(call)
        else:
            delay = self.server.state.settings.slow_seconds if fault is FaultKind.SLOW else 0
            self._answer(call, status, body, delay_seconds=delay)

    def _auth(self) -> dict[str, Any]:
        # The token itself is never recorded: only the scheme used and whether it was accepted.
        header = self.headers.get("Authorization", "")
        scheme, _, credentials = header.strip().partition(" ")
        accepted = scheme == "Token" and hmac.compare_digest(credentials.strip(), self.server.state.token)
        return {"auth_scheme": scheme or "none", "auth_ok": accepted}

    # -- control ---------------------------------------------------------------------------
    def _control(self, method: str, path: str, raw: bytes) -> None:
        state = self.server.state
        route = (method, path.rstrip("/"))
        if route == ("GET", "/_sandbox/stats"):
            self._send(200, state.snapshot())
        elif route == ("GET", "/_sandbox/faults"):
            self._send(200, state.settings.model_dump(mode="json"))
        elif route == ("POST", "/_sandbox/faults"):
            try:
                changes = json.loads(raw or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError("the body must be a JSON object")
                settings = state.update_settings(changes)
            except ValidationError as exc:
                self._send(400, {"detail": json.loads(exc.json(include_url=False, include_input=False))})
                return
            except ValueError as exc:
                self._send(400, {"detail": str(exc)})
                return
            log.info("hilos  faults set: %s", settings.model_dump_json(exclude_defaults=True))
            self._send(200, settings.model_dump(mode="json"))
        elif route == ("POST", "/_sandbox/reset"):
            state.reset()
            self._send(200, {"reset": True})
        else:
            self._send(404, {"detail": "Not found."})

    # -- I/O -------------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _answer(
        self,
        call: dict[str, Any],
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
        delay_seconds: float = 0,
    ) -> None:
        call["status"] = status
        self.server.state.record(call)  # before a late answer: the stats show what Hilos did, at once
        if delay_seconds:
            self.server.stopping.wait(delay_seconds)
        self._send(status, body, headers)

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True  # the client gave up (a slow answer): nothing to tell it

    def _reset(self, call: dict[str, Any]) -> None:
        """Drop the connection with a TCP reset (SO_LINGER 0) instead of an answer."""
        call["status"] = "reset"
        self.server.state.record(call)
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()


def drf_errors(problems: list[Problem]) -> dict[str, Any]:
    """Schema problems in Django REST framework's shape: {"field": ["message"], "list": [{}, {"f": [...]}]}."""
    tree: dict[str, Any] = {}
    for path, message in problems:
        parts = [str(part) for part in path] or ["non_field_errors"]
        node = tree
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):  # a message at a parent path already: keep both
                child = node[part] = {"non_field_errors": child}
            node = child
        leaf = node.setdefault(parts[-1], [])
        if isinstance(leaf, dict):
            leaf.setdefault("non_field_errors", []).append(message)
        else:
            leaf.append(message)
    return _lists_for_indexes(tree)


def _lists_for_indexes(node: Any) -> Any:
    """{"0": {...}, "2": {...}} -> [{...}, {}, {...}], like DRF's errors for a list of objects."""
    if not isinstance(node, dict):
        return node
    converted = {key: _lists_for_indexes(value) for key, value in node.items()}
    if converted and all(key.isdigit() for key in converted):
        items: list[Any] = [{} for _ in range(max(map(int, converted)) + 1)]
        for key, value in converted.items():
            items[int(key)] = value
        return items
    return converted


class HilosSandbox(ServerThread):
    """The sandbox server on 127.0.0.1 (port 0 = any free port), serving in a background thread."""

    def __init__(self, token: str, settings: SandboxSettings, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = SandboxState(token, settings)
        run_request_problems({})  # load the schema now, not on the first run
        self._server = _SandboxServer((host, port), self.state)
        super().__init__(self._server, "hilos-sandbox")

    @property
    def api_url(self) -> str:
        return self.url + BASE_PATH

    def stop(self) -> None:
        self._server.stopping.set()  # wakes slow answers and latency waits
        super().stop()
