"""The local stack: moto (or AWS_ENDPOINT_URL), the Hilos sandbox (or HILOS_API_URL), the functions of
template.yaml in Lambda-like execution environments, the HTTP front, the SQS pollers, the schedules, and a
queue that shows the completion events the functions put on their EventBridge bus.

``LocalStack.start()`` brings everything up on 127.0.0.1 and writes ``<state dir>/stack.json`` last,
so that its presence means "ready"; ``stop()`` takes down whatever was started, in reverse order,
and removes stack.json. Both are safe to call after a partial start.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import secrets
import shlex
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from local.cors import CorsPolicy, cors_policy
from local.events import REGION
from local.functions import FunctionRuntime, Invocation
from local.ports import Listener, problems_before_start, running_stack_pid
from local.sandbox_settings import DEFAULT_FAULT_MIX, FaultKind, Progression, SandboxSettings
from local.scheduler import ScheduleRunner, UnsupportedSchedule, rate_seconds
from local.stack_resources import CompletionEventsQueue, create_completion_events_queue, create_stack_resources
from local.template import (
    FunctionSpec,
    HttpRoute,
    ScheduleSource,
    SqsEventSource,
    StackResources,
    function_specs,
    http_routes,
    load_template,
    schedule_sources,
    sqs_event_sources,
)

log = logging.getLogger("local")

STACK_FILE = "stack.json"
STACK_NAME = "hilos-runner-local"
# Local fake credentials: moto accepts any; they are what the printed `aws` command uses too.
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
_AWS_CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")
# With the sandbox, a slow answer should cost seconds, not the deployed 20 s.
SANDBOX_READ_TIMEOUT_SECONDS = 2.0
SAMPLE_FLOW_ID = "a3ff7ee5-0c11-49e2-a0d6-7e316626f7b1"
# Locally a schedule fires every few seconds, so a started run is seen finishing within the tour.
DEFAULT_SYNC_INTERVAL_SECONDS = 5.0


@dataclass
class LocalConfig:
    """What `python -m local` is told by its flags and the environment (see local/__main__.py)."""

    api_port: int = 3000
    sandbox_port: int = 4010
    moto_port: int = 5005
    web_port: int | None = None  # the example page; None: the port of the first allowed CORS origin
    state_dir: Path = Path(".local")
    visibility_timeout: int | None = None  # None: the template's
    concurrency: int = 4
    pollers: int | None = None  # None: the event's ScalingConfig.MaximumConcurrency, else 1
    parameters: dict[str, str] = field(default_factory=dict)  # template parameter overrides
    hilos_read_timeout: float | None = None  # None: SANDBOX_READ_TIMEOUT_SECONDS with the sandbox
    fault_rate: float = 0.0
    fault_mix: dict[FaultKind, float] = field(default_factory=lambda: dict(DEFAULT_FAULT_MIX))
    latency_ms: int = 0
    retry_after_seconds: int = 1
    progression: Progression = Progression.TIME
    stage_seconds: dict[str, float] | None = None  # None: the sandbox's defaults
    function_logs: bool = False  # every line the functions write (else their warnings and errors only)
    # Seconds between the firings of every Schedule event; None: the template's rate(...).
    sync_interval: float | None = DEFAULT_SYNC_INTERVAL_SECONDS
    # Real services, from the environment.
    hilos_api_url: str | None = None
    hilos_token: str | None = None
    hilos_run_path: str | None = None
    aws_endpoint_url: str | None = None

    @classmethod
    def from_environment(cls, environ: dict[str, str], **flags: Any) -> LocalConfig:
        return cls(
            hilos_api_url=environ.get("HILOS_API_URL") or None,
            hilos_token=environ.get("HILOS_TOKEN") or None,
            hilos_run_path=environ.get("HILOS_RUN_PATH") or None,
            aws_endpoint_url=environ.get("AWS_ENDPOINT_URL") or None,
            **flags,
        )


class _BackgroundWorker(Protocol):
    """A loop on its own thread (SqsPoller, ScheduleRunner)."""

    def start(self) -> None: ...
    def request_stop(self) -> None: ...
    def join(self) -> None: ...


class ConfigurationProblem(Exception):
    """The local stack cannot start as configured; the message says what to do."""


class _EndpointSession:
    """A boto3 session whose clients all talk to one endpoint (moto, or AWS_ENDPOINT_URL)."""

    def __init__(self, endpoint_url: str, region: str, credentials: dict[str, str]) -> None:
        import boto3

        self._endpoint_url = endpoint_url
        self._session = boto3.session.Session(
            region_name=region,
            aws_access_key_id=credentials.get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=credentials.get("AWS_SECRET_ACCESS_KEY"),
            aws_session_token=credentials.get("AWS_SESSION_TOKEN"),
            profile_name=credentials.get("AWS_PROFILE"),
        )

    def client(self, service: str, **kwargs: Any) -> Any:
        return self._session.client(service, endpoint_url=self._endpoint_url, **kwargs)


class LocalStack:
    def __init__(self, config: LocalConfig) -> None:
        self.config = config
        self.api_token = secrets.token_urlsafe(24)
        self.info: dict[str, Any] = {}
        self._stoppers: list[tuple[str, Callable[[], None]]] = []
        self._runtimes: dict[str, FunctionRuntime] = {}
        self._stop_lock = threading.Lock()

    # -- start -------------------------------------------------------------------------------
    def start(self) -> float:
        """Start everything; returns the seconds it took."""
        started = time.monotonic()
        config = self.config
        if config.hilos_api_url and not config.hilos_token:
            raise ConfigurationProblem(
                "HILOS_API_URL is set, so the Hilos token must come from HILOS_TOKEN (it goes into the local "
                "secret and is never printed): `read -rs HILOS_TOKEN && export HILOS_TOKEN`, then start again"
            )
        template = load_template()
        check_parameters(template, config.parameters)
        # The CORS policy (the front answers with it; the page is served on its first origin) needs only parameters.
        cors = cors_policy(StackResources.with_defaults(template, STACK_NAME, config.parameters))
        self._check_before_start(cors)
        aws_endpoint, region, credentials = self._start_aws()
        hilos_url, hilos_token, sandbox_url = self._start_hilos()
        parameters = {**config.parameters, "HilosApiUrl": hilos_url}
        if config.hilos_run_path:
            parameters["HilosRunPath"] = config.hilos_run_path
        session = _EndpointSession(aws_endpoint, region, credentials)
        check_parameters(template, parameters)
        stack = create_stack_resources(
            session, hilos_token=hilos_token, stack_name=STACK_NAME, parameters=parameters, template=template
        )
        sources = sqs_event_sources(stack)
        sqs = session.client("sqs")
        self._override_visibility(sqs, sources)
        schedules = self._schedule_intervals(schedule_sources(stack))
        completion_events = self._create_completion_events_queue(session, stack)

        function_environment = {
            "AWS_ENDPOINT_URL": aws_endpoint,
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            **credentials,
            "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon locally
            **self._settings_environment(stack, sandbox=sandbox_url is not None),
        }
        specs = function_specs(stack, function_environment)
        self._start_functions(specs)
        routes = http_routes(stack)
        api_url = self._start_front(routes, cors)
        web_url = self._start_web_page(cors, api_url)
        self._start_pollers(session, sources)
        self._start_schedules(schedules, region)
        schedule_groups = self._start_one_time_schedules(session, stack)
        elapsed = time.monotonic() - started
        endpoints = {
            "api_url": api_url,
            "web_url": web_url,
            "docs_need_token": any(route.path == "/swagger" and route.authorizer for route in routes),
            "hilos_url": hilos_url,
            "sandbox_url": sandbox_url,
            "aws_endpoint_url": aws_endpoint,
            "aws_region": region,
            "moto": not config.aws_endpoint_url,  # started by this stack (else AWS_ENDPOINT_URL's)
            # moto's fake ones, so that a tool (hilos-runner) reaches it without any AWS configuration
            "aws_credentials": None if config.aws_endpoint_url else _boto3_credentials(FAKE_CREDENTIALS),
        }
        self.info = {
            **self._describe(stack, sources, specs, endpoints),
            **_describe_events(completion_events, schedules, region),
            "schedule_groups": schedule_groups,
            "startup_seconds": round(elapsed, 2),
        }
        self._write_stack_file()
        return elapsed

    def _check_before_start(self, cors: CorsPolicy | None) -> None:
        """Refuse at once, before anything starts, when a port is busy or another live stack holds the state folder."""
        config = self.config
        listeners = [Listener("the HTTP front", "--api-port", config.api_port)]
        if not config.hilos_api_url:
            listeners.append(Listener("the Hilos sandbox", "--sandbox-port", config.sandbox_port))
        if not config.aws_endpoint_url:
            listeners.append(Listener("moto, the local AWS", "--moto-port", config.moto_port))
        web_port = self._web_port(cors)
        if web_port is not None:
            listeners.append(Listener("the example page", "--web-port", web_port))
        problems = problems_before_start(listeners, config.state_dir / STACK_FILE)
        if problems:
            raise ConfigurationProblem("cannot start:\n  " + "\n  ".join(problems))

    def _web_port(self, policy: CorsPolicy | None) -> int | None:
        """--web-port, else the port of the first allowed origin when it is on this machine (5173), else None."""
        from local.web import local_origin_port

        if self.config.web_port is not None:
            return self.config.web_port
        origin = _first_origin(policy)
        return local_origin_port(origin) if origin else None

    def _start_aws(self) -> tuple[str, str, dict[str, str]]:
        if self.config.aws_endpoint_url:
            region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or REGION
            credentials = {name: os.environ[name] for name in _AWS_CREDENTIAL_VARIABLES if name in os.environ}
            return self.config.aws_endpoint_url, region, credentials or dict(FAKE_CREDENTIALS)
        from moto.server import ThreadedMotoServer

        # moto logs every request through werkzeug; the pollers' long polls would flood the console.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.config.moto_port, verbose=False)
        server.start()
        self._stoppers.append(("moto", server.stop))
        host, port = server.get_host_and_port()
        return f"http://{host}:{port}", REGION, dict(FAKE_CREDENTIALS)

    def _start_hilos(self) -> tuple[str, str, str | None]:
        """(Hilos base URL, the token for the secret, the sandbox URL or None)."""
        config = self.config
        if config.hilos_api_url:
            return config.hilos_api_url.rstrip("/"), str(config.hilos_token), None
        from local.sandbox import HilosSandbox

        token = f"sandbox-{secrets.token_urlsafe(18)}"  # a fresh one per start; only the secret holds it
        settings = SandboxSettings(
            rate=config.fault_rate,
            mix=config.fault_mix,
            latency_ms=config.latency_ms,
            retry_after_seconds=config.retry_after_seconds,
            # Answer "slow" faults after the functions' read timeout, so they really time out.
            slow_seconds=self._read_timeout(sandbox=True) + 1,
            progression=config.progression,
            **({"stage_seconds": config.stage_seconds} if config.stage_seconds is not None else {}),
        )
        try:
            sandbox = HilosSandbox(token, settings, port=config.sandbox_port)
        except OSError as problem:  # taken since the check before the start
            raise _port_problem(config.sandbox_port, "--sandbox-port", problem) from None
        sandbox.start()
        self._stoppers.append(("sandbox", sandbox.stop))
        return sandbox.api_url, token, sandbox.url

    def _read_timeout(self, *, sandbox: bool) -> float:
        if self.config.hilos_read_timeout is not None:
            return self.config.hilos_read_timeout
        from_environment = os.environ.get("HILOS_READ_TIMEOUT_SECONDS")
        if from_environment:
            return float(from_environment)
        if sandbox:
            return SANDBOX_READ_TIMEOUT_SECONDS
        from hilos_runner.settings import Settings

        return Settings().hilos_read_timeout_seconds

    def _settings_environment(self, stack: StackResources, *, sandbox: bool) -> dict[str, str]:
        """Function settings exported in this shell that the template does not set (HILOS_CONNECT_RETRIES, ...),
        the local read timeouts, and the local status sync intervals."""
        from hilos_runner.settings import Settings

        set_by_template = {
            name
            for logical_id in stack.resources_of_type("AWS::Serverless::Function")
            for name in stack.function_environment(logical_id)
        }
        variables = {
            name.upper(): os.environ[name.upper()]
            for name in Settings.model_fields
            if name.upper() in os.environ and name.upper() not in set_by_template
        }
        read_timeout = self._read_timeout(sandbox=sandbox)
        variables["HILOS_READ_TIMEOUT_SECONDS"] = f"{read_timeout:g}"
        if sandbox and "hilos_status_read_timeout_seconds" in Settings.model_fields:
            # The sandbox answers "slow" faults just after the read timeout: status reads time out on them too.
            variables.setdefault("HILOS_STATUS_READ_TIMEOUT_SECONDS", f"{min(read_timeout, 60):g}")
        if "schedule_min_lead_seconds" in Settings.model_fields and "SCHEDULE_MIN_LEAD_SECONDS" not in set_by_template:
            # Every scheduled run through a schedule, however soon: the local one fires to the second, not the minute.
            variables.setdefault("SCHEDULE_MIN_LEAD_SECONDS", "0")
        if self.config.sync_interval is not None:
            # With the local tick, every tick reads every started run (deployed: 60 s after the last read at
            # the earliest, backing off to an hour), so a run is seen moving within seconds.
            local_sync = {
                "STATUS_SYNC_MIN_INTERVAL_SECONDS": "0",
                "STATUS_SYNC_MAX_INTERVAL_SECONDS": str(max(1, math.ceil(self.config.sync_interval))),
            }
            for name, value in local_sync.items():
                if name.lower() in Settings.model_fields and name not in set_by_template:
                    variables.setdefault(name, value)
        return variables

    def _override_visibility(self, sqs: Any, sources: list[SqsEventSource]) -> None:
        if self.config.visibility_timeout is None:
            return
        for source in sources:
            sqs.set_queue_attributes(
                QueueUrl=source.queue_url, Attributes={"VisibilityTimeout": str(self.config.visibility_timeout)}
            )

    def _schedule_intervals(self, sources: list[ScheduleSource]) -> list[tuple[ScheduleSource, float]]:
        """The enabled schedules with their local interval (checked before anything runs)."""
        schedules = []
        for source in sources:
            if not source.enabled:
                log.info("schedule  %s.%s is disabled in the template", source.function_logical_id, source.event_name)
                continue
            try:
                interval = self.config.sync_interval or rate_seconds(source.expression)
            except UnsupportedSchedule as problem:
                raise ConfigurationProblem(f"{source.function_logical_id}.{source.event_name}: {problem}") from None
            schedules.append((source, interval))
        return schedules

    def _create_completion_events_queue(
        self, session: _EndpointSession, stack: StackResources
    ) -> list[CompletionEventsQueue]:
        """A queue that receives the completion events of every bus the functions are told to use."""
        buses = sorted(
            {
                environment["COMPLETION_EVENT_BUS_NAME"]
                for logical_id in stack.resources_of_type("AWS::Serverless::Function")
                if "COMPLETION_EVENT_BUS_NAME" in (environment := stack.function_environment(logical_id))
            }
        )
        return [create_completion_events_queue(session, stack.stack_name, bus) for bus in buses]

    def _start_functions(self, specs: dict[str, FunctionSpec]) -> None:
        for logical_id, spec in specs.items():
            # ReservedConcurrentExecutions caps the environments (0, "never run", is not modelled).
            environments = min(self.config.concurrency, spec.reserved_concurrency or self.config.concurrency)
            self._runtimes[logical_id] = FunctionRuntime(spec, environments, quiet=not self.config.function_logs)
        self._stoppers.append(("functions", self._close_runtimes))
        # Init phases in parallel: each is a Python start plus the handler's imports.
        with ThreadPoolExecutor(max_workers=max(1, len(specs))) as pool:
            for future in [pool.submit(runtime.start) for runtime in self._runtimes.values()]:
                future.result()

    def _close_runtimes(self) -> None:
        for runtime in self._runtimes.values():
            runtime.close()

    def invoke(self, logical_id: str, event: dict[str, Any]) -> Invocation:
        return self._runtimes[logical_id].invoke(event)

    def _start_front(self, routes: list[HttpRoute], cors: CorsPolicy | None) -> str:
        from local.front import HttpFront

        try:
            front = HttpFront(self.api_token, routes, self.invoke, cors=cors, port=self.config.api_port)
        except OSError as problem:  # taken since the check before the start
            raise _port_problem(self.config.api_port, "--api-port", problem) from None
        front.start()
        self._stoppers.append(("http front", front.stop))
        return front.url

    def _start_web_page(self, policy: CorsPolicy | None, api_url: str) -> str | None:
        """examples/web/ on the first allowed origin (http://localhost:5173 by default), or on --web-port."""
        from local.web import WebPage, local_origin_port

        origin = _first_origin(policy)
        port = self._web_port(policy)
        if port is None:
            log.info("web page: the first allowed origin (%s) is not on this machine; --web-port serves it", origin)
            return None
        try:
            page = WebPage(api_url, port=port)
        except OSError as problem:
            raise ConfigurationProblem(
                f"the example page cannot be served on port {port} ({problem.strerror}): --web-port 0 picks a free "
                "one (then add its origin to CorsAllowedOrigins with --parameter-overrides)"
            ) from None
        page.start()
        self._stoppers.append(("web page", page.stop))
        host = urlsplit(origin).hostname if origin and local_origin_port(origin) == page.port else "localhost"
        url = page.page_url(host or "localhost")
        if not (policy and policy.allows(url.rstrip("/"))):
            log.warning("web page: %s is not an allowed CORS origin, so its calls to the API are blocked", url)
        return url

    def _start_pollers(self, session: _EndpointSession, sources: list[SqsEventSource]) -> None:
        from local.poller import SqsPoller

        pollers = []
        for source in sources:
            # The mapping runs at most MaximumConcurrency invocations at once: one poller each.
            count = self.config.pollers or source.maximum_concurrency or 1
            for number in range(count):
                # Each poller gets its own client: a long poll holds a connection.
                poller = SqsPoller(
                    session.client("sqs"),
                    source,
                    functools.partial(self.invoke, source.function_logical_id),
                    name=f"poller-{source.queue_logical_id}-{number}",
                )
                pollers.append(poller)
        self._start_background("pollers", pollers)

    def _start_schedules(self, schedules: list[tuple[ScheduleSource, float]], region: str) -> None:
        runners = [
            ScheduleRunner(source, functools.partial(self.invoke, source.function_logical_id), interval, region=region)
            for source, interval in schedules
        ]
        self._start_background("schedules", runners)

    def _start_one_time_schedules(self, session: _EndpointSession, stack: StackResources) -> list[str]:
        """Scheduled runs: fire the one-time schedules the functions create at their time (moto keeps them but never
        fires them)."""
        from local.schedules import OneTimeSchedules

        groups = [
            stack.physical_ids[logical_id] for logical_id in stack.resources_of_type("AWS::Scheduler::ScheduleGroup")
        ]
        if groups:
            self._start_background(
                "one-time schedules", [OneTimeSchedules(session.client("scheduler"), session.client("sqs"), groups)]
            )
        return groups

    def _start_background(self, name: str, workers: Sequence[_BackgroundWorker]) -> None:
        """Start background loops (pollers, schedules) and register their stop: every one is asked to stop
        first, then each is joined, so they wind down together instead of one after the other."""
        for worker in workers:
            worker.start()

        def stop_all() -> None:
            for worker in workers:
                worker.request_stop()
            for worker in workers:
                worker.join()

        self._stoppers.append((name, stop_all))

    # -- what scripts and people are told ---------------------------------------------------
    def _describe(
        self,
        stack: StackResources,
        sources: list[SqsEventSource],
        specs: dict[str, FunctionSpec],
        endpoints: dict[str, Any],
    ) -> dict[str, Any]:
        def physical_ids(resource_type: str) -> dict[str, str]:
            return {logical_id: stack.physical_ids[logical_id] for logical_id in stack.resources_of_type(resource_type)}

        tables = physical_ids("AWS::DynamoDB::Table")
        source = sources[0] if sources else None
        return {
            "api_url": endpoints["api_url"],
            "api_token": self.api_token,
            "web_url": endpoints["web_url"],
            "queue_url": source.queue_url if source else None,
            "dlq_url": _dead_letter_queue_url(stack, source) if source else None,
            "executions_table": tables.get("ExecutionsTable"),
            "idempotency_table": tables.get("IdempotencyTable"),
            **endpoints,
            "queues": physical_ids("AWS::SQS::Queue"),
            "tables": tables,
            "functions": {logical_id: spec.function_name for logical_id, spec in specs.items()},
            "event_sources": [
                {
                    "queue": s.queue_logical_id,
                    "function": s.function_logical_id,
                    "batch_size": s.batch_size,
                    "batching_window_seconds": s.batching_window_seconds,
                    "report_batch_item_failures": s.report_batch_item_failures,
                }
                for s in sources
            ],
            "pid": os.getpid(),
        }

    def _write_stack_file(self) -> None:
        # Written last and atomically: its presence means the stack is ready. It holds the local API
        # token (only good for this stack), never a Hilos token.
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        target = self.config.state_dir / STACK_FILE
        partial = target.with_suffix(".json.partial")
        partial.write_text(json.dumps(self.info, indent=2) + "\n")
        partial.chmod(0o600)
        partial.replace(target)

    def banner(self) -> str:
        info = self.info
        auth = f"-H 'Authorization: Bearer {info['api_token']}'"
        body = json.dumps({"contact_list": [{"phone": "+5215512345678", "first_name": "Ana"}]})
        sandbox = info["sandbox_url"]
        hilos_note = f"sandbox; {sandbox}/_sandbox/stats, {sandbox}/_sandbox/faults" if sandbox else "HILOS_API_URL"
        aws_note = "AWS_ENDPOINT_URL" if self.config.aws_endpoint_url else "moto: Secrets Manager, SQS, DynamoDB"
        lines = [
            f"hilos-runner local stack is up in {info['startup_seconds']:.1f} s",
            f"  API      {info['api_url']}   (Authorization: Bearer {info['api_token']})",
            f"  Docs     {info['api_url']}/swagger   ("
            + ("the token opens it" if info["docs_need_token"] else "no token needed to open it")
            + "; Authorize with it to try the routes)",
            f"  Hilos    {info['hilos_url']}   ({hilos_note})",
            f"  AWS      {info['aws_endpoint_url']}   ({aws_note}; region {info['aws_region']})",
            f"  Tables   {info['executions_table']} (executions), {info['idempotency_table']} (idempotency)",
        ]
        if info["web_url"]:
            lines.append(f"  Web      {info['web_url']}   (examples/web: paste the token, start runs, upload a CSV)")
        if info["queue_url"]:
            lines.append(f"  Queue    {info['queue_url']}")
            lines.append(f"  DLQ      {info['dlq_url']}")
        if info["completion_events_queue_url"]:
            buses = ", ".join(info["completion_event_buses"])
            lines.append(f"  Events   {info['completion_events_queue_url']}   (completion events of bus {buses})")
        for schedule in info["schedules"]:
            lines.append(
                f"  Schedule {schedule['function']} every {schedule['interval_seconds']:g} s"
                f"   (template: {schedule['expression']}; --sync-interval)"
            )
        lines += [
            f"  State    {self.config.state_dir / STACK_FILE}",
            "",
            "Start a run:",
            f"  curl -sS -X POST {info['api_url']}/flows/{SAMPLE_FLOW_ID}/runs {auth} "
            f"-H 'Content-Type: application/json' -d '{body}'",
        ]
        aws = (
            "  AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION="
            f"{info['aws_region']} aws --endpoint-url {info['aws_endpoint_url']}"
        )
        if info["queue_url"]:
            message = json.dumps({"flow_id": SAMPLE_FLOW_ID, **json.loads(body)})
            lines += [
                "Put a run on the queue:",
                f"{aws} sqs send-message --queue-url {info['queue_url']} --message-body {shlex.quote(message)}",
            ]
        if info["completion_events_queue_url"]:
            lines += [
                "Read the completion events (one per finished run):",
                f"{aws} sqs receive-message --queue-url {info['completion_events_queue_url']} "
                "--max-number-of-messages 10 --wait-time-seconds 5",
            ]
        lines += ["", "Ctrl-C stops everything."]
        return "\n".join(lines)

    # -- stop ----------------------------------------------------------------------------------
    def stop(self) -> None:
        with self._stop_lock:
            stoppers, self._stoppers = self._stoppers, []
        stack_file = self.config.state_dir / STACK_FILE
        if running_stack_pid(stack_file) == os.getpid():  # ours: never another stack's, alive or not
            stack_file.unlink(missing_ok=True)
        for name, stop in reversed(stoppers):
            try:
                stop()
            except Exception:  # keep stopping the rest
                log.exception("stopping %s failed", name)


def _describe_events(
    completion_events: list[CompletionEventsQueue], schedules: list[tuple[ScheduleSource, float]], region: str
) -> dict[str, Any]:
    from local.events import rule_arn

    return {
        "completion_events_queue_url": completion_events[0].queue_url if completion_events else None,
        "completion_event_buses": [queue.bus_name for queue in completion_events],
        "schedules": [
            {
                "function": source.function_logical_id,
                "event": source.event_name,
                "expression": source.expression,
                "interval_seconds": interval,
                "rule_arn": rule_arn(source.rule_name, region=region),
            }
            for source, interval in schedules
        ],
    }


def check_parameters(template: dict[str, Any], values: dict[str, str]) -> None:
    """Refuse what CloudFormation would refuse: unknown parameters, values outside their constraints."""
    declared = template.get("Parameters", {})
    problems = []
    for name, value in values.items():
        spec = declared.get(name)
        if spec is None:
            problems.append(f"{name}: not a parameter of template.yaml")
            continue
        if "AllowedValues" in spec and value not in map(str, spec["AllowedValues"]):
            problems.append(f"{name}={value}: not one of {spec['AllowedValues']}")
        if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], value):
            problems.append(f"{name}={value}: does not match {spec['AllowedPattern']}")
        if spec.get("Type") == "Number":
            try:
                number = float(value)
            except ValueError:
                problems.append(f"{name}={value}: not a number")
                continue
            if number < float(spec.get("MinValue", number)) or number > float(spec.get("MaxValue", number)):
                problems.append(f"{name}={value}: outside [{spec.get('MinValue', '')}, {spec.get('MaxValue', '')}]")
    if not problems:  # the Rules section, as CloudFormation checks it, once each value is valid
        defaults = {name: str(spec.get("Default", "")) for name, spec in declared.items()}
        problems = StackResources(template, "parameters", {**defaults, **values}).rule_violations()
    if problems:
        raise ConfigurationProblem("invalid template parameters: " + "; ".join(problems))


def _dead_letter_queue_url(stack: StackResources, source: SqsEventSource) -> str | None:
    queue = stack.template["Resources"][source.queue_logical_id]
    policy = stack.resolve(queue.get("Properties", {}).get("RedrivePolicy"))
    if isinstance(policy, str):
        policy = json.loads(policy)
    if not isinstance(policy, dict):
        return None
    arn = policy.get("deadLetterTargetArn")
    for (logical_id, attribute), value in stack.attributes.items():
        if attribute == "Arn" and value == arn:
            return stack.physical_ids[logical_id]
    return None


def _port_problem(port: int, flag: str, problem: OSError) -> ConfigurationProblem:
    return ConfigurationProblem(f"port {port} ({flag}): {problem.strerror}; {flag} 0 picks a free one")


def _first_origin(policy: CorsPolicy | None) -> str | None:
    return policy.allow_origins[0] if policy and policy.allow_origins else None


def _boto3_credentials(variables: dict[str, str]) -> dict[str, str]:
    """AWS_ACCESS_KEY_ID=... -> aws_access_key_id=..., as boto3.client takes them."""
    return {name.lower(): value for name, value in variables.items()}


def configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, format="%(asctime)s.%(msecs)03d %(message)s", datefmt="%H:%M:%S"
    )
