"""`python -m local` (`make dev`): the whole stack on 127.0.0.1, in the foreground, until Ctrl-C or SIGTERM.

Real services by environment: HILOS_API_URL (with HILOS_TOKEN) replaces the Hilos sandbox,
AWS_ENDPOINT_URL replaces the moto server. Every port is a flag (or LOCAL_*_PORT); 0 picks a free one.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from local.sandbox_settings import DEFAULT_FAULT_MIX, STAGES, FaultKind, Progression
from local.stack import (
    DEFAULT_SYNC_INTERVAL_SECONDS,
    ConfigurationProblem,
    LocalConfig,
    LocalStack,
    configure_logging,
    log,
)

ENVIRONMENT_HELP = """environment:
  HILOS_API_URL, HILOS_TOKEN  a real Hilos (or any server) instead of the sandbox; the token goes into the
                              local secret and is never printed
  HILOS_RUN_PATH              the run path, e.g. /channel/whatsapp/flow/{flow_id}/run
  AWS_ENDPOINT_URL            an AWS endpoint instead of the stack's own moto server (resources created
                              there if missing; credentials from AWS_* variables or AWS_PROFILE)
  LOCAL_API_PORT, LOCAL_SANDBOX_PORT, LOCAL_MOTO_PORT, LOCAL_WEB_PORT, LOCAL_STATE_DIR, LOCAL_SYNC_INTERVAL
                              defaults of the flags above
  function settings template.yaml does not set (HILOS_CONNECT_RETRIES, RETRY_BASE_DELAY_SECONDS, ...)
                              are passed on to the functions; with --sync-interval, STATUS_SYNC_MIN_INTERVAL_SECONDS
                              defaults to 0 and STATUS_SYNC_MAX_INTERVAL_SECONDS to the interval (every tick
                              reads every started run)
"""


def _fault_mix(text: str) -> dict[FaultKind, float]:
    """'503=2,429=1,slow=1' -> relative weights of the fault kinds."""
    mix = {}
    for part in filter(None, (item.strip() for item in text.split(","))):
        kind, _, weight = part.partition("=")
        try:
            mix[FaultKind(kind.strip())] = float(weight or 1)
        except ValueError:
            kinds = ", ".join(kind.value for kind in FaultKind)
            raise argparse.ArgumentTypeError(f"{part!r}: expected KIND=WEIGHT with KIND one of {kinds}") from None
    return mix


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of seconds, 0 or more")
    return seconds


def _stage_seconds(text: str) -> dict[str, float]:
    """'3' (every stage) or 'PROCESSING=1,RUNNING=5' (the stages left out keep their defaults)."""
    try:
        if "=" not in text:
            return dict.fromkeys(STAGES, _seconds(text))
        seconds = {}
        for part in filter(None, (item.strip() for item in text.split(","))):
            stage, _, value = part.partition("=")
            if stage.strip().upper() not in STAGES:
                raise ValueError
            seconds[stage.strip().upper()] = _seconds(value)
        return seconds
    except (ValueError, argparse.ArgumentTypeError):
        stages = ", ".join(STAGES)
        message = f"{text!r}: expected SECONDS or STAGE=SECONDS,... with STAGE one of {stages}"
        raise argparse.ArgumentTypeError(message) from None


def _parameter(text: str) -> tuple[str, str]:
    name, separator, value = text.partition("=")
    if not separator or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=VALUE")
    return name, value


def _parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="python -m local",
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ports = parser.add_argument_group("ports (127.0.0.1; 0 = any free port)")
    ports.add_argument("--api-port", type=int, default=int(env("LOCAL_API_PORT", "3000")), help="HTTP front (3000)")
    ports.add_argument(
        "--sandbox-port", type=int, default=int(env("LOCAL_SANDBOX_PORT", "4010")), help="Hilos sandbox (4010)"
    )
    ports.add_argument("--moto-port", type=int, default=int(env("LOCAL_MOTO_PORT", "5005")), help="moto server (5005)")
    ports.add_argument(
        "--web-port",
        type=int,
        default=int(env("LOCAL_WEB_PORT", "")) if env("LOCAL_WEB_PORT") else None,
        help="the example page, examples/web (the port of the first allowed CORS origin: 5173)",
    )
    parser.add_argument(
        "--state-dir", type=Path, default=Path(env("LOCAL_STATE_DIR", ".local")), help="where stack.json goes (.local)"
    )
    parser.add_argument(
        "--visibility-timeout",
        type=int,
        default=None,
        help="seconds; overrides the queue's VisibilityTimeout so failed messages come back sooner (template's)",
    )
    parser.add_argument("--concurrency", type=int, default=4, help="execution environments per function (4)")
    parser.add_argument(
        "--pollers",
        type=int,
        default=None,
        help="pollers (= invocations at once) per SQS event source (the event's ScalingConfig.MaximumConcurrency)",
    )
    parser.add_argument(
        "--parameter-overrides",
        dest="parameters",
        nargs="+",
        type=_parameter,
        default=[],
        metavar="NAME=VALUE",
        help="template parameters, as for sam deploy (e.g. RetryAfterMaxSeconds=5 WorkerBatchingWindowSeconds=0)",
    )
    parser.add_argument(
        "--sync-interval",
        type=_seconds,
        default=float(env("LOCAL_SYNC_INTERVAL", str(DEFAULT_SYNC_INTERVAL_SECONDS))),
        metavar="SECONDS",
        help=f"seconds between the firings of each Schedule event, e.g. StatusSyncFunction's status sync "
        f"({DEFAULT_SYNC_INTERVAL_SECONDS:g}); 0 = the template's rate(...)",
    )
    parser.add_argument(
        "--function-logs",
        action="store_true",
        help="print every line the functions log, and their metrics (by default only their warnings and errors, "
        "so the banner and the request lines stay readable)",
    )
    parser.add_argument(
        "--hilos-read-timeout",
        type=float,
        default=None,
        help="functions' HILOS_READ_TIMEOUT_SECONDS (2 with the sandbox, else HILOS_READ_TIMEOUT_SECONDS or 20); "
        "with the sandbox also HILOS_STATUS_READ_TIMEOUT_SECONDS unless exported",
    )
    sandbox = parser.add_argument_group("Hilos sandbox (also changeable at run time: POST /_sandbox/faults)")
    sandbox.add_argument("--fault-rate", type=float, default=0.0, help="share of Hilos calls that fail (0..1)")
    sandbox.add_argument(
        "--fault-mix",
        type=_fault_mix,
        default=dict(DEFAULT_FAULT_MIX),
        help="weights of the fault kinds, e.g. 503=2,slow=1,slow_before=1; slow/reset strike after Hilos created "
        "the run, slow_before/reset_before before (500, 503, 429, slow, reset equally; the _before kinds only by name)",
    )
    sandbox.add_argument("--latency-ms", type=int, default=0, help="added to every sandbox answer (0)")
    sandbox.add_argument(
        "--retry-after", dest="retry_after_seconds", type=int, default=1, help="Retry-After of 429 faults, seconds (1)"
    )
    sandbox.add_argument(
        "--progression",
        type=Progression,
        choices=list(Progression),
        default=Progression.TIME,
        help="how a started run moves PROCESSING -> STARTING -> RUNNING -> COMPLETED (CANCELED for the flows in "
        "cancel_flows): by its age (time), or one stage per status read (per_read, deterministic) (time)",
    )
    sandbox.add_argument(
        "--stage-seconds",
        type=_stage_seconds,
        default=None,
        metavar="SECONDS|STAGE=SECONDS,...",
        help="with --progression time: how long each stage lasts, e.g. 3 or PROCESSING=2,STARTING=1,RUNNING=7 "
        "(the default)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    configure_logging()
    # Every flag's dest is the LocalConfig field it sets.
    given = vars(arguments)
    flags = {field.name: given[field.name] for field in dataclasses.fields(LocalConfig) if field.name in given}
    flags.update(parameters=dict(arguments.parameters), sync_interval=arguments.sync_interval or None)
    config = LocalConfig.from_environment(dict(os.environ), **flags)
    stack = LocalStack(config)

    def interrupt(signum: int, frame: FrameType | None) -> None:
        # SIGTERM stops like Ctrl-C; a second signal while stopping gives up waiting.
        signal.signal(signal.SIGINT, _exit_now)
        signal.signal(signal.SIGTERM, _exit_now)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        stack.start()
        print(stack.banner(), flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        log.info("stopping ...")
    except ConfigurationProblem as problem:
        log.error("%s", problem)
        return 2
    finally:
        stack.stop()
    log.info("stopped")
    return 0


def _exit_now(signum: int, frame: FrameType | None) -> None:
    os._exit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
