"""Contact outcomes, retries and bulk status over real sockets: runs started over HTTP are finished by the Hilos
sandbox (phones ending in 7 fail, in 9 expire, each with a reason) and followed by the scheduled status sync; the
API lists who did not get the flow, the ``hilos-runner`` CLI writes them as CSV and retries them, and a bulk run of
three chunks stays IN_PROGRESS while its chunks run, then ends COMPLETED_WITH_ERRORS with one bulk event.

Hilos reads are counted by the sandbox itself (``lookup_reads`` of the contact list endpoint); this module has its
own stack, so nothing else reads that list meanwhile (no run of this stack loses its answer, so reconciliation
never lists contacts).
"""

import csv
import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hilos_runner_cli import main as cli
from hilos_runner_cli.api_commands import API_TOKEN_VARIABLE
from local.running_stack import RunningStack, wait_for
from tests.e2e.conftest import SYNC_STACK_ARGS, stack_of_tests
from tests.e2e.local_stack import WAIT_SECONDS, CompletionEvents, wait_for_status

pytestmark = pytest.mark.e2e

PHONES = ["+5215500000011", "+5215500000027", "+5215500000039", "+5215500000042", "+5215500000057"]
NOT_REACHED = ["+5215500000027", "+5215500000039", "+5215500000057"]  # 7: FAILED, 9: EXPIRED
CONTACTS_LIST = "flow-execution-contact"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with stack_of_tests(tmp_path_factory.mktemp("outcomes-stack"), *SYNC_STACK_ARGS, "BulkChunkSize=2") as stack:
        yield stack


@pytest.fixture(scope="module")
def events(stack: RunningStack) -> CompletionEvents:
    return CompletionEvents(stack)


def contact_reads(stack: RunningStack) -> int:
    reads: int = stack.sandbox_stats()["lookup_reads"].get(CONTACTS_LIST, 0)
    return reads


def hilos_runs(stack: RunningStack, flow_id: str) -> int:
    return sum(1 for call in stack.calls_for(flow_id) if call["method"] == "POST")


def hilos_runner(stack: RunningStack, monkeypatch: pytest.MonkeyPatch, *argv: str) -> tuple[int, str, str]:
    """The CLI in this process, against this stack's API (its URL given, its token in the environment)."""
    monkeypatch.setenv(API_TOKEN_VARIABLE, stack.info["api_token"])
    out, err = io.StringIO(), io.StringIO()
    status = cli.main([*argv, "--api-url", stack.info["api_url"]], stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def test_the_failed_and_expired_contacts_of_a_run_are_listed_kept_and_retried_once(
    stack: RunningStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    flow_id = str(uuid.uuid4())
    body = {"contact_list": [{"phone": phone, "first_name": "Ana"} for phone in PHONES], "has_priority": True}
    created = stack.api("POST", f"/flows/{flow_id}/runs", json=body)
    assert created.status_code == 201, created.text
    run_id = created.json()["run"]["run_id"]
    finished = wait_for_status(stack, run_id, "COMPLETED")
    assert finished["contacts_url"] == f"/runs/{run_id}/contacts"
    reads_before = contact_reads(stack)

    listed = stack.api("GET", finished["contacts_url"], params={"status": "FAILED,EXPIRED"})

    assert listed.status_code == 200, listed.text
    items = listed.json()["items"]
    assert [(item["phone"], item["status"]) for item in items] == [
        ("+5215500000027", "FAILED"),
        ("+5215500000039", "EXPIRED"),
        ("+5215500000057", "FAILED"),
    ]
    assert all(item["reason"] and item["first_name"] == "Ana" for item in items)
    assert contact_reads(stack) == reads_before + 1  # one page of Hilos' list, then kept

    # Every later read, as JSON, as CSV and through the CLI, costs Hilos nothing.
    everyone = stack.api("GET", finished["contacts_url"]).json()["items"]
    assert [item["phone"] for item in everyone] == PHONES
    as_csv = stack.api("GET", finished["contacts_url"], params={"status": "FAILED"}, headers={"Accept": "text/csv"})
    assert as_csv.headers["Content-Type"].startswith("text/csv")
    assert [row["phone"] for row in csv.DictReader(io.StringIO(as_csv.text))] == ["+5215500000027", "+5215500000057"]
    status, out, err = hilos_runner(stack, monkeypatch, "contacts", run_id, "--status", "FAILED,EXPIRED")
    assert status == 0, err
    assert [row["phone"] for row in csv.DictReader(io.StringIO(out))] == NOT_REACHED
    assert contact_reads(stack) == reads_before + 1

    # The file goes back to the bulk API as it is (fixed or not).
    failed_csv = tmp_path / "failed.csv"
    failed_csv.write_text(out)
    resubmitted = stack.api(
        "POST", f"/flows/{uuid.uuid4()}/bulk-runs", data=failed_csv.read_bytes(), headers={"Content-Type": "text/csv"}
    )
    assert resubmitted.status_code == 202, resubmitted.text
    assert resubmitted.json()["num_contacts"] == 3

    # Retry them: one new Hilos run with exactly those contacts; running the command again starts nothing more.
    runs_before = hilos_runs(stack, flow_id)
    status, out, err = hilos_runner(stack, monkeypatch, "retry", run_id)
    assert status == 0, err
    retry_id = out.split()[1]
    status, again, err = hilos_runner(stack, monkeypatch, "retry", run_id)
    assert status == 0, err
    assert again.split()[1] == retry_id
    assert hilos_runs(stack, flow_id) == runs_before + 1
    retry = stack.api("GET", f"/runs/{retry_id}").json()
    assert (retry["retry_of"], retry["num_contacts"]) == (run_id, 3)
    [sent] = [call for call in stack.calls_for(flow_id) if call["method"] == "POST"][-1:]
    assert sent.get("execution_id") == retry["hilos_execution_id"]
    # What Hilos ran the retry for, as Hilos lists it: exactly the contacts that did not get the flow.
    wait_for_status(stack, retry_id, "COMPLETED")
    retried = stack.api("GET", f"/runs/{retry_id}/contacts").json()["items"]
    assert [(item["phone"], item["first_name"]) for item in retried] == [(phone, "Ana") for phone in NOT_REACHED]


def test_a_bulk_run_is_in_progress_while_its_chunks_run_then_completed_with_errors_and_announced_once(
    stack: RunningStack, events: CompletionEvents, monkeypatch: pytest.MonkeyPatch
):
    flow_id = str(uuid.uuid4())
    stack.set_faults(hold_flows={flow_id: "RUNNING"})
    submitted = stack.api("POST", f"/flows/{flow_id}/bulk-runs", json={"contact_list": [{"phone": p} for p in PHONES]})
    assert submitted.status_code == 202, submitted.text
    bulk_id, status_url = submitted.json()["id"], submitted.json()["status_url"]
    assert submitted.json()["chunks"] == 3

    def chunks_running() -> Any:
        view = stack.api("GET", status_url).json()
        return view["chunks_by_status"] == {"RUNNING": 3} and view

    held = wait_for(chunks_running, timeout=WAIT_SECONDS, interval=0.3)
    assert held, stack.api("GET", status_url).text
    assert held["status"] == "IN_PROGRESS"
    parent = wait_for_status(stack, bulk_id, "IN_PROGRESS")  # the record and the listing say the same
    assert [run["status"] for run in stack.api("GET", f"/flows/{flow_id}/runs").json()["items"]] == ["IN_PROGRESS"]
    assert parent["contacts_url"] == f"/bulk-runs/{bulk_id}/contacts"
    events.poll()
    assert not events.of_bulk_run(bulk_id)

    stack.set_faults(hold_flows={})  # the chunks' executions finish
    finished = wait_for_status(stack, bulk_id, "COMPLETED_WITH_ERRORS")
    assert finished["counters"] == {"running": 0, "completed": 2, "failed": 2, "expired": 1, "canceled": 0}
    view = stack.api("GET", status_url).json()
    assert (view["status"], view["chunks_finished"]) == ("COMPLETED_WITH_ERRORS", 3)

    bulk_events = wait_for(lambda: events.poll() and events.of_bulk_run(bulk_id), timeout=WAIT_SECONDS)
    assert bulk_events, "no bulk run finished event"
    [bulk_event] = bulk_events
    assert bulk_event["detail-type"] == "Hilos Bulk Run Finished"
    assert bulk_event["detail"]["counters"] == finished["counters"]
    assert bulk_event["detail"]["contacts_url"] == f"/bulk-runs/{bulk_id}/contacts"

    not_reached = stack.api("GET", view["contacts_url"], params={"status": "FAILED,EXPIRED", "limit": "2"}).json()
    assert [item["phone"] for item in not_reached["items"]] == NOT_REACHED[:2]
    assert not_reached["next_cursor"]

    status, out, err = hilos_runner(stack, monkeypatch, "contacts", bulk_id, "--page-size", "2")  # three pages
    assert status == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(row["phone"], row["first_name"]) for row in rows] == [(phone, "") for phone in PHONES]
    assert "5 contacts" in err

    status, out, err = hilos_runner(stack, monkeypatch, "retry", bulk_id)
    assert status == 0, err
    assert "3 contacts, 2 chunks" in out
    retry_id = out.split()[2]
    retried = stack.api("GET", f"/bulk-runs/{retry_id}").json()
    assert retried["retry_of"] == bulk_id
    assert stack.api("GET", f"/bulk-runs/{retry_id}/contacts").status_code == 200
    events.poll()
    assert len(events.of_bulk_run(bulk_id)) == 1
