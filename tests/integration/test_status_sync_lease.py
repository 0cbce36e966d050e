"""One status sync pass at a time without reserved concurrency: the lease in the executions table
(``hilos_runner.lease``) under moto, and status_sync's handler skipping a tick while another pass holds it."""

from typing import Any

import pytest

from hilos_runner.lease import STATUS_SYNC_LEASE, Lease
from tests.fake_hilos import FakeHilos
from tests.helpers import FLOW_ID, call_run_api, run_body, sync_pass


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def lease(aws: Any, clock: Clock) -> Lease:
    import boto3

    return Lease(boto3.client("dynamodb"), aws.physical_ids["ExecutionsTable"], STATUS_SYNC_LEASE, clock)


def test_one_holder_at_a_time_until_it_gives_the_lease_back(aws: Any, clock: Clock):
    first, second = lease(aws, clock), lease(aws, clock)
    assert first.acquire("pass-1", seconds=120)
    assert not second.acquire("pass-2", seconds=120)
    second.release("pass-2")  # not its lease: nothing happens
    assert not second.acquire("pass-2", seconds=120)
    first.release("pass-1")
    assert second.acquire("pass-2", seconds=120)


def test_a_holder_that_died_keeps_the_lease_only_until_it_expires(aws: Any, clock: Clock):
    crashed, next_tick = lease(aws, clock), lease(aws, clock)
    assert crashed.acquire("pass-1", seconds=120)
    clock.now += 119
    assert not next_tick.acquire("pass-2", seconds=120)
    clock.now += 2
    assert next_tick.acquire("pass-2", seconds=120)
    crashed.release("pass-1")  # a late release of an expired lease leaves the new holder's alone
    assert not lease(aws, clock).acquire("pass-3", seconds=120)


def test_the_lease_item_expires_from_the_table_and_is_no_run(aws: Any, clock: Clock):
    import boto3

    assert lease(aws, clock).acquire("pass-1", seconds=120)
    item = boto3.client("dynamodb").get_item(
        TableName=aws.physical_ids["ExecutionsTable"], Key={"run_id": {"S": "lease#status-sync"}}
    )["Item"]
    assert int(item["expires_at"]["N"]) > clock.now  # the table's TTL removes it once idle
    assert not {"listed_flow_id", "sync_pending"} & set(item)  # in neither index
    assert call_run_api("GET", "/runs/lease%23status-sync").status in (404, 422)


def test_a_tick_while_another_pass_holds_the_lease_reads_nothing_then_the_next_one_syncs(
    aws: Any, hilos: FakeHilos, monkeypatch: pytest.MonkeyPatch
):
    import boto3

    assert call_run_api("POST", f"/flows/{FLOW_ID}/runs", run_body(1)).status == 201
    running = Lease(boto3.client("dynamodb"), aws.physical_ids["ExecutionsTable"], STATUS_SYNC_LEASE)
    assert running.acquire("a-pass-still-running", seconds=120)

    assert sync_pass(aws, monkeypatch) == {"skipped": "another pass holds the status-sync lease"}
    assert sum(hilos.reads.values()) == 0

    running.release("a-pass-still-running")
    hilos.move_all("RUNNING", running=lambda n: n)
    report = sync_pass(aws, monkeypatch)
    assert report["outcomes"] == {"updated": 1}
    assert sum(hilos.reads.values()) == 1
    # The pass gave the lease back: the next tick is not kept out.
    assert "skipped" not in sync_pass(aws, monkeypatch)
