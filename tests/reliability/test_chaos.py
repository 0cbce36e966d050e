"""The fault run in small (100 queued runs and 10 API runs; `make chaos` does 1,000 and 100): under a 30 % mix
of Hilos faults, both sides of ambiguity included, no run is lost, none is started twice, reconciliation leaves
none unknown, every run Hilos started holds its execution id, and every outcome lands where the design says."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from local.running_stack import RunningStack, start_stack, stop_stack
from tests.reliability.chaos.drive import run_chaos
from tests.reliability.chaos.plan import FAULT_KINDS, STACK_ARGS, STACK_ENV, STARTED_STATUSES, ChaosPlan
from tests.reliability.chaos.report import ChaosReport

pytestmark = pytest.mark.e2e

RUNS = 100


@pytest.fixture(scope="module")
def chaos_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    # Its own stack: the fault rate is global to the sandbox, other tests' flows must not share it.
    stack = start_stack(Path(tmp_path_factory.mktemp("chaos-stack")), *STACK_ARGS, env=STACK_ENV)
    try:
        yield stack
    finally:
        stop_stack(stack)


@pytest.fixture(scope="module")
def report(chaos_stack: RunningStack) -> ChaosReport:
    result = run_chaos(chaos_stack, ChaosPlan(runs=RUNS, api_runs=RUNS // 10, deadline_seconds=300))
    print(result.figures())
    return result


def test_no_run_is_lost_started_twice_or_left_unknown(report: ChaosReport):
    assert report.queue_left == 0, report.figures()
    assert report.lost == [], report.figures()
    assert report.duplicates == [], report.figures()
    assert report.unknown == [], report.figures()
    assert report.holds(), report.figures()


def test_every_fault_kind_was_injected_at_about_the_planned_rate(report: ChaosReport):
    faults = report.sandbox["faults"]
    assert set(faults) == set(FAULT_KINDS), faults  # otherwise the run proves less than it says
    assert sum(faults.values()) >= 0.15 * report.sandbox["requests"]


def test_every_run_ends_where_the_design_says(report: ChaosReport):
    assert len(report.runs) == RUNS + RUNS // 10
    for run in report.runs:
        if run.kind == "invalid":
            assert run.status == "REJECTED", run
            assert not run.dead_lettered, run
        elif run.kind == "refused":  # Hilos answers 400; unless every send was lost before reaching Hilos
            not_started = run.status == "FAILED" and (run.record or {}).get("resolution") == "NOT_STARTED"
            assert run.status == "REJECTED" or not_started, run
            assert not run.dead_lettered, run
        elif run.kind == "outage":  # every attempt 503: retried maxReceiveCount times, then the DLQ
            assert run.dead_lettered, run
            assert run.status == "FAILED", run
            assert "HTTP 503" in (run.last_error or ""), run
        elif run.status == "FAILED":  # known never started in Hilos, its one resend lost before Hilos too
            assert (run.record or {}).get("resolution") == "NOT_STARTED" or run.dead_lettered, run
        else:
            assert run.status in STARTED_STATUSES, run


def test_every_run_hilos_started_holds_its_execution_id_and_was_announced_once(report: ChaosReport):
    # Each started run has one execution in Hilos, and its record holds that execution's id.
    assert report.sandbox["runs_created"] == report.started, report.figures()
    assert report.started_without_id == [], report.figures()
    assert report.announced_wrongly == [], report.figures()
    # Both sides of ambiguity happened and were resolved: found in Hilos, and resent.
    resolutions = report.resolutions()
    assert resolutions["FOUND"] > 0, report.figures()
    assert resolutions["RESENT"] > 0, report.figures()


def test_dead_letters_keep_the_producers_message_and_a_reason(report: ChaosReport):
    assert report.dead_lettered
    for run in report.dead_lettered:
        assert run.dlq_body is not None
        assert '"contact_list"' in run.dlq_body
    assert all("no record" not in reason for reason in report.dlq_reasons)
