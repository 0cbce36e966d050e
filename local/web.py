"""The example web page (examples/web/) served as a frontend developer would serve it: plain files, from
its own origin (the first of the template's allowed CORS origins, http://localhost:5173 by default), calling
the API across origins.

Besides the files, ``config.json`` tells the page where the API is. It never holds a token: the person
using the page pastes one (locally the stack's, printed at start; deployed, a Cognito or OIDC access token).
"""

from __future__ import annotations

import json
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from local.servers import ServerThread
from local.template import REPO_ROOT

WEB_ROOT = REPO_ROOT / "examples" / "web"
_LOCAL_HOSTS = ("localhost", "127.0.0.1")


def local_origin_port(origin: str) -> int | None:
    """The port of an ``http://localhost:N`` (or 127.0.0.1) origin, which this machine can serve; else None."""
    parts = urlsplit(origin)
    if parts.scheme != "http" or parts.hostname not in _LOCAL_HOSTS:
        return None
    return parts.port or 80


class _PageHandler(SimpleHTTPRequestHandler):
    config_json: bytes = b"{}"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the page's requests are not the API's; the console stays for the stack

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == "/config.json":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(self.config_json)))
            self.end_headers()
            self.wfile.write(self.config_json)
            return
        super().do_GET()

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")  # edits to the page show on reload
        super().end_headers()


class WebPage(ServerThread):
    """A static server of ``root`` on 127.0.0.1:``port`` (0 = any free port), in a background thread."""

    def __init__(self, api_url: str, *, port: int, root: Path = WEB_ROOT) -> None:
        handler = type("PageHandler", (_PageHandler,), {"config_json": json.dumps({"api_url": api_url}).encode()})
        server = ThreadingHTTPServer(("127.0.0.1", port), partial(handler, directory=str(root)))
        server.daemon_threads = True
        super().__init__(server, "web-page")

    def page_url(self, host: str = "localhost") -> str:
        return f"http://{host}:{self.port}/"
