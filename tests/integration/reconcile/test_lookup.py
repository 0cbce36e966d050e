"""Reconciliation in-process, how the lookup decides: two candidates are never resent, list errors and throttling
resend nothing, the lookup pages through newer executions and stops below the send window, a candidate Hilos has not
finished listing is not decided on; and a large keyed request is never taken for "nothing started".

Short timeouts (QUICK, conftest.py) make one call budget 0.2 s; nothing here asserts on timing."""

import json
from typing import Any

import pytest

from tests.fake_hilos import FakeHilos, minutes_ago
from tests.helpers import FLOW_ID, call_run_api, run_body, sync_pass
from tests.integration.reconcile.lost_runs import lost_run, past_the_call_budget, record


def test_two_candidates_are_never_resent_and_alarm_once_past_the_bound(
    aws: Any, hilos_lists: FakeHilos, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    from hilos_runner import factories

    run_id = lost_run(hilos_lists, "after")
    phone = run_body()["contact_list"][0]["phone"]
    hilos_lists.add_execution([phone])  # the same contact, started by someone else in the same minute

    past_the_call_budget()
    report = sync_pass(aws, monkeypatch)

    assert report["reconciled"] == {"ambiguous": 1}
    undecided = record(run_id)
    assert (undecided.status, undecided.resolution) == ("UNKNOWN", "AMBIGUOUS")
    assert "2 executions in Hilos match this run" in undecided.sync_error
    assert hilos_lists.run_calls == 1
    assert "RunsUnresolved" not in capsys.readouterr().out  # not yet past RECONCILE_ALARM_AFTER_SECONDS

    # An hour later it is still undecided: counted in RunsUnresolved (alarmed), still never resent.
    store = factories.execution_store()
    store.put(undecided.model_copy(update={"sent_at": minutes_ago(61), "next_sync_at": minutes_ago(1)}))
    for execution in hilos_lists.executions:
        execution["created_on"] = minutes_ago(61).isoformat()
    report = sync_pass(aws, monkeypatch)
    assert report["reconciled"] == {"ambiguous": 1}
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert any(metric.get("RunsUnresolved") == [1.0] for metric in emitted)
    assert hilos_lists.run_calls == 1


@pytest.mark.parametrize(
    ("status", "headers"),
    [(500, {}), (503, {}), (429, {"Retry-After": "30"})],
    ids=["500", "503", "429"],
)
def test_hilos_list_errors_and_throttling_are_never_resent(
    aws: Any,
    hilos_lists: FakeHilos,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    headers: dict[str, str],
):
    first = lost_run(hilos_lists, "before")
    second = lost_run(hilos_lists, "before")
    past_the_call_budget()
    hilos_lists.list_failures = [(status, headers)] * 10

    report = sync_pass(aws, monkeypatch, WORKER_CONCURRENCY="1")

    assert hilos_lists.run_calls == 2  # nothing resent
    assert [record(run_id).status for run_id in (first, second)] == ["UNKNOWN", "UNKNOWN"]
    if status == 429:
        # The pass stops at the first 429: the other run is not looked up in this pass.
        assert report["throttled"] is True
        assert (report["reconciled"], report["not_reached"]) == ({"ambiguous": 1}, 1)
    else:
        assert report["reconciled"] == {"ambiguous": 2}
    looked = [record(run_id) for run_id in (first, second) if record(run_id).resolution == "AMBIGUOUS"]
    assert looked
    assert all("Hilos could not be read" in run.sync_error for run in looked)

    hilos_lists.list_failures = []  # Hilos is back: both are resolved, each resent once
    report = sync_pass(aws, monkeypatch)
    assert report["reconciled"] == {"resent": 2}
    assert len(hilos_lists.created) == 2


def test_the_lookup_pages_through_newer_executions_and_stops_below_the_window(
    aws: Any, hilos_lists: FakeHilos, monkeypatch: pytest.MonkeyPatch
):
    for number in range(6):  # pages of 2: three pages of older runs of the flow, same size, other phones
        hilos_lists.add_execution([f"+52155000000{number:02d}"], created_on=minutes_ago(60 + number))
    run_id = lost_run(hilos_lists, "after")
    for number in range(5):  # and newer ones on top of ours
        hilos_lists.add_execution([f"+52155111111{number:02d}"])

    report = sync_pass(aws, monkeypatch)

    assert report["reconciled"] == {"found": 1}
    assert str(record(run_id).hilos_execution_id) == hilos_lists.created[0]["id"]
    # Pages 1-3 hold the six newer-or-ours executions; page 4 is the first below the window: no page 5.
    assert hilos_lists.list_reads["executions"] == 4


def test_the_runs_contacts_in_an_execution_just_after_the_window_stop_a_resend(
    aws: Any, hilos_lists: FakeHilos, monkeypatch: pytest.MonkeyPatch
):
    run_id = lost_run(hilos_lists, "before")
    # Created (by Hilos' clock) five minutes after the send: outside the window with a 2-minute skew allowance,
    # but it may be this run under a clock further off, or a new run of these contacts: never resend then.
    phone = run_body()["contact_list"][0]["phone"]
    late = hilos_lists.add_execution([phone], created_on=minutes_ago(-5))
    past_the_call_budget()

    report = sync_pass(aws, monkeypatch)

    assert report["reconciled"] == {"ambiguous": 1}
    assert f"execution {late} was created after the send window" in record(run_id).sync_error
    assert hilos_lists.run_calls == 1


def test_a_candidate_hilos_has_not_finished_listing_is_not_decided_on(
    aws: Any, hilos_lists: FakeHilos, monkeypatch: pytest.MonkeyPatch
):
    body = run_body(3)
    hilos_lists.lose_next.append("before")
    answer = call_run_api("POST", f"/flows/{FLOW_ID}/runs", body)
    run_id = answer.body["run_id"]
    phones = [item["phone"] for item in body["contact_list"]]
    hilos_lists.add_execution(phones, listed=2)  # three contacts, two listed so far
    past_the_call_budget()

    report = sync_pass(aws, monkeypatch)

    assert report["reconciled"] == {"ambiguous": 1}
    assert "has not listed every contact" in record(run_id).sync_error
    assert hilos_lists.run_calls == 1


# -- a large keyed request: no false "nothing started" ---------------------------------------------------


def big_body(contacts: int = 1000) -> dict[str, Any]:
    """About 1 MB of JSON whose kept copy does not compress under DynamoDB's item limit (hex digests)."""
    import hashlib

    return {
        "contact_list": [
            {
                "phone": f"+52155300{number:05d}",
                "meta": {"p": "".join(hashlib.sha256(f"{number}-{part}".encode()).hexdigest() for part in range(14))},
            }
            for number in range(contacts)
        ]
    }


def test_a_large_keyed_request_starts_once_and_gets_the_same_answer_on_repeat(aws: Any, hilos_lists: FakeHilos):
    from hilos_runner import factories

    body = big_body()
    assert len(json.dumps(body)) > 900_000
    headers = {"Idempotency-Key": "big-1"}

    first = call_run_api("POST", f"/flows/{FLOW_ID}/runs", body, headers=headers)
    again = call_run_api("POST", f"/flows/{FLOW_ID}/runs", body, headers=headers)

    assert first.status == 201, first.body
    assert again.status == 201, again.body
    assert again.body == first.body
    assert "contact_list" not in first.body["hilos"]  # Hilos' echo of the contacts is not kept or answered
    assert hilos_lists.run_calls == 1
    # The body kept for a resend is the one sent, whole, over several items.
    kept = factories.execution_store().request_body(first.body["run"]["run_id"])
    assert kept is not None
    assert json.loads(kept)["contact_list"] == body["contact_list"]


def test_once_hilos_was_called_a_failure_to_store_the_answer_is_not_nothing_started(aws: Any, hilos_lists: FakeHilos):
    from hilos_runner import factories
    from tests.reliability.faults import aws_error, inject

    # Powertools' write of the result for the key (UpdateItem on the idempotency table) fails.
    inject(
        factories.aws_client("dynamodb"),
        "UpdateItem",
        lambda: aws_error("ProvisionedThroughputExceededException", "UpdateItem"),
    )
    headers = {"Idempotency-Key": "store-fails-1"}

    answer = call_run_api("POST", f"/flows/{FLOW_ID}/runs", run_body(), headers=headers)

    assert answer.status == 201, answer.body
    assert hilos_lists.run_calls == 1
    # The key's run id comes from flow, key and body: a repeat finds the run, not a second Hilos call.
    factories.reset()
    _drop_idempotency_records()
    repeat = call_run_api("POST", f"/flows/{FLOW_ID}/runs", run_body(), headers=headers)
    assert repeat.status == 201
    assert repeat.body["run"]["run_id"] == answer.body["run"]["run_id"]
    assert hilos_lists.run_calls == 1


def _drop_idempotency_records() -> None:
    """As if Powertools' IN_PROGRESS record had expired (it does when the invocation's time is up)."""
    from hilos_runner import factories
    from hilos_runner.settings import get_settings

    client, table = factories.aws_client("dynamodb"), get_settings().idempotency_table_name
    for item in client.scan(TableName=table)["Items"]:
        client.delete_item(TableName=table, Key={"id": item["id"]})
