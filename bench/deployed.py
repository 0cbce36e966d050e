"""Cold starts as deployed, and SnapStart's first request.

As deployed: each function imported from the layout `sam build` makes, in a fresh Python 3.13 process that may
not write bytecode (Lambda's /var/task and /opt are read-only): the function's folder (its one module) and the
layer built by its own Makefile (layers/hilos_runner/Makefile, the recipe `sam build` runs), for this machine's
platform when it cannot load aarch64 (the same pins). Once with the layer's .pyc files and once without them
(what SAM's python3.13 builder ships), against the bare script of the venv rows, pairs rotated.

SnapStart: a process that ran init and run_api's before-snapshot hooks, then its after-restore hooks, answers
its first request; against that process's own warm requests. Without the hooks, for comparison.
"""

from __future__ import annotations

import platform
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.environment import REPO_ROOT, BenchEnvironment
from bench.figures import API, MODULES, Figure, bare_script_job, one_request_event, progress, run_child, run_event
from local.template import load_template

LAYER_SOURCE = REPO_ROOT / "layers" / "hilos_runner"
PLATFORMS = {"x86_64": "manylinux2014_x86_64", "aarch64": "manylinux2014_aarch64"}
SNAPSTART_TARGET = 1.3
COLD_TARGET = 1.15


def build_layer(target: Path, wheel_platform: str) -> Path:
    """The layer's Makefile, as `sam build` runs it, into ``target``; returns its python/ folder."""
    finished = subprocess.run(  # our own Makefile, fixed arguments
        ["make", "--no-print-directory", "-C", str(LAYER_SOURCE), "build-HilosRunnerLayer",
         f"ARTIFACTS_DIR={target}", f"PLATFORM={wheel_platform}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if finished.returncode != 0:
        raise RuntimeError(f"the layer build failed:\n{finished.stdout[-2000:]}\n{finished.stderr[-2000:]}")
    return target / "python"


def _function_folder(logical_id: str, target: Path) -> Path:
    """What `sam build` puts in the function's folder: its CodeUri's code (no caches)."""
    code_uri = load_template()["Resources"][logical_id]["Properties"]["CodeUri"]
    shutil.copytree(REPO_ROOT / code_uri, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def cold_start_figures(env: BenchEnvironment, pairs: int) -> list[Figure]:
    machine = platform.machine()
    wheel_platform = PLATFORMS.get(machine, PLATFORMS["x86_64"])
    built_for = "Lambda's aarch64" if machine == "aarch64" else f"{machine} (same pins; the host cannot load aarch64)"
    rows: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="bench-deployed-") as scratch:
        progress(f"  building the layer with its Makefile for {wheel_platform}")
        compiled = build_layer(Path(scratch, "layer"), wheel_platform)
        plain = Path(scratch, "layer-without-pyc", "python")
        shutil.copytree(compiled, plain, ignore=shutil.ignore_patterns("__pycache__"))
        for logical_id in (API, "BulkWorkerFunction"):
            folder = _function_folder(logical_id, Path(scratch, logical_id))
            rows += _as_deployed(env, logical_id, pairs, folder, (compiled, plain), built_for=built_for)
    return rows


def _job(logical_id: str, folder: Path, layer: Path, event: dict[str, Any]) -> dict[str, Any]:
    # Lambda's sys.path order: the function's folder (task root), then the layer (/opt/python).
    return {"code_paths": [str(folder), str(layer)], "module": MODULES[logical_id], "event": event}


def _as_deployed(
    env: BenchEnvironment, logical_id: str, pairs: int, folder: Path, layers: tuple[Path, Path], *, built_for: str
) -> list[Figure]:
    compiled, plain = layers
    environment = env.function_environment(logical_id, PYTHONDONTWRITEBYTECODE="1")
    times: dict[str, list[float]] = {"bare": [], "compiled": [], "plain": []}
    for pair in range(pairs):
        event = one_request_event(logical_id)
        jobs: list[tuple[str, str, dict[str, Any]]] = [
            ("bare", "cold_baseline", bare_script_job(env, logical_id)),
            ("compiled", "cold_function", _job(logical_id, folder, compiled, event)),
            ("plain", "cold_function", _job(logical_id, folder, plain, event)),
        ]
        for label, mode, job in jobs[pair % 3 :] + jobs[: pair % 3]:  # rotated: no fixed order
            elapsed, result = run_child(mode, job, environment)
            if mode == "cold_function":  # the dependencies really came from the built layer
                assert result["pydantic_file"].startswith(job["code_paths"][1]), result["pydantic_file"]
            times[label].append(elapsed * 1000)
    median = {label: statistics.median(values) for label, values in times.items()}
    name = MODULES[logical_id]
    return [
        Figure(
            f"cold start {name} as deployed (process ms)",
            median["compiled"],
            median["bare"],
            "ms",
            f"ratio <= {COLD_TARGET}",
            median["compiled"] <= COLD_TARGET * median["bare"],
            f"median of {pairs} rotated runs; function folder + the layer built by its Makefile for {built_for}, "
            "with its .pyc files, no bytecode written; baseline: the bare script",
        ),
        Figure(
            "  same, layer without .pyc (process ms)",
            median["plain"],
            median["compiled"],
            "ms",
            "-",
            None,
            "what SAM's python3.13 builder ships: every cold start compiles the layer; baseline: with .pyc",
        ),
    ]


def snapstart_figures(env: BenchEnvironment, processes: int) -> list[Figure]:
    environment = env.function_environment(API)
    code_paths = env.code_paths(API)
    results: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    for index in range(processes * 2):
        prime = index % 2 == 0  # alternated
        job = {
            "code_paths": code_paths,
            "module": MODULES[API],
            "prime": prime,
            "events": [run_event(1) for _ in range(21)],
        }
        _, result = run_child("restored_first_request", job, environment)
        results[prime].append(result)

    def median(prime: bool, key: str) -> float:
        return statistics.median(result[key] for result in results[prime])

    first, warm = median(True, "first_ms"), median(True, "warm_median_ms")
    return [
        Figure(
            "SnapStart run_api: first request after restore (ms)",
            first,
            warm,
            "ms",
            f"ratio <= {SNAPSTART_TARGET}",
            first <= SNAPSTART_TARGET * warm,
            f"median of {processes} processes: init + before-snapshot hooks, after-restore hooks "
            f"({median(True, 'after_restore_ms'):.1f} ms), then 1 + 20 requests; baseline: the same process's warm "
            "median; connections are opened by the first request",
        ),
        Figure(
            "  same, after-restore hooks included (ms)",
            median(True, "after_restore_ms") + first,
            warm,
            "ms",
            "-",
            None,
            "the after-restore hooks (re-seed random, read the Hilos token) also run before the first request",
        ),
        Figure(
            "  same, snapshot without priming hooks (ms)",
            median(False, "first_ms"),
            median(False, "warm_median_ms"),
            "ms",
            "-",
            None,
            f"median of {processes} processes: init only, then 1 + 20 requests",
        ),
    ]
