"""The fault run in small (100 queued runs; `make chaos` does 1,000): under a 30 % mix of Hilos faults no
run is lost and none is started twice, and every outcome lands where the design says."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.local_stack import RunningStack, start_stack, stop_stack
from tests.reliability.chaos import FAULT_KINDS, STACK_ARGS, STARTED_STATUSES, ChaosPlan, ChaosReport, run_chaos

pytestmark = pytest.mark.e2e

RUNS = 100


@pytest.fixture(scope="module")
def chaos_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    # Its own stack: the fault rate is global to the sandbox, other tests' flows must not share it.
    stack = start_stack(Path(tmp_path_factory.mktemp("chaos-stack")), *STACK_ARGS)
    try:
        yield stack
    finally:
        stop_stack(stack)


@pytest.fixture(scope="module")
def report(chaos_stack: RunningStack) -> ChaosReport:
    result = run_chaos(chaos_stack, ChaosPlan(runs=RUNS, deadline_seconds=150))
    print(result.figures())
    return result


def test_no_run_is_lost_and_none_is_started_twice(report: ChaosReport):
    assert report.queue_left == 0, report.figures()
    assert report.lost == [], report.figures()
    assert report.duplicates == [], report.figures()
    assert report.holds()


def test_every_fault_kind_was_injected_at_about_the_planned_rate(report: ChaosReport):
    faults = report.sandbox["faults"]
    assert set(faults) == set(FAULT_KINDS), faults  # otherwise the run proves less than it says
    assert sum(faults.values()) >= 0.15 * report.sandbox["requests"]


def test_every_run_ends_where_the_design_says(report: ChaosReport):
    assert len(report.runs) == RUNS
    for run in report.runs:
        if run.kind in ("refused", "invalid"):
            assert run.status == "REJECTED", run
            assert not run.dead_lettered, run
        elif run.kind == "outage":  # every attempt 503: retried maxReceiveCount times, then the DLQ
            assert run.dead_lettered, run
            assert run.status == "FAILED", run
            assert "HTTP 503" in (run.last_error or ""), run
        else:
            assert run.status in STARTED_STATUSES | {"UNKNOWN"} or (run.dead_lettered and run.status == "FAILED"), run


def test_only_answers_lost_after_the_run_was_created_are_unknown(report: ChaosReport):
    faults = report.sandbox["faults"]
    unknown = report.by_status["UNKNOWN"]
    # A slow answer or a reset comes after Hilos created the run: recorded UNKNOWN, never resent.
    assert unknown == faults.get("slow", 0) + faults.get("reset", 0)
    # Every run Hilos created is one we recorded as started (or as possibly started): none unaccounted.
    assert report.sandbox["runs_created"] == report.started + unknown


def test_dead_letters_keep_the_producers_message_and_a_reason(report: ChaosReport):
    assert report.dead_lettered
    for run in report.dead_lettered:
        assert run.dlq_body is not None
        assert '"contact_list"' in run.dlq_body
    assert all("no record" not in reason for reason in report.dlq_reasons)
