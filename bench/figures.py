"""Each figure of `make bench`: measured against a baseline taken in the same run, medians of alternated runs."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.environment import REPO_ROOT, BenchEnvironment
from hilos_runner.models import FlowRunRequest
from local.events import http_api_event, sqs_event, sqs_record

CHILD = Path(__file__).resolve().parent / "child.py"
FLOW_ID = "a3ff7ee5-0c11-49e2-a0d6-7e316626f7b1"
API = "RunApiFunction"
WORKER = "BulkWorkerFunction"
MODULES = {API: "run_api", WORKER: "bulk_worker"}
# What each function needs of its dependencies by design (DESIGN.md: pydantic models, Powertools event
# handler with validation, batch, idempotency, parameters, logger, metrics), imported by the "floor" script.
_COMMON_FLOOR = [
    "pydantic",
    "aws_lambda_powertools.logging",
    "aws_lambda_powertools.metrics",
    "aws_lambda_powertools.utilities.parameters",
]
FLOOR_IMPORTS = {
    API: [*_COMMON_FLOOR, "aws_lambda_powertools.event_handler", "aws_lambda_powertools.event_handler.openapi.params"],
    WORKER: [*_COMMON_FLOOR, "aws_lambda_powertools.utilities.batch", "aws_lambda_powertools.utilities.idempotency"],
}


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Figure:
    name: str
    value: float
    baseline: float | None
    unit: str
    target: str  # e.g. "ratio <= 1.15" or "<= 1 ms"
    holds: bool | None  # None: printed for information, no target
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return self.value / self.baseline if self.baseline else None

    def as_json(self) -> dict[str, Any]:
        return {
            "figure": self.name,
            "value": round(self.value, 3),
            "baseline": None if self.baseline is None else round(self.baseline, 3),
            "unit": self.unit,
            "ratio": None if self.ratio is None else round(self.ratio, 3),
            "target": self.target,
            "holds": self.holds,
            "note": self.note,
        }


def contact(index: int) -> dict[str, Any]:
    return {"phone": f"+52155{index:08d}", "first_name": "Ana", "email": f"ana.{index}@example.com"}


def contacts(count: int) -> list[dict[str, Any]]:
    return [contact(index) for index in range(count)]


def run_event(count: int) -> dict[str, Any]:
    return http_api_event("POST", f"/flows/{FLOW_ID}/runs", body={"contact_list": contacts(count)})


def queued_batch(size: int) -> dict[str, Any]:
    """An SQS event of ``size`` one-contact QueuedRun messages, each with a new message id (idempotency key)."""
    records = [sqs_record({"flow_id": FLOW_ID, "contact_list": [contact(index)]}) for index in range(size)]
    return sqs_event(records)


def run_child(
    mode: str, job: dict[str, Any], environment: dict[str, str], logical_id: str | None = None
) -> tuple[float, dict[str, Any]]:
    """Run ``bench/child.py MODE`` in a fresh interpreter; returns (process wall seconds, its result)."""
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        job_path, result_path = Path(scratch, "job.json"), Path(scratch, "result.json")
        job = {**job, "result": str(result_path)}
        job_path.write_text(json.dumps(job))
        # Only the function's environment (as in Lambda) and PATH: nothing of the caller's shell.
        env = {**environment, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        started = time.perf_counter()
        finished = subprocess.run(  # our own script, fixed arguments
            [sys.executable, str(CHILD), mode, str(job_path)],
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,  # the functions' log lines (Lambda sends them to CloudWatch)
            stderr=subprocess.PIPE,
            check=False,
        )
        elapsed = time.perf_counter() - started
        if finished.returncode != 0:
            raise RuntimeError(f"bench child {mode} failed:\n{finished.stderr.decode(errors='replace')[-3000:]}")
        return elapsed, json.loads(result_path.read_text())


def _function_job(env: BenchEnvironment, logical_id: str, **job: Any) -> dict[str, Any]:
    return {"code_paths": env.code_paths(logical_id), "module": MODULES[logical_id], **job}


def bare_script_job(env: BenchEnvironment, logical_id: str) -> dict[str, Any]:
    """The cold-start baseline: a bare script making the upstream calls the function makes for one request."""
    body = {"contact_list": [contact(0)]}
    return {
        "hilos_url": env.sandbox.api_url + f"/flow/{FLOW_ID}/run",
        # The very bytes our code sends to Hilos for this body.
        "hilos_body": FlowRunRequest.model_validate(body).hilos_body().decode(),
        "put_item": logical_id == WORKER,
    }


def one_request_event(logical_id: str) -> dict[str, Any]:
    return run_event(1) if logical_id == API else queued_batch(1)


def cold_starts(env: BenchEnvironment, logical_id: str, pairs: int) -> list[Figure]:
    """A fresh process serving one request vs a bare script making the same upstream calls."""
    environment = env.function_environment(logical_id)
    baseline_job = bare_script_job(env, logical_id)
    floor_job = {**baseline_job, "floor_imports": FLOOR_IMPORTS[logical_id]}
    ours, bare, floor, rss, bare_rss, floor_rss = [], [], [], [], [], []
    phases: dict[str, list[dict[str, float]]] = {"cold_baseline": [], "cold_function": []}
    for pair in range(pairs):
        event = one_request_event(logical_id)
        runs: list[tuple[str, dict[str, Any], list[float], list[float]]] = [
            ("cold_baseline", baseline_job, bare, bare_rss),
            ("cold_function", _function_job(env, logical_id, event=event), ours, rss),
            ("cold_baseline", floor_job, floor, floor_rss),
        ]
        for mode, job, times, peaks in runs[pair % 3 :] + runs[: pair % 3]:  # rotated: no fixed order
            elapsed, result = run_child(mode, job, environment)
            times.append(elapsed * 1000)
            peaks.append(result["peak_rss_mb"])
            if job is not floor_job:
                phases[mode].append(result)
    name = MODULES[logical_id]
    calls = "secret + POST + put_item" if logical_id == WORKER else "secret + POST"
    figure = Figure(
        f"cold start {name} (process ms)",
        statistics.median(ours),
        statistics.median(bare),
        "ms",
        "ratio <= 1.15",
        statistics.median(ours) <= 1.15 * statistics.median(bare),
        f"median of {pairs} alternated pairs; baseline: import boto3+requests, {calls}; in-process medians: "
        f"import {_median(phases['cold_function'], 'import_ms'):.0f} ms vs "
        f"{_median(phases['cold_baseline'], 'import_ms'):.0f}, first call "
        f"{_median(phases['cold_function'], 'first_call_ms'):.0f} ms vs "
        f"{_median(phases['cold_baseline'], 'first_call_ms'):.0f}",
    )
    versus_floor = Figure(
        "  same vs dependency floor (process ms)",
        statistics.median(ours),
        statistics.median(floor),
        "ms",
        "-",
        None,
        "floor: the bare script plus importing " + ", ".join(FLOOR_IMPORTS[logical_id]),
    )
    memory = Figure(
        f"peak RSS cold {name} (MB)",
        max(rss),
        max(bare_rss),
        "MB",
        "-",
        None,
        "VmHWM of the cold process (max of the pairs); baseline: the bare script",
    )
    return [figure, versus_floor, memory]


def _median(results: list[dict[str, float]], key: str) -> float:
    return statistics.median(result[key] for result in results)


def warm_overhead(env: BenchEnvironment) -> list[Figure]:
    sizes = [(10, 300), (1000, 30)]
    events = {str(size): run_event(size) for size, _ in sizes}
    _, result = run_child(
        "warm_overhead", _function_job(env, API, sizes=sizes, events=events), env.function_environment(API)
    )
    figures = []
    for (size, calls), target_ms in zip(sizes, (1.0, 25.0), strict=True):
        measured = result[str(size)]
        figures.append(
            Figure(
                f"warm overhead run_api, {size} contacts (ms)",
                measured["median_ms"],
                measured["baseline_median_ms"],
                "ms",
                f"<= {target_ms:g} ms",
                measured["median_ms"] <= target_ms,
                f"median of {calls}; AWS + Hilos answered instantly; baseline: json.loads of the body",
            )
        )
    return figures


def no_waste(env: BenchEnvironment, warm_calls: int = 20) -> list[Figure]:
    hilos_port = urlsplit(env.sandbox.url).port
    figures = []
    for logical_id in (API, WORKER):
        events = [run_event(1) if logical_id == API else queued_batch(1) for _ in range(warm_calls + 1)]
        job = _function_job(env, logical_id, events=events, hilos_port=hilos_port)
        _, result = run_child("no_waste", job, env.function_environment(logical_id))
        warm, cold = result["warm"], result["cold"]
        name = MODULES[logical_id]
        wasted = warm["boto3_sessions"] + warm["botocore_clients"] + warm["get_secret_value"]
        figures.append(
            Figure(
                f"{name}: clients+sessions+secret reads in {warm_calls} warm calls",
                wasted,
                None,
                "count",
                "= 0",
                wasted == 0,
                f"sessions {warm['boto3_sessions']}, clients {warm['botocore_clients']}, "
                f"GetSecretValue {warm['get_secret_value']} (cold call: {cold['boto3_sessions']}, "
                f"{cold['botocore_clients']}, {cold['get_secret_value']})",
            )
        )
        if logical_id == WORKER:
            figures.append(aws_calls_per_queued_run(warm["aws_calls"] / warm_calls))
        opened = cold["hilos_connections"] + warm["hilos_connections"]
        figures.append(
            Figure(
                f"{name}: Hilos connections opened in 1 cold + {warm_calls} warm calls",
                opened,
                None,
                "count",
                "= 1",
                opened == 1,
                f"cold {cold['hilos_connections']}, warm {warm['hilos_connections']}",
            )
        )
    return figures


# What a queued run minimally needs of AWS (bench/aws_floor.py does exactly this): one conditional write
# before the Hilos call, one write after it, the delete, and a tenth of a receive (batches of 10).
FLOOR_AWS_CALLS_PER_RUN = 3.1
# Lambda's event source mapping receives and deletes (DeleteMessageBatch) once per batch of up to 10.
MAPPING_AWS_CALLS_PER_RUN = 2 / 10


def aws_calls_per_queued_run(function_calls_per_run: float) -> Figure:
    calls = function_calls_per_run + MAPPING_AWS_CALLS_PER_RUN
    return Figure(
        "bulk_worker: AWS calls per queued run",
        calls,
        FLOOR_AWS_CALLS_PER_RUN,
        "count",
        f"<= {FLOOR_AWS_CALLS_PER_RUN}",
        calls <= FLOOR_AWS_CALLS_PER_RUN,
        f"the function's {function_calls_per_run:.1f} per run (warm, one-message batches) + the event source "
        f"mapping's receive and delete per 10-message batch; baseline: the floor script's (bench/aws_floor.py)",
    )


def batch_concurrency(env: BenchEnvironment, latency_ms: int, rounds: int = 5) -> list[Figure]:
    """One worker process; the sandbox answers after ``latency_ms``. DynamoDB answered instantly (an in-memory
    client: what is measured is our concurrency, not moto's), then, for comparison, DynamoDB on moto."""
    env.set_latency(latency_ms)
    results = {}
    try:
        for label, concurrency, instant_aws in (
            ("parallel", "10", True),
            ("sequential", "1", True),
            ("moto", "10", False),
        ):
            job = _function_job(
                env,
                WORKER,
                instant_aws=instant_aws,
                warmup=queued_batch(1),
                singles=[queued_batch(1) for _ in range(rounds)],
                batches=[queued_batch(10) for _ in range(rounds)],
            )
            environment = env.function_environment(WORKER, WORKER_CONCURRENCY=concurrency)
            _, results[label] = run_child("batch_timing", job, environment)
    finally:
        env.set_latency(0)
    parallel = results["parallel"]
    rows = [
        Figure(
            f"10-message batch, {latency_ms} ms upstream (ms)",
            parallel["batch_ms"],
            parallel["single_ms"],
            "ms",
            "ratio <= 1.5",
            parallel["batch_ms"] <= 1.5 * parallel["single_ms"],
            f"WORKER_CONCURRENCY=10, DynamoDB answered in memory; baseline: a 1-message batch; medians of {rounds}",
        )
    ]
    for label, note in (
        ("sequential", "WORKER_CONCURRENCY=1, DynamoDB in memory: the sequential way, for comparison"),
        (
            "moto",
            "WORKER_CONCURRENCY=10 with DynamoDB on the moto server (one Python process, shared with the sandbox)",
        ),
    ):
        rows.append(
            Figure(
                f"  same, {label} (ms)",
                results[label]["batch_ms"],
                results[label]["single_ms"],
                "ms",
                "-",
                None,
                note,
            )
        )
    return rows


def timed(label: str, function: Callable[[], list[Figure]]) -> list[Figure]:
    progress(f"{label} ...")
    started = time.monotonic()
    figures = function()
    progress(f"{label}: {time.monotonic() - started:.1f} s")
    return figures


def new_id() -> str:
    return str(uuid.uuid4())
