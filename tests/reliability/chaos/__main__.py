"""The fault run (`make chaos`): queued and API runs through the local stack while the Hilos sandbox misbehaves,
then until reconciliation has settled every run whose answer was lost.
Prints the figures; exits 1 unless the run holds."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from local.running_stack import start_stack, stop_stack
from tests.reliability.chaos.drive import run_chaos
from tests.reliability.chaos.plan import STACK_ARGS, STACK_ENV, ChaosPlan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--api-runs", type=int, default=None, help="runs through the API (a tenth of --runs)")
    parser.add_argument("--seed", type=int, default=ChaosPlan.seed)
    parser.add_argument("--deadline", type=float, default=ChaosPlan.deadline_seconds, help="seconds (900)")
    arguments = parser.parse_args(argv)
    api_runs = arguments.api_runs if arguments.api_runs is not None else arguments.runs // 10
    plan = ChaosPlan(runs=arguments.runs, api_runs=api_runs, seed=arguments.seed, deadline_seconds=arguments.deadline)
    with tempfile.TemporaryDirectory(prefix="hilos-chaos-") as state_dir:
        stack = start_stack(Path(state_dir), *STACK_ARGS, env=STACK_ENV)
        try:
            report = run_chaos(stack, plan)
        finally:
            stop_stack(stack)
    print(report.figures(), flush=True)
    return 0 if report.holds() else 1


if __name__ == "__main__":
    sys.exit(main())
