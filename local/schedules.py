"""EventBridge Scheduler's one-time schedules, fired locally: moto keeps the schedules run_api and bulk_worker create
(create_schedule, delete_schedule) but never fires them. ``OneTimeSchedules`` watches the stack's schedule groups and,
when a schedule's ``at(...)`` time (in its time zone) has come, does what EventBridge Scheduler would: sends the
target's Input to the target SQS queue, then deletes the schedule when its ActionAfterCompletion is DELETE.

- Each schedule fires once (EventBridge: at least once; the worker's conditional start makes a second delivery
  harmless, and the tests deliver twice on purpose). A schedule deleted before its time (a cancel) never fires.
- Only SQS targets and at() expressions: what hilos_runner creates. Anything else is logged and left alone.
- Polls every ``interval_seconds`` (0.2 s): a run scheduled 10 s ahead starts within a fraction of a second of its
  time, where the real scheduler promises the minute.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from local.scheduler import LoopThread

log = logging.getLogger("local.schedules")

_AT = re.compile(r"at\((?P<moment>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)")


@dataclass(frozen=True)
class OneTimeSchedule:
    group: str
    name: str
    due: datetime  # UTC
    target_arn: str
    message: str
    delete_after: bool


def due_time(expression: str, timezone: str | None) -> datetime | None:
    """When an ``at(yyyy-mm-ddThh:mm:ss)`` expression fires, in UTC (None: not a one-time expression)."""
    found = _AT.fullmatch(expression.strip())
    if found is None:
        return None
    local = datetime.fromisoformat(found["moment"]).replace(tzinfo=ZoneInfo(timezone or "UTC"))
    return local.astimezone(UTC)


class OneTimeSchedules(LoopThread):
    """Fires the one-time schedules of ``groups`` at their time, from a background thread (or by ``fire_due()``)."""

    def __init__(
        self,
        scheduler: Any,
        sqs: Any,
        groups: Sequence[str],
        *,
        interval_seconds: float = 0.2,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._scheduler = scheduler
        self._sqs = sqs
        self._groups = list(groups)
        self._interval = interval_seconds
        self._clock = clock
        self._known: dict[tuple[str, str], OneTimeSchedule | None] = {}  # None: not one we can fire
        self._queue_urls: dict[str, str] = {}
        self.fired: list[OneTimeSchedule] = []
        self._init_thread("one-time-schedules")

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.fire_due()
            except Exception:
                if not self._stop.is_set():
                    log.exception("schedules  reading or firing the one-time schedules failed; trying again")

    def fire_due(self) -> list[OneTimeSchedule]:
        """Send every schedule whose time has come (once), and delete those that ask for it; returns them."""
        now = self._clock()
        current = set(self._listed())
        for key in set(self._known) - current:  # deleted (canceled, or fired and deleted)
            del self._known[key]
        fired = []
        for key in sorted(current):
            schedule = self._known[key] if key in self._known else self._read(*key)
            self._known[key] = schedule
            if schedule is None or schedule.due > now:
                continue
            self._fire(schedule)
            self._known[key] = None  # once
            fired.append(schedule)
        return fired

    def _listed(self) -> list[tuple[str, str]]:
        names = []
        for group in self._groups:
            for page in self._scheduler.get_paginator("list_schedules").paginate(GroupName=group, State="ENABLED"):
                names += [(group, item["Name"]) for item in page.get("Schedules", [])]
        return names

    def _read(self, group: str, name: str) -> OneTimeSchedule | None:
        detail = self._scheduler.get_schedule(GroupName=group, Name=name)
        target = detail.get("Target", {})
        due = due_time(detail.get("ScheduleExpression", ""), detail.get("ScheduleExpressionTimezone"))
        if due is None or ":sqs:" not in target.get("Arn", ""):
            log.warning("schedules  %s/%s: only at(...) schedules with an SQS target are fired locally", group, name)
            return None
        return OneTimeSchedule(
            group=group,
            name=name,
            due=due,
            target_arn=target["Arn"],
            message=target.get("Input", ""),
            delete_after=detail.get("ActionAfterCompletion") == "DELETE",
        )

    def _fire(self, schedule: OneTimeSchedule) -> None:
        self._sqs.send_message(QueueUrl=self._queue_url(schedule.target_arn), MessageBody=schedule.message)
        late = (self._clock() - schedule.due).total_seconds()
        log.info("schedules  %s fired (%.1f s after its time)", schedule.name, late)
        self.fired.append(schedule)
        if schedule.delete_after:  # a cancel in the meantime deleted it already: what was sent starts nothing
            with contextlib.suppress(self._scheduler.exceptions.ResourceNotFoundException):
                self._scheduler.delete_schedule(GroupName=schedule.group, Name=schedule.name)

    def _queue_url(self, arn: str) -> str:
        if arn not in self._queue_urls:
            _, _, _, _, account, name = arn.split(":", 5)
            self._queue_urls[arn] = self._sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
        return self._queue_urls[arn]
