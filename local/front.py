"""The local HTTP front: what API Gateway (HTTP API, payload 2.0, Lambda proxy) does in front of run_api.

Each request becomes the event API Gateway would send (local.events.http_api_event), the function
runs in its execution environment, and its answer (status, headers, cookies, body, base64) becomes
the HTTP answer. Like the deployed JWT authorizer, the front refuses requests without the right
``Authorization: Bearer <token>`` before the function runs: 401, in the project's one error shape; a route
the template opens (``Authorizer: NONE``, e.g. the API docs) runs without one. CORS is the template's
``CorsConfiguration`` applied as API Gateway applies it (local.cors): preflights answered here, before routes
and auth, and ``Access-Control-Allow-Origin`` added to every answer to an allowed origin.
A function error or timeout is answered like API Gateway does: 500 ``{"message": "Internal Server Error"}``;
a route or method it does not serve (TRACE included): 404 ``{"message": "Not Found"}``. What the HTTP server
refuses before any route is matched (a URL over 65,536 bytes: 414, a header too large: 431, a malformed
request: 400) is answered in the one error shape, ``{"code", "message", "details"}``.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from hilos_runner.api import JSON_CONTENT_TYPE, error_body
from local.cors import CorsPolicy, without_cors_headers
from local.events import http_api_event
from local.functions import Invocation
from local.servers import ServerThread
from local.template import HttpRoute

log = logging.getLogger("local.front")

# What the JWT authorizer hands the function about the caller; the local token stands for one user.
LOCAL_CLAIMS = {"sub": "local-developer", "iss": "hilos-runner-local", "token_use": "access"}
_MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit

FunctionInvoker = Callable[[str, dict[str, Any]], Invocation]  # (function logical id, event) -> outcome


class _FrontServer(ThreadingHTTPServer):
    daemon_threads = True  # idle keep-alive connections must not hold up shutdown

    def __init__(
        self,
        address: tuple[str, int],
        token: str,
        routes: list[HttpRoute],
        invoke: FunctionInvoker,
        cors: CorsPolicy | None,
    ) -> None:
        super().__init__(address, _FrontHandler)
        self.token = token
        self.routes = routes
        self.invoke = invoke
        self.cors = cors


class _FrontHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _FrontServer
    timeout = 120  # an idle keep-alive connection is dropped after this

    def log_message(self, format: str, *args: Any) -> None:
        pass  # _handle logs one line per request

    def __getattr__(self, name: str) -> Any:
        # Every method (GET, POST, ..., HEAD, TRACE, QUERY): matched against the routes alike, so a method no
        # route has is 404 {"message": "Not Found"}, as API Gateway answers, not the HTTP server's 501 page.
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The HTTP server's own refusals (a request line or header too long, a malformed request, a method
        it has no handler for) in the one error shape, not its HTML page."""
        reason = message or self.responses.get(code, ("error",))[0]
        codes = {414: "uri_too_long", 431: "headers_too_large", 501: "method_not_implemented"}
        body = error_body(codes.get(code, "bad_request"), reason, [{"field": "", "reason": explain or reason}])
        self.close_connection = True
        self._send(code, {"Content-Type": JSON_CONTENT_TYPE}, body.encode())

    def _handle(self) -> None:
        started = time.monotonic()
        status = self._answer_request()
        elapsed_ms = (time.monotonic() - started) * 1000
        log.info("api    %s %s %s %.0f ms", self.command, urlsplit(self.path).path, status, elapsed_ms)

    def _answer_request(self) -> int:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY_BYTES:
            self.close_connection = True  # the body is not read: the connection cannot be reused
            return self._send(413, {"Content-Type": "application/json"}, b'{"message":"Request Entity Too Large"}')
        body = self.rfile.read(length) if length else None
        url = urlsplit(self.path)
        cors = self.server.cors
        if cors is not None and cors.is_preflight(self.command, self.headers.keys()):
            # API Gateway answers a preflight itself, for any path, before routes and the authorizer.
            return self._send(204, cors.preflight_headers(self.headers.get("Origin")), b"", preflight=True)
        route, path_parameters = self._route(url.path)
        if route is None:
            return self._send(404, {"Content-Type": "application/json"}, b'{"message":"Not Found"}')
        if route.authorizer is not None and not self._authorized():
            answer = error_body("unauthorized", "a valid 'Authorization: Bearer <token>' header is required")
            challenge = {"Content-Type": JSON_CONTENT_TYPE, "WWW-Authenticate": 'Bearer realm="hilos-runner-local"'}
            return self._send(401, challenge, answer.encode())
        headers: dict[str, str] = {}
        for name, value in self.headers.items():  # repeated headers are joined, as API Gateway does
            key = name.lower()
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        headers["x-forwarded-proto"] = "http"  # set by API Gateway (https there): the API answers absolute URLs
        event = http_api_event(
            self.command,
            url.path,
            body=body,
            headers=headers,
            raw_query=url.query,
            jwt_claims=LOCAL_CLAIMS,
            source_ip=self.client_address[0],
        )
        event["routeKey"] = event["requestContext"]["routeKey"] = route.route_key
        if path_parameters:
            event["pathParameters"] = path_parameters
        invocation = self.server.invoke(route.function_logical_id, event)
        if not invocation.ok:
            log.error("api    function error: %s", json.dumps(invocation.error))
            return self._send(500, {"Content-Type": "application/json"}, b'{"message":"Internal Server Error"}')
        return self._send_function_answer(invocation.payload)

    def _route(self, path: str) -> tuple[HttpRoute | None, dict[str, str]]:
        # API Gateway matches the route first: an unknown route is 404 whoever asks.
        for route in self.server.routes:
            parameters = route.match(self.command, path)
            if parameters is not None:
                return route, parameters
        return None, {}

    def _authorized(self) -> bool:
        scheme, _, token = self.headers.get("Authorization", "").strip().partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.server.token.encode())

    def _send_function_answer(self, answer: Any) -> int:
        if not (isinstance(answer, dict) and "statusCode" in answer):
            # Payload 2.0: anything else is taken as a JSON body with status 200.
            return self._send(200, {"Content-Type": "application/json"}, json.dumps(answer).encode())
        raw_body = answer.get("body") or ""
        body = base64.b64decode(raw_body) if answer.get("isBase64Encoded") else str(raw_body).encode()
        headers = {str(name): str(value) for name, value in (answer.get("headers") or {}).items()}
        for name, values in (answer.get("multiValueHeaders") or {}).items():
            headers[str(name)] = ",".join(map(str, values))
        return self._send(int(answer["statusCode"]), headers, body, cookies=answer.get("cookies") or [])

    def _send(
        self,
        status: int,
        headers: dict[str, str],
        body: bytes,
        cookies: list[str] | None = None,
        *,
        preflight: bool = False,
    ) -> int:
        cors = self.server.cors
        if cors is not None and not preflight:
            # The gateway's CORS headers replace the function's own, on every answer (401 and 404 included). A
            # request the HTTP server refused before reading its headers (414, 431) has no Origin to answer.
            request_headers = getattr(self, "headers", None)
            origin = request_headers.get("Origin") if request_headers is not None else None
            headers = without_cors_headers(headers) | cors.response_headers(origin)
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        for cookie in cookies or []:
            self.send_header("Set-Cookie", cookie)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return status


class HttpFront(ServerThread):
    """The front's server on 127.0.0.1 (port 0 = any free port), serving in a background thread."""

    def __init__(
        self,
        token: str,
        routes: list[HttpRoute],
        invoke: FunctionInvoker,
        *,
        cors: CorsPolicy | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(_FrontServer((host, port), token, routes, invoke, cors), "http-front")
