"""Reconciliation in-process: a run whose answer Hilos lost (from run_api, bulk_worker, a crashed resend or a failed
final write) is found in Hilos' lists and followed, or, found nowhere after the grace period, resent once and never
again; a repeated key answers the run as reconciliation left it.

Short timeouts (QUICK, conftest.py) make one call budget 0.2 s, so "past the call budget" and "after the grace
period" arrive within a test; nothing here asserts on timing."""

import json
from datetime import timedelta
from typing import Any

import pytest

from tests.fake_hilos import FakeHilos, minutes_ago
from tests.helpers import FLOW_ID, call_bulk_worker, call_run_api, contact, run_body, sync_pass
from tests.integration.reconcile.lost_runs import CALL_BUDGET_SECONDS, lost_run, past_the_call_budget, record
from tests.reliability.faults import InvocationKilled


def test_a_run_whose_answer_was_lost_after_hilos_created_it_is_found_and_followed(
    aws: Any, hilos_lists: FakeHilos, monkeypatch: pytest.MonkeyPatch
):
    run_id = lost_run(hilos_lists, "after")
    assert record(run_id).status == "UNKNOWN"
    hilos_lists.add_execution(["+5215599999999"])  # another run of the flow, other phones: not ours

    report = sync_pass(aws, monkeypatch)

    assert report["reconciled"] == {"found": 1}
    found = record(run_id)
    assert found.status == "SUBMITTED"
    assert str(found.hilos_execution_id) == hilos_lists.created[0]["id"]
    assert (found.resolution, found.reconcile_attempts, found.resends) == ("FOUND", 1, 0)
    assert hilos_lists.run_calls == 1
    # From now on the status sync follows it like any submitted run.
    report = sync_pass(aws, monkeypatch)
    assert report["outcomes"] == {"updated": 1}
    assert report["reconciled"] == {}


def test_a_repeated_key_answers_the_run_as_reconciliation_left_it(
    aws: Any, hilos_lists: FakeHilos, monkeypatch: pytest.MonkeyPatch
):
    other_phone = {"contact_list": [contact(phone="+5215587654321")]}
    found = lost_run(hilos_lists, "after", **{"Idempotency-Key": "lost-after"})
    not_started = lost_run(hilos_lists, "before", other_phone, **{"Idempotency-Key": "lost-before"})
    hilos_lists.lose_next.append("before")  # its one resend is lost before Hilos too
    past_the_call_budget()
    sync_pass(aws, monkeypatch)
    past_the_call_budget()
    sync_pass(aws, monkeypatch)
    assert (record(found).status, record(not_started).status) == ("SUBMITTED", "FAILED")

    again = call_run_api("POST", f"/flows/{FLOW_ID}/runs", run_body(), headers={"Idempotency-Key": "lost-after"})
    assert again.status == 201
    assert again.body["run"]["run_id"] == found
    assert again.body["run"]["resolution"] == "FOUND"
    again = call_run_api("POST", f"/flows/{FLOW_ID}/runs", other_phone, headers={"Idempotency-Key": "lost-before"})
    assert again.status == 502
    assert (again.body["code"], again.body["run_id"]) == ("run_not_started", not_started)
    assert hilos_lists.run_calls == 3  # two first sends, one resend; the repeats called nothing


def test_refresh_true_reconciles_an_ambiguous_run_at_once(aws: Any, hilos_lists: FakeHilos):
    run_id = lost_run(hilos_lists, "after")

    answer = call_run_api("GET", f"/runs/{run_id}", query={"refresh": "true"})

    assert answer.status == 200
    assert answer.body["status"] == "SUBMITTED"
    assert answer.body["resolution"] == "FOUND"
    assert answer.body["hilos_execution_id"] == hilos_lists.created[0]["id"]
    assert "contacts_digest" not in answer.body  # kept in the table, never answered


def test_not_found_is_resent_once_after_the_grace_period_and_never_again(
    aws: Any, hilos_lists: FakeHilos, monkeypatch: pytest.MonkeyPatch
):
    from hilos_runner import factories

    run_id = lost_run(hilos_lists, "before")
    assert hilos_lists.created == []

    early = sync_pass(aws, monkeypatch, RECONCILE_GRACE_SECONDS="3600")
    assert early["reconciled"] == {"waiting": 1}  # Hilos might still be processing the request: never resent
    assert hilos_lists.run_calls == 1
    waiting = record(run_id)
    assert waiting.status == "UNKNOWN"
    assert waiting.next_sync_at == waiting.sent_at + timedelta(seconds=3600)  # looked at again once it is over

    # The grace period over (its send ten minutes back, due now):
    factories.execution_store().put(
        waiting.model_copy(update={"sent_at": minutes_ago(10), "next_sync_at": minutes_ago(0)})
    )
    report = sync_pass(aws, monkeypatch, RECONCILE_GRACE_SECONDS="300")

    assert report["reconciled"] == {"resent": 1}
    resent = record(run_id)
    assert (resent.status, resent.resolution, resent.resends) == ("SUBMITTED", "RESENT", 1)
    assert len(hilos_lists.created) == 1
    assert str(resent.hilos_execution_id) == hilos_lists.created[0]["id"]
    # The resent body is the one first sent: same contacts, same flow.
    assert (
        hilos_lists.contacts[hilos_lists.created[0]["id"]][0]["contact"]["phone"]
        == run_body()["contact_list"][0]["phone"]
    )
    sync_pass(aws, monkeypatch)
    sync_pass(aws, monkeypatch)
    assert hilos_lists.run_calls == 2
    assert len(hilos_lists.created) == 1


def test_a_resend_that_is_lost_again_is_not_sent_a_third_time(
    aws: Any, hilos_lists: FakeHilos, monkeypatch: pytest.MonkeyPatch
):
    run_id = lost_run(hilos_lists, "before")
    hilos_lists.lose_next.append("before")  # the resend is lost too, nothing created
    past_the_call_budget()
    assert sync_pass(aws, monkeypatch)["reconciled"] == {"resent": 1}
    assert record(run_id).status == "UNKNOWN"

    past_the_call_budget()
    report = sync_pass(aws, monkeypatch)

    assert report["reconciled"] == {"not_started": 1}
    failed = record(run_id)
    assert (failed.status, failed.resolution, failed.resends) == ("FAILED", "NOT_STARTED", 1)
    assert "never started" in failed.last_error
    assert hilos_lists.run_calls == 2  # the first send and one resend
    assert hilos_lists.created == []
    assert sync_pass(aws, monkeypatch)["due"] == 0  # known, final: out of the index


def test_resending_off_makes_a_run_not_started_failed(
    aws: Any, hilos_lists: FakeHilos, monkeypatch: pytest.MonkeyPatch
):
    run_id = lost_run(hilos_lists, "before")
    past_the_call_budget()

    report = sync_pass(aws, monkeypatch, RECONCILE_MAX_RESENDS="0")

    assert report["reconciled"] == {"not_started": 1}
    assert (record(run_id).status, record(run_id).resolution) == ("FAILED", "NOT_STARTED")
    assert "resending is off" in record(run_id).last_error
    assert hilos_lists.run_calls == 1


def test_a_crash_between_the_resends_record_and_its_call_never_starts_it_twice(
    aws: Any, hilos_lists: FakeHilos, monkeypatch: pytest.MonkeyPatch
):
    run_id = lost_run(hilos_lists, "before")
    past_the_call_budget()
    hilos_lists.lose_next.append("killed")  # the status sync dies after writing SENDING, before Hilos sees it

    with pytest.raises(InvocationKilled):
        sync_pass(aws, monkeypatch, RECONCILE_MAX_RESENDS="2")

    crashed = record(run_id)
    assert (crashed.status, crashed.resends) == ("SENDING", 1)
    assert hilos_lists.created == []

    # The SENDING record is looked up once its call budget is over: not in Hilos, so sent (the second resend).
    past_the_call_budget()
    report = sync_pass(aws, monkeypatch, RECONCILE_MAX_RESENDS="2")
    assert report["reconciled"] == {"resent": 1}
    assert (record(run_id).status, record(run_id).resends) == ("SUBMITTED", 2)
    assert len(hilos_lists.created) == 1
    sync_pass(aws, monkeypatch, RECONCILE_MAX_RESENDS="2")
    assert len(hilos_lists.created) == 1


def test_a_sending_record_left_by_a_failed_final_write_is_found(
    aws: Any, hilos_lists: FakeHilos, monkeypatch: pytest.MonkeyPatch
):
    from hilos_runner import factories
    from tests.reliability.faults import aws_error, inject

    # The write of Hilos' answer (a conditional PutItem, SUBMITTED) is throttled on every attempt.
    inject(
        factories.aws_client("dynamodb"),
        "PutItem",
        lambda: aws_error("ProvisionedThroughputExceededException", "PutItem"),
        when=lambda params: params["Item"]["status"]["S"] == "SUBMITTED",
    )
    answer = call_run_api("POST", f"/flows/{FLOW_ID}/runs", run_body())
    assert answer.status == 201  # Hilos started it; the answer says so though the record could not
    run_id = answer.body["run"]["run_id"]
    sending = record(run_id)
    assert sending.status == "SENDING"
    # Not looked up before its call budget is over (the writer might still finish), then at once.
    assert sending.next_sync_at == sending.sent_at + timedelta(seconds=CALL_BUDGET_SECONDS)
    past_the_call_budget()
    report = sync_pass(aws, monkeypatch)

    assert report["reconciled"] == {"found": 1}
    assert (record(run_id).status, record(run_id).resolution) == ("SUBMITTED", "FOUND")
    assert str(record(run_id).hilos_execution_id) == hilos_lists.created[0]["id"]
    assert hilos_lists.run_calls == 1


def test_a_queued_run_whose_answer_was_lost_is_found_too(
    aws: Any, hilos_lists: FakeHilos, monkeypatch: pytest.MonkeyPatch
):
    from local.events import sqs_record

    hilos_lists.lose_next.append("after")
    message = sqs_record(json.dumps({"flow_id": FLOW_ID, "contact_list": [contact(phone="+52 1 55 1234-5678")]}))
    answer = call_bulk_worker([message])
    assert answer == {"batchItemFailures": []}  # UNKNOWN is acknowledged: reconciliation takes it from here

    report = sync_pass(aws, monkeypatch)

    assert report["reconciled"] == {"found": 1}
    assert hilos_lists.run_calls == 1
