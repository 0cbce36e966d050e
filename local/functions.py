"""The stack's Lambda functions, run locally the way Lambda runs them (what each one is comes from template.yaml,
read by local/template.py: ``FunctionSpec``).

Each invocation runs in an *execution environment*: a child process that imported the handler's
module once (the init phase, a cold start) and then serves one invocation at a time, like Lambda.
Separate processes, not threads in this one, because that is what Lambda isolates: two functions'
environment variables would collide in one ``os.environ``, and Powertools' Logger and Metrics are
process-wide singletons that concurrent invocations would mix up. An invocation that runs past the
function's timeout is stopped and its environment discarded, as Lambda does.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, TextIO

from local.template import FunctionSpec

log = logging.getLogger("local.functions")

# Variables of the caller's shell that a Lambda environment would not have: the function sees only
# what the template (and the local stack) give it in these namespaces.
_NOT_INHERITED_PREFIXES = ("AWS_", "HILOS_", "POWERTOOLS_", "LAMBDA_", "_HANDLER")
_INIT_TIMEOUT_SECONDS = 60


@dataclass
class Invocation:
    """The outcome of one invocation: the handler's return value, or Lambda's error payload."""

    payload: Any = None
    error: dict[str, str] | None = None
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


class FunctionError(RuntimeError):
    """The function could not even start (its init phase failed)."""


# -- inside an execution environment (the child process) ---------------------------------------
class QuietOutput(io.TextIOBase):
    """A function's stdout as ``make dev`` shows it without --function-logs: its log lines (Powertools' JSON) at
    WARNING and above, and whatever is not JSON (a print, a traceback); not its INFO lines nor its metrics (EMF),
    which a status sync writes on every tick."""

    _SHOWN_LEVELS = frozenset({"WARNING", "ERROR", "CRITICAL"})

    def __init__(self, target: TextIO) -> None:
        self._target = target
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            if self._shown(line):
                self._target.write(line + "\n")
        self._target.flush()
        return len(text)

    def _shown(self, line: str) -> bool:
        try:
            record = json.loads(line)
        except ValueError:
            return bool(line.strip())
        return not isinstance(record, dict) or str(record.get("level", "")).upper() in self._SHOWN_LEVELS


def _serve_invocations(connection: Connection, spec: FunctionSpec, quiet: bool) -> None:
    # Ctrl-C in the terminal reaches the whole process group: the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if quiet:  # before the handler's imports: Powertools' Logger keeps the stream it finds then
        sys.stdout = QuietOutput(sys.stdout)
    for name in list(os.environ):
        if name.startswith(_NOT_INHERITED_PREFIXES):
            del os.environ[name]
    os.environ.update(spec.environment)
    sys.path[:0] = [str(spec.code_dir), *map(str, spec.layer_dirs)]
    try:
        handler = getattr(importlib.import_module(spec.handler_module), spec.handler_name)
    except BaseException:
        connection.send(("init_error", traceback.format_exc()))
        return
    connection.send(("ready", None))
    from local.events import LocalLambdaContext

    while True:
        try:
            event = connection.recv()
        except EOFError:  # the parent is gone
            return
        if event is None:
            return
        context = LocalLambdaContext(
            function_name=spec.function_name,
            timeout_seconds=spec.timeout_seconds,
            memory_limit_in_mb=spec.memory_mb,
            log_group_name=f"/aws/lambda/{spec.function_name}",
        )
        try:
            result = handler(event, context)
        except Exception as exc:
            traceback.print_exc()  # Lambda logs the stack trace of an unhandled error
            connection.send(("error", {"errorType": type(exc).__name__, "errorMessage": str(exc)}))
        else:
            connection.send(("ok", result))


# -- in the stack's process --------------------------------------------------------------------
class _ExecutionEnvironment:
    def __init__(self, spec: FunctionSpec, number: int, *, quiet: bool) -> None:
        context = multiprocessing.get_context("spawn")  # never fork a process that runs threads
        self._connection, child_end = context.Pipe()
        self.process = context.Process(
            target=_serve_invocations,
            args=(child_end, spec, quiet),
            name=f"{spec.logical_id}-{number}",
            daemon=True,
        )
        self.process.start()
        child_end.close()
        self._spec = spec

    def wait_ready(self) -> None:
        if not self._connection.poll(_INIT_TIMEOUT_SECONDS):
            self.close()
            raise FunctionError(f"{self._spec.logical_id}: init did not finish in {_INIT_TIMEOUT_SECONDS} s")
        try:
            kind, detail = self._connection.recv()
        except EOFError:
            kind, detail = "init_error", "the process exited"
        if kind != "ready":
            self.close()
            raise FunctionError(f"{self._spec.logical_id}: init failed\n{detail}")

    def invoke(self, event: dict[str, Any]) -> tuple[Invocation, bool]:
        """Run one event; the flag says whether this environment can serve another one."""
        started = time.monotonic()
        try:
            self._connection.send(event)
            if not self._connection.poll(self._spec.timeout_seconds):
                message = f"Task timed out after {self._spec.timeout_seconds:.2f} seconds"
                return Invocation(error={"errorType": "Sandbox.Timedout", "errorMessage": message}), False
            kind, payload = self._connection.recv()
        except (EOFError, OSError):
            error = {"errorType": "Runtime.ExitError", "errorMessage": "the execution environment exited"}
            return Invocation(error=error), False
        finally:
            elapsed = (time.monotonic() - started) * 1000
        if kind == "ok":
            return Invocation(payload=payload, duration_ms=elapsed), True
        return Invocation(error=payload, duration_ms=elapsed), True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._connection.send(None)
        self._connection.close()
        self.process.join(timeout=3)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=3)


class FunctionRuntime:
    """Up to ``max_environments`` execution environments of one function, reused while warm."""

    def __init__(self, spec: FunctionSpec, max_environments: int, *, quiet: bool = False) -> None:
        """``quiet``: only the functions' warnings and errors on the console (QuietOutput)."""
        self.spec = spec
        self._quiet = quiet
        self._slots = threading.BoundedSemaphore(max_environments)
        self._idle: list[_ExecutionEnvironment] = []
        self._all: list[_ExecutionEnvironment] = []
        self._lock = threading.Lock()
        self._created = 0
        self._closed = False

    def start(self) -> None:
        """Start one environment now, so that a broken handler fails the stack's start, not a request."""
        environment = self._new_environment()
        with self._lock:
            self._idle.append(environment)

    def invoke(self, event: dict[str, Any]) -> Invocation:
        with self._slots:
            with self._lock:
                if self._closed:
                    raise FunctionError(f"{self.spec.logical_id} is stopped")
                environment = self._idle.pop() if self._idle else None
            if environment is None:
                environment = self._new_environment()  # a cold start
            invocation, reusable = environment.invoke(event)
            with self._lock:
                if reusable and not self._closed:
                    self._idle.append(environment)
                    return invocation
            self._discard(environment)
            return invocation

    def _new_environment(self) -> _ExecutionEnvironment:
        with self._lock:
            self._created += 1
            environment = _ExecutionEnvironment(self.spec, self._created, quiet=self._quiet)
            self._all.append(environment)
        environment.wait_ready()
        return environment

    def _discard(self, environment: _ExecutionEnvironment) -> None:
        environment.close()
        with self._lock:
            if environment in self._all:
                self._all.remove(environment)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            environments, self._all, self._idle = list(self._all), [], []
        for environment in environments:
            environment.close()
