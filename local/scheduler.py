"""EventBridge schedules, locally: each Schedule event of a function in template.yaml invokes it on a timer with
the event EventBridge sends (the "Scheduled Event", or the event's Input when it sets one).

- The interval is the schedule's rate(N minute|minutes|hour|hours|day|days), or a local override (the
  stack's ``--sync-interval``) so the tour and the tests see progress in seconds, not minutes. cron(...)
  needs the override: it is not run locally.
- One invocation at a time per schedule: a tick that comes while the previous invocation still runs is
  skipped, never queued. (Deployed, Lambda would start it, and status_sync's lease would make it skip.)
- An invocation that fails is logged and not retried: the next tick is the retry (EventBridge's async
  invoke would retry twice more, which changes nothing for an idempotent sync).
- ``request_stop()`` + ``join()`` end the thread; an invocation in hand is given a few seconds (the stack
  stops the execution environments next anyway).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from local.events import ACCOUNT_ID, REGION, rule_arn, scheduled_event
from local.functions import FunctionError, Invocation
from local.template import ScheduleSource

log = logging.getLogger("local.scheduler")

_RATE = re.compile(r"rate\(\s*(?P<value>\d+)\s+(?P<unit>minute|minutes|hour|hours|day|days)\s*\)")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86_400}
_STOP_GRACE_SECONDS = 5


class UnsupportedSchedule(ValueError):
    """A schedule expression the local stack cannot run at its own rate; the message says what to do."""


def rate_seconds(expression: str) -> float:
    """Seconds between two firings of an EventBridge rate expression (AWS's rules: a value of 1 takes the
    singular unit, any other the plural)."""
    text = expression.strip()
    found = _RATE.fullmatch(text)
    if found is None:
        if text.startswith("cron("):
            raise UnsupportedSchedule(
                f"{text}: cron schedules are not run locally; give the interval in seconds (--sync-interval)"
            )
        raise UnsupportedSchedule(f"{text!r}: not a rate(N minute|minutes|hour|hours|day|days) expression")
    value, unit = int(found["value"]), found["unit"]
    singular = unit.removesuffix("s")
    if value < 1 or (value == 1) != (unit == singular):
        raise UnsupportedSchedule(f"{text}: EventBridge wants rate(1 {singular}) or rate(N {singular}s), N > 1")
    return float(value * _UNIT_SECONDS[singular])


class LoopThread:
    """A loop (``_run``) on its own daemon thread, asked to stop with ``request_stop()`` and joined with a bound."""

    def _init_thread(self, name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        self._stop.set()

    def join(self) -> None:
        self._thread.join(timeout=_STOP_GRACE_SECONDS)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


class ScheduleRunner(LoopThread):
    """Fires one schedule in a background thread: every ``interval_seconds``, one invocation at a time."""

    def __init__(
        self,
        source: ScheduleSource,
        invoke: Callable[[dict[str, Any]], Invocation],
        interval_seconds: float,
        *,
        region: str = REGION,
        account: str = ACCOUNT_ID,
    ) -> None:
        if interval_seconds <= 0:
            raise ValueError("the interval must be positive")
        self.source = source
        self.interval_seconds = interval_seconds
        self.rule_arn = rule_arn(source.rule_name, region=region, account=account)
        self.invocations = 0
        self.skipped_ticks = 0
        self._region = region
        self._account = account
        self._invoke = invoke
        self._init_thread(f"schedule-{source.function_logical_id}-{source.event_name}")

    def event(self) -> dict[str, Any]:
        if self.source.input is not None:
            event: dict[str, Any] = json.loads(self.source.input)
            return event
        return scheduled_event(self.rule_arn, region=self._region, account=self._account)

    def _run(self) -> None:
        # Like a new rule: the first firing comes one interval after the start.
        next_tick = time.monotonic() + self.interval_seconds
        while not self._stop.wait(max(0.0, next_tick - time.monotonic())):
            self.fire()
            next_tick += self.interval_seconds
            now = time.monotonic()
            if next_tick < now:  # the invocation outlasted ticks: they are skipped, not run back to back
                missed = int((now - next_tick) // self.interval_seconds) + 1
                self.skipped_ticks += missed
                next_tick += missed * self.interval_seconds
                log.info("schedule  %s: %d tick(s) skipped, the invocation was still running", self._label, missed)

    def fire(self) -> Invocation | None:
        """Invoke the function once with the schedule's event (None: the function is already stopped)."""
        try:
            invocation = self._invoke(self.event())
        except FunctionError as problem:
            if not self._stop.is_set():
                log.error("schedule  %s: %s", self._label, problem)
            return None
        except Exception:
            log.exception("schedule  %s: the invocation failed", self._label)
            return None
        self.invocations += 1
        if not invocation.ok:
            log.error("schedule  %s: function error %s", self._label, invocation.error)
        else:  # the function logs what it did; a line per tick here would double the output
            log.debug("schedule  %s: %s %.0f ms", self._label, invocation.payload, invocation.duration_ms)
        return invocation

    @property
    def _label(self) -> str:
        return f"{self.source.function_logical_id}.{self.source.event_name}"
