"""Contact outcomes and retries in-process: run_api starts runs (and bulk runs, which bulk_worker sends), the fake
Hilos finishes them with failing and expiring contacts (phones ending in 7 and 9), status_sync's passes follow
them, and the API lists who did not get the flow and why (JSON and CSV) and starts one run for exactly those.
"""

import csv
import io
from typing import Any
from uuid import UUID

import pytest

from tests.fake_hilos import REASONS, FakeHilos
from tests.helpers import FLOW_ID, RunsQueue, call_run_api, drain, run_body, sync_pass

CSV = {"Accept": "text/csv"}


def phones(count: int) -> list[str]:
    return [contact["phone"] for contact in run_body(count)["contact_list"]]


def failed_or_expired(numbers: list[str]) -> list[str]:
    return [phone for phone in numbers if phone[-1] in "79"]


def finished_run(aws: Any, hilos: FakeHilos, monkeypatch: pytest.MonkeyPatch, body: dict[str, Any]) -> str:
    created = call_run_api("POST", f"/flows/{FLOW_ID}/runs", body)
    assert created.status == 201, created.body
    hilos.finish()
    sync_pass(aws, monkeypatch)
    run_id: str = created.body["run"]["run_id"]
    assert call_run_api("GET", f"/runs/{run_id}").body["status"] == "COMPLETED"
    return run_id


def all_pages(path: str, **query: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):  # bounded
        answer = call_run_api("GET", path, query={**query, **({"cursor": cursor} if cursor else {})})
        assert answer.status == 200, answer.body
        items += answer.body["items"]
        cursor = answer.body["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the pages never ended")


def test_a_finished_run_lists_exactly_its_failed_and_expired_contacts_with_reasons_then_costs_hilos_nothing(
    aws: Any, hilos: FakeHilos, monkeypatch: pytest.MonkeyPatch
):
    numbers = phones(250)  # three of Hilos' pages of 100
    run_id = finished_run(aws, hilos, monkeypatch, run_body(250))
    record = call_run_api("GET", f"/runs/{run_id}").body
    assert record["contacts_url"] == f"/runs/{run_id}/contacts"

    answer = call_run_api("GET", record["contacts_url"], query={"status": "FAILED,EXPIRED", "limit": "1000"})

    assert answer.status == 200
    assert answer.body["next_cursor"] is None
    assert [item["phone"] for item in answer.body["items"]] == failed_or_expired(numbers)
    for item in answer.body["items"]:
        expected = "FAILED" if item["phone"].endswith("7") else "EXPIRED"
        assert (item["status"], item["reason"], item["first_name"]) == (expected, REASONS[expected], "Ana")
    assert hilos.list_reads["contacts"] == 3
    everyone = all_pages(record["contacts_url"], limit="40")
    assert [item["phone"] for item in everyone] == numbers
    assert hilos.list_reads["contacts"] == 3  # kept after the first full read: Hilos is not asked again

    failed = all_pages(record["contacts_url"], status="failed", limit="7")
    assert [item["phone"] for item in failed] == [phone for phone in numbers if phone.endswith("7")]
    assert hilos.list_reads["contacts"] == 3


def test_a_page_stops_before_it_would_outgrow_a_lambda_answer(
    aws: Any, hilos: FakeHilos, monkeypatch: pytest.MonkeyPatch
):
    from hilos_runner import contact_outcomes

    body = run_body(12)
    for contact in body["contact_list"]:
        contact["meta"] = {"note": "x" * 500}
    run_id = finished_run(aws, hilos, monkeypatch, body)
    monkeypatch.setattr(contact_outcomes, "MAX_PAGE_BYTES", 2_000)  # about three contacts

    first = call_run_api("GET", f"/runs/{run_id}/contacts", query={"limit": "1000"}).body

    assert 1 <= len(first["items"]) < 12
    assert first["next_cursor"]
    assert [item["phone"] for item in all_pages(f"/runs/{run_id}/contacts")] == phones(12)


def test_as_csv_the_contacts_are_a_file_the_bulk_api_takes_back_as_it_is(
    aws: Any, hilos: FakeHilos, monkeypatch: pytest.MonkeyPatch
):
    body = run_body(20)
    body["contact_list"][7].update(last_name="López, Jr.", email="ana@example.com", meta={"plan": "gold"})
    run_id = finished_run(aws, hilos, monkeypatch, body)

    answer = call_run_api("GET", f"/runs/{run_id}/contacts", headers=CSV, query={"status": "FAILED,EXPIRED"})

    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.body)))
    assert list(rows[0]) == ["phone", "first_name", "last_name", "email", "meta"]
    assert [row["phone"] for row in rows] == failed_or_expired(phones(20))
    assert rows[0] == {
        "phone": "+5215500000007",
        "first_name": "Ana",
        "last_name": "López, Jr.",
        "email": "ana@example.com",
        "meta": '{"plan":"gold"}',
    }
    resubmitted = call_run_api("POST", f"/flows/{FLOW_ID}/bulk-runs", answer.body, headers={"content-type": "text/csv"})
    assert resubmitted.status == 202, resubmitted.body
    assert resubmitted.body["num_contacts"] == len(rows)


def test_a_run_still_going_is_read_from_hilos_each_time_and_not_kept(aws: Any, hilos: FakeHilos):
    run_id = call_run_api("POST", f"/flows/{FLOW_ID}/runs", run_body(3)).body["run"]["run_id"]

    for expected_reads in (1, 2):
        answer = call_run_api("GET", f"/runs/{run_id}/contacts")
        assert [item["status"] for item in answer.body["items"]] == ["READY"] * 3
        assert hilos.list_reads["contacts"] == expected_reads


@pytest.mark.parametrize(
    ("query", "field"),
    [({"status": "LOST"}, "query.status"), ({"cursor": "bm90LWEtY3Vyc29y"}, "query.cursor"), ({"limit": "0"}, None)],
)
def test_a_bad_filter_or_cursor_is_422_naming_it(aws: Any, hilos: FakeHilos, query: dict[str, str], field: str | None):
    run_id = call_run_api("POST", f"/flows/{FLOW_ID}/runs", run_body(1)).body["run"]["run_id"]
    answer = call_run_api("GET", f"/runs/{run_id}/contacts", query=query)
    assert answer.status == 422
    assert answer.body["details"][0]["field"] == (field or "query.limit")


def test_a_retry_starts_one_run_for_exactly_the_failed_and_expired_contacts_and_a_repeat_starts_nothing_more(
    aws: Any, hilos: FakeHilos, monkeypatch: pytest.MonkeyPatch
):
    body = run_body(20, has_priority=True, flow_execution_variables={"campaign": "spring"})
    run_id = finished_run(aws, hilos, monkeypatch, body)
    calls_before = hilos.run_calls

    retried = call_run_api("POST", f"/runs/{run_id}/retries", headers={"Idempotency-Key": "retry-1"})

    assert retried.status == 201, retried.body
    assert retried.body["run"]["retry_of"] == run_id
    assert retried.body["run"]["num_contacts"] == 4
    assert hilos.run_calls == calls_before + 1
    sent = hilos.run_bodies[-1]
    assert [contact["phone"] for contact in sent["contact_list"]] == failed_or_expired(phones(20))
    assert (sent["has_priority"], sent["flow_execution_variables"]) == (True, {"campaign": "spring"})

    again = call_run_api("POST", f"/runs/{run_id}/retries", headers={"Idempotency-Key": "retry-1"})
    assert again.status == 201
    assert again.body["run"]["run_id"] == retried.body["run"]["run_id"]
    assert hilos.run_calls == calls_before + 1  # the same key started nothing more

    only_failed = call_run_api("POST", f"/runs/{run_id}/retries", {"statuses": ["FAILED"]})
    assert only_failed.status == 201
    assert [c["phone"] for c in hilos.run_bodies[-1]["contact_list"]] == ["+5215500000007", "+5215500000017"]


def test_a_retry_of_a_run_not_finished_is_409_and_of_no_contacts_422(
    aws: Any, hilos: FakeHilos, monkeypatch: pytest.MonkeyPatch
):
    going = call_run_api("POST", f"/flows/{FLOW_ID}/runs", run_body(10)).body["run"]["run_id"]
    refused = call_run_api("POST", f"/runs/{going}/retries")
    assert (refused.status, refused.body["code"]) == (409, "run_not_finished")

    hilos.finish()
    sync_pass(aws, monkeypatch)
    nothing = call_run_api("POST", f"/runs/{going}/retries", {"statuses": ["CANCELED"]})
    assert (nothing.status, nothing.body["details"][0]["field"]) == (422, "body.statuses")
    unknown = call_run_api("POST", f"/runs/{going}/retries", {"statuses": ["GONE"]})
    assert unknown.status == 422
    assert call_run_api("POST", "/runs/5b0e7c1a-2f7d-4c55-9a43-0d4e2a1b9c11/retries").status == 404


def test_a_bulk_run_lists_its_contacts_across_chunks_and_a_retry_submits_a_bulk_run_of_the_failed_ones(
    aws: Any, hilos: FakeHilos, runs_queue: RunsQueue, monkeypatch: pytest.MonkeyPatch
):
    from hilos_runner import factories

    monkeypatch.setenv("BULK_CHUNK_SIZE", "4")
    factories.reset()
    numbers = phones(10)
    accepted = call_run_api("POST", f"/flows/{FLOW_ID}/bulk-runs", run_body(10, has_priority=True))
    bulk_id = accepted.body["id"]
    assert drain(runs_queue, aws, monkeypatch) == 3
    assert call_run_api("POST", f"/bulk-runs/{bulk_id}/retries").status == 409  # chunks still going

    hilos.finish()
    sync_pass(aws, monkeypatch)
    view = call_run_api("GET", f"/bulk-runs/{bulk_id}").body
    assert view["status"] == "COMPLETED_WITH_ERRORS"

    contacts = all_pages(view["contacts_url"], status="FAILED,EXPIRED", limit="1")
    assert [item["phone"] for item in contacts] == failed_or_expired(numbers)
    as_csv = call_run_api("GET", view["contacts_url"], headers=CSV)
    assert [row["phone"] for row in csv.DictReader(io.StringIO(as_csv.body))] == numbers

    retried = call_run_api("POST", f"/bulk-runs/{bulk_id}/retries", headers={"Idempotency-Key": "bulk-retry-1"})
    assert retried.status == 202, retried.body
    assert retried.body["num_contacts"] == 2
    again = call_run_api("POST", f"/bulk-runs/{bulk_id}/retries", headers={"Idempotency-Key": "bulk-retry-1"})
    assert again.body == retried.body
    [message] = runs_queue.take_bodies()
    assert [contact["phone"] for contact in message["contact_list"]] == failed_or_expired(numbers)
    assert message["has_priority"] is True
    retry_view = call_run_api("GET", retried.body["status_url"]).body
    assert (retry_view["retry_of"], retry_view["status"]) == (bulk_id, "QUEUED")
    assert call_run_api("GET", f"/runs/{bulk_id}/contacts").status == 404  # a bulk run's are under /bulk-runs


def test_the_contacts_of_a_chunk_hilos_refused_are_listed_not_started_with_why_and_can_be_retried(
    aws: Any, hilos: FakeHilos, runs_queue: RunsQueue, monkeypatch: pytest.MonkeyPatch
):
    from hilos_runner import factories
    from hilos_runner.execution_records import RunStatus

    monkeypatch.setenv("BULK_CHUNK_SIZE", "4")
    factories.reset()
    numbers = phones(10)
    hilos.refused_phones.add(numbers[9])  # the third chunk: numbers[8:10]
    bulk_id = call_run_api("POST", f"/flows/{FLOW_ID}/bulk-runs", run_body(10)).body["id"]
    assert drain(runs_queue, aws, monkeypatch) == 3
    hilos.finish()
    sync_pass(aws, monkeypatch)
    view = call_run_api("GET", f"/bulk-runs/{bulk_id}").body
    assert (view["status"], view["chunks_by_status"]) == ("COMPLETED_WITH_ERRORS", {"COMPLETED": 2, "REJECTED": 1})

    not_started = all_pages(view["contacts_url"], status="NOT_STARTED")

    assert [item["phone"] for item in not_started] == numbers[8:10]
    assert all("Enter a valid phone number." in item["reason"] for item in not_started)
    assert all(item["first_name"] == "Ana" for item in not_started)
    default = call_run_api("POST", f"/bulk-runs/{bulk_id}/retries")  # FAILED and EXPIRED: Hilos' own
    assert default.status == 202, default.body
    assert default.body["num_contacts"] == len(failed_or_expired(numbers[:8]))
    asked = call_run_api("POST", f"/bulk-runs/{bulk_id}/retries", {"statuses": ["NOT_STARTED"]})
    assert asked.status == 202, asked.body
    assert asked.body["num_contacts"] == 2

    # Redriven after all (an operator fixed the cause): the chunk started in Hilos; its kept NOT_STARTED list is stale.
    store = factories.execution_store()
    [rejected] = [chunk for chunk in view["chunks"] if chunk["status"] == "REJECTED"]
    chunk = store.get(rejected["run_id"])
    assert chunk is not None
    execution_id = hilos.add_execution(numbers[8:10])
    hilos.finish(execution_id)
    store.put(chunk.model_copy(update={"status": RunStatus.COMPLETED, "hilos_execution_id": UUID(execution_id)}))
    listed = all_pages(view["contacts_url"])
    assert [item["status"] for item in listed[8:]] == ["COMPLETED", "EXPIRED"]


def test_a_bulk_retry_that_needs_more_hilos_reads_than_a_request_has_goes_on_where_the_last_one_stopped(
    aws: Any, hilos: FakeHilos, runs_queue: RunsQueue, monkeypatch: pytest.MonkeyPatch
):
    from hilos_runner import contact_outcomes, factories

    monkeypatch.setenv("BULK_CHUNK_SIZE", "4")
    factories.reset()
    bulk_id = call_run_api("POST", f"/flows/{FLOW_ID}/bulk-runs", run_body(10)).body["id"]
    assert drain(runs_queue, aws, monkeypatch) == 3
    hilos.finish()
    sync_pass(aws, monkeypatch)
    monkeypatch.setattr(contact_outcomes, "MAX_HILOS_READS_PER_REQUEST", 1)  # one chunk's page per request

    answers = [call_run_api("POST", f"/bulk-runs/{bulk_id}/retries", headers={"Idempotency-Key": "k"}) for _ in "123"]

    assert [(a.status, a.body.get("code")) for a in answers[:2]] == [(503, "contacts_not_read_yet")] * 2
    assert answers[0].headers["Retry-After"] == "1"
    assert answers[2].status == 202, answers[2].body
    assert answers[2].body["num_contacts"] == len(failed_or_expired(phones(10)))
    assert hilos.list_reads["contacts"] == 3  # each chunk's contacts read once, kept since
