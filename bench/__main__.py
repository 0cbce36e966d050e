"""`make bench` (`python -m bench`): every figure against its baseline, one table on stdout, JSON in .local/.

Progress goes to stderr. Options: --pairs N (cold-start pairs, 7), --only NAME[,NAME] (cold, deployed,
snapstart, warm, waste, batch, e2e, size) to run a subset while working on one figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from pathlib import Path

from bench import figures as f
from bench.environment import REPO_ROOT, BenchEnvironment

GROUPS = ("cold", "deployed", "snapstart", "warm", "waste", "batch", "e2e", "size")
UPSTREAM_LATENCY_MS = 50


def table(rows: list[f.Figure]) -> str:
    header = ("figure", "value", "baseline", "ratio", "target", "holds?")
    cells = [
        (
            row.name,
            _number(row.value),
            "-" if row.baseline is None else _number(row.baseline),
            "-" if row.ratio is None else f"{row.ratio:.2f}",
            row.target,
            {True: "yes", False: "NO", None: "-"}[row.holds],
        )
        for row in rows
    ]
    widths = [max(len(line[column]) for line in [header, *cells]) for column in range(len(header))]
    lines = [
        " | ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)) for line in [header, *cells]
    ]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def _number(value: float) -> str:
    return f"{value:.0f}" if value >= 100 or value == int(value) else f"{value:.2f}"


def machine() -> dict[str, object]:
    """What the figures were measured on, including how busy it was (the ratios are the figures to compare)."""
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    memory_gb = None
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as meminfo:
        memory_gb = round(int(meminfo.readline().split()[1]) / 1024 / 1024, 1)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model or platform.processor(),
        "memory_gb": memory_gb,
        "python": platform.python_version(),
        "architecture": platform.machine(),
        "load_average": [round(value, 2) for value in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--only", default=",".join(GROUPS))
    parser.add_argument("--output", type=Path, default=REPO_ROOT / ".local" / "bench.json")
    arguments = parser.parse_args(argv)
    groups = set(arguments.only.split(","))
    started = time.monotonic()
    machine_before = machine()
    f.progress(f"machine: {machine_before}")
    rows: list[f.Figure] = []
    in_process = groups & {"cold", "deployed", "snapstart", "warm", "waste", "batch"}
    if in_process:
        f.progress("starting moto and the Hilos sandbox")
    env = BenchEnvironment().start() if in_process else None
    try:
        if "cold" in groups:
            for logical_id in (f.API, f.WORKER):
                rows += f.timed(
                    f"cold start {f.MODULES[logical_id]} ({arguments.pairs} pairs)",
                    lambda logical_id=logical_id: f.cold_starts(env, logical_id, arguments.pairs),
                )
        if "deployed" in groups:
            from bench import deployed

            rows += f.timed(
                f"cold starts as deployed ({arguments.pairs} rotated runs each)",
                lambda: deployed.cold_start_figures(env, arguments.pairs),
            )
        if "snapstart" in groups:
            from bench import deployed

            rows += f.timed("SnapStart first request", lambda: deployed.snapstart_figures(env, arguments.pairs))
        if "warm" in groups:
            rows += f.timed("warm overhead", lambda: f.warm_overhead(env))
        if "waste" in groups:
            rows += f.timed("no waste per warm call", lambda: f.no_waste(env))
        if "batch" in groups:
            rows += f.timed("batch concurrency", lambda: f.batch_concurrency(env, UPSTREAM_LATENCY_MS))
    finally:
        if env is not None:
            env.stop()
    if "e2e" in groups:
        from bench import end_to_end

        rows += f.timed("end to end, 10,000 contacts", lambda: end_to_end.figures(UPSTREAM_LATENCY_MS))
    if "size" in groups:
        from bench import layer_size

        rows += f.timed("layer size", layer_size.figures)
    text = table(rows)
    print(text)
    notes = [f"{row.name}: {row.note}" for row in rows if row.note]
    machine_after = machine()
    described = (
        f"{machine_before['cpus']} x {machine_before['cpu_model']}, {machine_before['memory_gb']} GB, "
        f"Python {machine_before['python']}; load average {machine_before['load_average'][0]} before, "
        f"{machine_after['load_average'][0]} after"
    )
    print("\n".join(["", f"machine: {described}", "notes:", *notes]))
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(
        json.dumps(
            {
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": {**machine_before, "load_average_after": machine_after["load_average"]},
                "seconds": round(time.monotonic() - started, 1),
                "figures": [row.as_json() for row in rows],
                "table": text,
            },
            indent=2,
        )
        + "\n"
    )
    f.progress(f"done in {time.monotonic() - started:.0f} s; JSON in {arguments.output}")
    return 0  # a benchmark reports; it does not fail the build (targets are judged from the table)


if __name__ == "__main__":
    sys.exit(main())
