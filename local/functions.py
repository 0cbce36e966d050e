"""The stack's Lambda functions, run locally the way Lambda runs them.

Everything comes from template.yaml, nothing is hard-coded per function: each
``AWS::Serverless::Function`` gives its code directory and handler (CodeUri + Handler), its layers'
directories (what Lambda puts on the path under /opt/python), its timeout and memory, and its
environment (Globals merged with its own, intrinsics resolved), its reserved concurrency. SQS events
on a function become event-source specs (queue, batch size, batching window, partial batch responses)
for the poller; Schedule events become schedule specs (expression, rule, input) for the scheduler.

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
import re
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import unquote

from local.stack_resources import StackResources

log = logging.getLogger("local.functions")

REPO_ROOT = Path(__file__).resolve().parent.parent
SAM_DEFAULT_TIMEOUT_SECONDS = 3
SAM_DEFAULT_MEMORY_MB = 128
# Variables of the caller's shell that a Lambda environment would not have: the function sees only
# what the template (and the local stack) give it in these namespaces.
_NOT_INHERITED_PREFIXES = ("AWS_", "HILOS_", "POWERTOOLS_", "LAMBDA_", "_HANDLER")
_INIT_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    function_name: str
    code_dir: Path
    handler_module: str
    handler_name: str
    layer_dirs: tuple[Path, ...]
    timeout_seconds: float
    memory_mb: int
    environment: dict[str, str] = field(hash=False)
    reserved_concurrency: int | None = None  # ReservedConcurrentExecutions: invocations at once (None: no cap)


@dataclass(frozen=True)
class SqsEventSource:
    """An SQS event of a function: what its event source mapping would do."""

    function_logical_id: str
    queue_logical_id: str
    queue_url: str
    queue_arn: str
    batch_size: int
    batching_window_seconds: float
    report_batch_item_failures: bool
    maximum_concurrency: int | None = None  # ScalingConfig: invocations at once (None: no cap)


def function_specs(stack: StackResources, extra_environment: dict[str, str]) -> dict[str, FunctionSpec]:
    """Every function of the template, with the environment it would have in Lambda plus ``extra_environment``."""
    global_properties = stack.template.get("Globals", {}).get("Function", {})
    specs = {}
    for logical_id, resource in stack.resources_of_type("AWS::Serverless::Function").items():
        own = resource.get("Properties", {})
        properties = {**global_properties, **own}
        module_name, _, handler_name = str(stack.resolve(properties["Handler"])).rpartition(".")
        function_name = f"{stack.stack_name}-{logical_id}"
        timeout = float(stack.resolve(properties.get("Timeout", SAM_DEFAULT_TIMEOUT_SECONDS)))
        memory = int(stack.resolve(properties.get("MemorySize", SAM_DEFAULT_MEMORY_MB)))
        reserved = stack.resolve(properties.get("ReservedConcurrentExecutions"))
        # SAM merges list-valued Globals by concatenation: global layers first.
        layers = [*global_properties.get("Layers", []), *own.get("Layers", [])]
        code_dir = REPO_ROOT / str(stack.resolve(properties["CodeUri"]))
        environment = {
            **stack.function_environment(logical_id),
            "AWS_LAMBDA_FUNCTION_NAME": function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "LAMBDA_TASK_ROOT": str(code_dir),
            "_HANDLER": str(properties["Handler"]),
            **extra_environment,
        }
        specs[logical_id] = FunctionSpec(
            logical_id=logical_id,
            function_name=function_name,
            code_dir=code_dir,
            handler_module=module_name,
            handler_name=handler_name,
            layer_dirs=tuple(_layer_dirs(stack, layers)),
            timeout_seconds=timeout,
            memory_mb=memory,
            environment=environment,
            reserved_concurrency=int(reserved) if reserved is not None else None,
        )
    return specs


def _layer_dirs(stack: StackResources, layers: list[Any]) -> list[Path]:
    directories = []
    for layer in layers:
        reference = layer.get("Ref") if isinstance(layer, dict) else None
        resource = stack.template["Resources"].get(reference or "", {})
        if resource.get("Type") == "AWS::Serverless::LayerVersion":
            directories.append(REPO_ROOT / str(stack.resolve(resource["Properties"]["ContentUri"])))
        else:
            # A published layer (an ARN): locally its packages come from the virtualenv.
            log.warning("layer %s is not built from this repository; using the virtualenv instead", layer)
    return directories


def sqs_event_sources(stack: StackResources) -> list[SqsEventSource]:
    """The SQS events of every function, with the queue resolved to its URL and ARN."""
    queue_ids_by_arn = {arn: logical_id for (logical_id, name), arn in stack.attributes.items() if name == "Arn"}
    sources = []
    for logical_id, resource in stack.resources_of_type("AWS::Serverless::Function").items():
        for event in resource.get("Properties", {}).get("Events", {}).values():
            if event.get("Type") != "SQS":
                continue
            properties = event.get("Properties", {})
            queue_arn = str(stack.resolve(properties["Queue"]))
            scaling = stack.resolve(properties.get("ScalingConfig")) or {}
            queue_id = queue_ids_by_arn[queue_arn]
            sources.append(
                SqsEventSource(
                    function_logical_id=logical_id,
                    queue_logical_id=queue_id,
                    queue_url=stack.physical_ids[queue_id],
                    queue_arn=queue_arn,
                    batch_size=int(stack.resolve(properties.get("BatchSize", 10))),
                    batching_window_seconds=float(stack.resolve(properties.get("MaximumBatchingWindowInSeconds", 0))),
                    report_batch_item_failures="ReportBatchItemFailures"
                    in (stack.resolve(properties.get("FunctionResponseTypes")) or []),
                    maximum_concurrency=int(scaling["MaximumConcurrency"]) if "MaximumConcurrency" in scaling else None,
                )
            )
    return sources


@dataclass(frozen=True)
class ScheduleSource:
    """A Schedule event of a function: the EventBridge rule SAM makes of it."""

    function_logical_id: str
    event_name: str
    expression: str  # rate(...) or cron(...)
    rule_name: str
    enabled: bool
    input: str | None = None  # the event's Input: sent instead of the Scheduled Event when set


def schedule_sources(stack: StackResources) -> list[ScheduleSource]:
    """The Schedule events of every function. The rule's name is SAM's logical id of it (function + event)
    under the stack's name, unless the event names it."""
    sources = []
    for logical_id, resource in stack.resources_of_type("AWS::Serverless::Function").items():
        for event_name, event in resource.get("Properties", {}).get("Events", {}).items():
            if event.get("Type") == "ScheduleV2":
                log.warning("%s.%s: ScheduleV2 (EventBridge Scheduler) is not run locally", logical_id, event_name)
            if event.get("Type") != "Schedule":
                continue
            properties = stack.resolve(event.get("Properties", {}))
            state = str(properties.get("State", "ENABLED")).upper()
            sources.append(
                ScheduleSource(
                    function_logical_id=logical_id,
                    event_name=event_name,
                    expression=str(properties["Schedule"]).strip(),
                    rule_name=str(properties.get("Name") or f"{stack.stack_name}-{logical_id}{event_name}"),
                    enabled=str(properties.get("Enabled", True)).lower() != "false" and state == "ENABLED",
                    input=properties.get("Input"),
                )
            )
    return sources


@dataclass(frozen=True)
class HttpRoute:
    """An HttpApi event of a function: API Gateway's route, matched like API Gateway matches it."""

    function_logical_id: str
    method: str  # "ANY" or an upper-case method
    path: str  # e.g. /flows/{flow_id}/runs, /{proxy+}
    authorizer: str | None = "JwtAuthorizer"  # None: open to anyone (SAM's Authorizer: NONE)

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """The path parameters when ``method path`` takes this route, else None."""
        if self.method not in ("ANY", method.upper()):
            return None
        parts = []
        for segment in self.path.strip("/").split("/"):
            parameter = re.fullmatch(r"\{(\w+)(\+?)\}", segment)
            if parameter is None:
                parts.append(re.escape(segment))
            else:  # {name} is one segment, {name+} the rest of the path
                parts.append(f"(?P<{parameter[1]}>{'.+' if parameter[2] else '[^/]+'})")
        pattern = "/" + "/".join(parts)
        found = re.fullmatch(pattern, path)
        return {name: unquote(value) for name, value in found.groupdict().items()} if found else None


def http_routes(stack: StackResources) -> list[HttpRoute]:
    """Every HttpApi route of the template; literal paths before templated ones, as API Gateway prefers.

    A route's authorizer is, as SAM decides it: the ``security`` its operation has in the API's
    ``DefinitionBody`` (intrinsics resolved: a parameter may open or close it), else the event's
    ``Auth.Authorizer``, else the API's ``DefaultAuthorizer``; ``NONE`` means open.
    """
    routes = []
    for logical_id, resource in stack.resources_of_type("AWS::Serverless::Function").items():
        for event in resource.get("Properties", {}).get("Events", {}).values():
            if event.get("Type") == "HttpApi":
                properties = event.get("Properties", {})
                method = str(stack.resolve(properties.get("Method", "ANY"))).upper()
                path = str(stack.resolve(properties.get("Path", "/{proxy+}")))
                authorizer = _route_authorizer(stack, properties, method, path)
                routes.append(HttpRoute(logical_id, method, path, None if authorizer == "NONE" else authorizer))
    return sorted(routes, key=lambda route: (route.path.count("{"), route.method == "ANY", -len(route.path)))


def _route_authorizer(stack: StackResources, event: dict[str, Any], method: str, path: str) -> str | None:
    api = stack.template["Resources"].get(str((event.get("ApiId") or {}).get("Ref", "")), {}).get("Properties", {})
    operation = (api.get("DefinitionBody") or {}).get("paths", {}).get(path, {}).get(method.lower())
    security = (stack.resolve(operation) or {}).get("security") if operation else None
    if security:
        return str(next(iter(security[0])))
    default = (api.get("Auth") or {}).get("DefaultAuthorizer")
    return (event.get("Auth") or {}).get("Authorizer", default)


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
