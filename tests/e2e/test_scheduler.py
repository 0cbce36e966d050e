"""The local stack's scheduler, independent of what status_sync does: a tiny template's Schedule events read like
SAM reads them, rate expressions parsed like EventBridge, and a dummy function in a real execution environment
invoked with EventBridge's Scheduled Event, one invocation at a time, until the scheduler stops."""

import json
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from local.events import scheduled_event
from local.functions import FunctionRuntime, Invocation
from local.running_stack import wait_for
from local.scheduler import ScheduleRunner, UnsupportedSchedule, rate_seconds
from local.template import FunctionSpec, ScheduleSource, StackResources, schedule_sources

pytestmark = pytest.mark.e2e

WAIT_SECONDS = 30


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(1 minute)", 60),
        ("rate(2 minutes)", 120),
        ("rate(1 hour)", 3600),
        ("rate(12 hours)", 43_200),
        ("rate(1 day)", 86_400),
        ("rate(7 days)", 604_800),
        ("  rate(5 minutes) ", 300),
    ],
)
def test_rate_expressions_give_their_interval(expression, seconds):
    assert rate_seconds(expression) == seconds


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("cron(0/5 * * * ? *)", "--sync-interval"),
        ("rate(1 minutes)", "rate(1 minute)"),  # EventBridge refuses the plural for 1 ...
        ("rate(2 minute)", "rate(N minutes)"),  # ... and the singular for more
        ("rate(0 minutes)", "rate(N minutes)"),
        ("rate(5 seconds)", "not a rate"),
        ("every 5 minutes", "not a rate"),
    ],
)
def test_what_eventbridge_would_refuse_or_the_stack_cannot_run_is_refused_with_a_reason(expression, says):
    with pytest.raises(UnsupportedSchedule) as refused:
        rate_seconds(expression)
    assert says in str(refused.value)


def tiny_stack() -> StackResources:
    """A template with two scheduled functions and one that is not, parameters resolved as SAM would."""
    template: dict[str, Any] = {
        "Parameters": {"Tick": {"Type": "String", "Default": "rate(2 minutes)"}},
        "Resources": {
            "Ticker": {
                "Type": "AWS::Serverless::Function",
                "Properties": {
                    "Handler": "ticker.handler",
                    "CodeUri": "x/",
                    "ReservedConcurrentExecutions": 1,
                    "Events": {
                        "Every": {"Type": "Schedule", "Properties": {"Schedule": {"Ref": "Tick"}}},
                        "Off": {"Type": "Schedule", "Properties": {"Schedule": "rate(1 day)", "Enabled": False}},
                        "Named": {
                            "Type": "Schedule",
                            "Properties": {"Schedule": "rate(1 hour)", "Name": "nightly", "Input": '{"job": "x"}'},
                        },
                    },
                },
            },
            "Other": {
                "Type": "AWS::Serverless::Function",
                "Properties": {"Handler": "o.h", "CodeUri": "y/", "Events": {"Api": {"Type": "HttpApi"}}},
            },
        },
    }
    return StackResources(template, "tiny", {"Tick": "rate(3 minutes)"})


def test_schedule_events_of_the_template_become_schedules():
    sources = {source.event_name: source for source in schedule_sources(tiny_stack())}

    assert set(sources) == {"Every", "Off", "Named"}
    every = sources["Every"]
    assert (every.function_logical_id, every.expression, every.enabled) == ("Ticker", "rate(3 minutes)", True)
    assert every.rule_name == "tiny-TickerEvery"  # SAM's logical id of the rule, under the stack's name
    assert every.input is None
    assert sources["Off"].enabled is False
    assert (sources["Named"].rule_name, sources["Named"].input) == ("nightly", '{"job": "x"}')


def test_the_scheduled_event_has_eventbridges_shape():
    event = scheduled_event("arn:aws:events:us-east-1:123456789012:rule/tiny-TickerEvery")

    assert set(event) == {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}
    assert (event["version"], event["detail-type"], event["source"]) == ("0", "Scheduled Event", "aws.events")
    assert (event["account"], event["region"], event["detail"]) == ("123456789012", "us-east-1", {})
    assert event["resources"] == ["arn:aws:events:us-east-1:123456789012:rule/tiny-TickerEvery"]
    assert datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%SZ")  # second precision, Z, like EventBridge
    assert scheduled_event("arn:x")["id"] != event["id"]


class SlowFunction:
    """Counts how many invocations run at once; each takes ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.events: list[dict[str, Any]] = []
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> Invocation:
        with self._lock:
            self.events.append(event)
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(self.seconds)
        with self._lock:
            self.running -= 1
        return Invocation(payload={"ok": True})


def source(**overrides: Any) -> ScheduleSource:
    fields: dict[str, Any] = {
        "function_logical_id": "Ticker",
        "event_name": "Every",
        "expression": "rate(1 minute)",
        "rule_name": "tiny-TickerEvery",
        "enabled": True,
        **overrides,
    }
    return ScheduleSource(**fields)


def test_a_tick_that_comes_while_the_invocation_runs_is_skipped_not_overlapped():
    function = SlowFunction(seconds=0.3)
    runner = ScheduleRunner(source(), function, interval_seconds=0.05)

    runner.start()
    try:
        assert wait_for(lambda: len(function.events) >= 3 and runner.skipped_ticks > 0, timeout=WAIT_SECONDS)
    finally:
        runner.request_stop()
        runner.join()

    assert function.most_at_once == 1
    assert runner.invocations == len(function.events)
    assert all(event["resources"] == [runner.rule_arn] for event in function.events)
    assert len({event["id"] for event in function.events}) == len(function.events)


def test_an_event_input_replaces_the_scheduled_event():
    function = SlowFunction(seconds=0)
    runner = ScheduleRunner(source(input='{"job": "x"}'), function, interval_seconds=60)

    runner.fire()

    assert function.events == [{"job": "x"}]


def test_stopping_ends_the_thread_even_between_long_ticks():
    function = SlowFunction(seconds=0)
    runner = ScheduleRunner(source(), function, interval_seconds=3600)
    runner.start()

    runner.request_stop()
    runner.join()  # gives up after a few seconds: the wait for the next tick must be cut short

    assert not runner.alive
    assert function.events == []  # the first tick comes one interval after the start, like a new rule


DUMMY_HANDLER = """
import json, os

def handler(event, context):
    with open(os.environ["EVENTS_FILE"], "a") as events:
        events.write(json.dumps({"event": event, "function": context.function_name}) + "\\n")
    return {"seen": event["detail-type"]}
"""


def test_a_dummy_function_in_an_execution_environment_is_invoked_on_schedule(tmp_path: Path):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "ticker.py").write_text(DUMMY_HANDLER)
    events_file = tmp_path / "events.jsonl"
    spec = FunctionSpec(
        logical_id="Ticker",
        function_name="tiny-Ticker",
        code_dir=tmp_path / "code",
        handler_module="ticker",
        handler_name="handler",
        layer_dirs=(),
        timeout_seconds=10,
        memory_mb=128,
        environment={"EVENTS_FILE": str(events_file)},
        reserved_concurrency=1,
    )
    runtime = FunctionRuntime(spec, 1)
    runtime.start()
    runner = ScheduleRunner(source(), runtime.invoke, interval_seconds=0.2, region="eu-west-1")
    runner.start()
    try:
        lines = wait_for(
            lambda: events_file.exists() and len(found := events_file.read_text().splitlines()) >= 2 and found,
            timeout=WAIT_SECONDS,
        )
    finally:
        runner.request_stop()
        runner.join()
        processes = [environment.process for environment in runtime._all]
        runtime.close()

    assert lines, "the dummy function was not invoked twice"
    seen = [json.loads(line) for line in lines]
    assert {item["function"] for item in seen} == {"tiny-Ticker"}
    assert {item["event"]["detail-type"] for item in seen} == {"Scheduled Event"}
    assert {item["event"]["region"] for item in seen} == {"eu-west-1"}
    assert seen[0]["event"]["resources"] == ["arn:aws:events:eu-west-1:123456789012:rule/tiny-TickerEvery"]
    assert not runner.alive
    assert processes
    assert not any(process.is_alive() for process in processes)
