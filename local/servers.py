"""An HTTP server of the local stack (the front, the Hilos sandbox, the example page) serving in a background
thread on 127.0.0.1: where it listens, and its start and stop."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer


class ServerThread:
    def __init__(self, server: ThreadingHTTPServer, name: str) -> None:
        self.server = server
        self._thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)
