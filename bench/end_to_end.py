"""End to end: 10,000 contacts submitted in bulk through the local stack (`python -m local` in a subprocess:
HTTP front -> run_api -> SQS -> pollers -> bulk_worker -> Hilos sandbox with a set latency)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from bench import aws_floor
from bench.environment import REPO_ROOT
from bench.figures import FLOW_ID, Figure, contacts, progress
from hilos_runner.models import FlowRunRequest
from local.running_stack import start_stack, stop_stack
from local.template import load_template

CONTACTS = 10_000
LOG_COPY = REPO_ROOT / ".local" / "bench-stack.log"
TIMEOUT_SECONDS = 180


def _template_default(name: str) -> int:
    return int(load_template()["Parameters"][name]["Default"])


def figures(latency_ms: int) -> list[Figure]:
    # The template's defaults (chunk size, worker concurrency, pollers = the mapping's MaximumConcurrency),
    # but no batching window: the floor below does not count time spent waiting to fill a batch.
    pollers = _template_default("WorkerMaximumConcurrency")
    worker_concurrency = _template_default("WorkerConcurrency")
    with tempfile.TemporaryDirectory(prefix="bench-stack-") as state_dir:
        stack = start_stack(
            Path(state_dir),
            f"--latency-ms={latency_ms}",
            f"--pollers={pollers}",
            "--parameter-overrides",
            "WorkerBatchingWindowSeconds=0",
        )
        try:
            body = {"contact_list": contacts(CONTACTS)}
            started = time.perf_counter()
            answer = stack.api("POST", f"/flows/{FLOW_ID}/bulk-runs", json=body)
            assert answer.status_code == 202, answer.text
            accepted = time.perf_counter()
            bulk: dict[str, Any] = answer.json()
            progress(f"  accepted {bulk['num_contacts']} contacts in {bulk['chunks']} chunks; waiting for Hilos calls")
            status = _wait_until_done(stack, bulk["id"], bulk["chunks"])
            finished = time.perf_counter()
            progress(
                f"  the AWS-inclusive floor: {bulk['chunks']} messages the minimal way, same stack and concurrency"
            )
            chunk_size = -(-CONTACTS // bulk["chunks"])
            floor_bodies = [  # the very bytes our worker sends to Hilos for each chunk
                FlowRunRequest.model_validate({"contact_list": body["contact_list"][i : i + chunk_size]}).hilos_body()
                for i in range(0, CONTACTS, chunk_size)
            ]
            floor_seconds, floor_calls = aws_floor.drain(stack, floor_bodies, pollers, worker_concurrency)
        finally:
            stop_stack(stack)
            # Kept for a look at the timeline (batches, invocations) after the run.
            LOG_COPY.parent.mkdir(parents=True, exist_ok=True)
            LOG_COPY.write_bytes(stack.log_path.read_bytes())
    assert status["chunks_by_status"].get("SUBMITTED") == bulk["chunks"], status["chunks_by_status"]
    chunks = bulk["chunks"]
    concurrency = pollers * worker_concurrency
    hilos_floor = chunks * latency_ms / 1000 / concurrency
    total, drain = finished - started, finished - accepted
    floor_calls_per_run = sum(floor_calls.values()) / len(floor_bodies)
    return [
        Figure(
            f"end to end {CONTACTS:,} contacts (contacts/s)",
            CONTACTS / total,
            None,
            "contacts/s",
            "-",
            None,
            f"submit (validation of every contact) {accepted - started:.2f} s + queue drain {drain:.2f} s",
        ),
        Figure(
            f"  queue drain vs AWS-inclusive floor (s), {chunks} chunks",
            drain,
            floor_seconds,
            "s",
            "ratio <= 2",
            drain <= 2 * floor_seconds,
            f"floor: a bare script, same moto and sandbox, {pollers} pollers x {worker_concurrency} at once, "
            f"{floor_calls_per_run:.1f} AWS calls per run ({dict(floor_calls)})",
        ),
        Figure(
            "  same vs Hilos latency alone (s)",
            drain,
            hilos_floor,
            "s",
            "-",
            None,
            f"{chunks} chunks x {latency_ms} ms / {concurrency} ({pollers} pollers x WORKER_CONCURRENCY "
            f"{worker_concurrency}): no AWS at all",
        ),
    ]


def _wait_until_done(stack: Any, bulk_id: str, chunks: int) -> dict[str, Any]:
    """Watch the sandbox (cheap) until it has answered every chunk, then the bulk status (a DynamoDB query on
    the stack's moto: polling it all along would load the very server the workers write to)."""
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while stack.sandbox_stats()["flows"].get(FLOW_ID, {}).get("calls", 0) < chunks:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the sandbox has not seen {chunks} calls after {TIMEOUT_SECONDS} s")
        time.sleep(0.05)
    while True:
        status = stack.api("GET", f"/bulk-runs/{bulk_id}").json()
        # Drained: every chunk handed to Hilos (the bulk run itself stays IN_PROGRESS until Hilos finishes them).
        if not set(status["chunks_by_status"]) & {"QUEUED", "SENDING"}:
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"bulk run not done after {TIMEOUT_SECONDS} s: {status['chunks_by_status']}")
        time.sleep(0.05)
