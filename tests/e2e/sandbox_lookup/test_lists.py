"""The Hilos sandbox's list endpoints over real sockets: List Flow Executions and List Flow Execution Contacts paged
like DRF (count/next/previous, 404 "Invalid page."), filtered, every answer valid against Hilos' own schemas; contacts
as sent, with statuses that follow their execution."""

import uuid

import pytest
import requests

from tests.e2e.sandbox_lookup.lookups import (
    AUTH,
    CONTACTS,
    COUNTERS,
    EXECUTIONS,
    FINISHED_COUNTERS,
    PHONES,
    checked,
    contacts_of,
    control,
    counted_statuses,
    detail,
    every_page,
    lookup,
    page,
    post_run,
    query,
    start_run,
    stats,
)

pytestmark = pytest.mark.e2e


# -- List Flow Executions --------------------------------------------------------------------------


def test_a_flows_executions_page_newest_first_with_count_next_and_previous(own_sandbox):
    sandbox = own_sandbox
    control(sandbox, list_page_size=2)
    flow_id, other_flow = str(uuid.uuid4()), str(uuid.uuid4())
    created = [start_run(sandbox, flow_id)["id"] for _ in range(5)]
    others = [start_run(sandbox, other_flow)["id"] for _ in range(2)]

    pages = every_page(sandbox, EXECUTIONS, flow=flow_id)

    assert [body["count"] for body in pages] == [5, 5, 5]
    assert [item["id"] for body in pages for item in body["results"]] == created[::-1]
    first, second, third = pages
    assert first["previous"] is None
    assert query(first["next"]) == {"flow": [flow_id], "page": ["2"]}
    assert query(second["previous"]) == {"flow": [flow_id]}  # page 1 has no page parameter, as in DRF
    assert query(second["next"]) == {"flow": [flow_id], "page": ["3"]}
    assert query(third["previous"]) == {"flow": [flow_id], "page": ["2"]}
    assert third["next"] is None
    # Following the links gives the same pages.
    assert checked(requests.get(first["next"], headers=AUTH, timeout=5), EXECUTIONS) == second
    assert checked(requests.get(third["previous"], headers=AUTH, timeout=5), EXECUTIONS) == second
    # No flow: every execution, newest first.
    everything = every_page(sandbox, EXECUTIONS)
    assert [item["id"] for body in everything for item in body["results"]] == (created + others)[::-1]
    assert everything[0]["count"] == 7


def test_pages_that_are_not_pages_are_404_invalid_page_as_in_drf(sandbox):
    control(sandbox, list_page_size=2)
    flow_id = str(uuid.uuid4())
    created = [start_run(sandbox, flow_id)["id"] for _ in range(3)]

    for bad in ("0", "-1", "3", "abc", "1.5"):
        answer = lookup(sandbox, EXECUTIONS, flow=flow_id, page=bad)
        assert (answer.status_code, answer.json()) == (404, {"detail": "Invalid page."}), bad
    last = page(sandbox, EXECUTIONS, flow=flow_id, page="last")
    blank = page(sandbox, EXECUTIONS, flow=flow_id, page="")
    assert [item["id"] for item in last["results"]] == [created[0]]
    assert [item["id"] for item in blank["results"]] == created[:0:-1]  # page 1
    # A flow without executions has one empty page.
    empty = page(sandbox, EXECUTIONS, flow=str(uuid.uuid4()))
    assert empty == {"count": 0, "next": None, "previous": None, "results": []}
    assert lookup(sandbox, EXECUTIONS, flow=str(uuid.uuid4()), page=2).status_code == 404
    # Contacts page the same way.
    answer = lookup(sandbox, CONTACTS, flow_execution=created[0], page_size=2, page=4)  # 5 contacts: 3 pages
    assert (answer.status_code, answer.json()) == (404, {"detail": "Invalid page."})


def test_a_filter_that_is_not_a_uuid_is_400_naming_it(sandbox):
    for endpoint, name in ((EXECUTIONS, "flow"), (CONTACTS, "flow_execution"), (CONTACTS, "flow_execution__flow")):
        answer = lookup(sandbox, endpoint, **{name: "not-a-uuid"})
        assert (answer.status_code, answer.json()) == (400, {name: ["Enter a valid UUID."]})


def test_list_items_show_the_executions_current_status_and_per_read_list_reads_never_move_it(sandbox):
    control(sandbox, progression="per_read")
    flow_id = str(uuid.uuid4())
    execution_id = start_run(sandbox, flow_id)["id"]

    listed = [page(sandbox, EXECUTIONS, flow=flow_id)["results"][0] for _ in range(3)]
    contacts = [contacts_of(sandbox, execution_id) for _ in range(3)]
    assert {item["status"] for item in listed} == {"PROCESSING"}
    assert {item["status"] for listing in contacts for item in listing} == {"READY"}

    for expected in ("STARTING", "RUNNING", "COMPLETED"):
        read = detail(sandbox, execution_id)  # a status read moves it one stage
        [item] = page(sandbox, EXECUTIONS, flow=flow_id)["results"]
        assert read["status"] == item["status"] == expected
        assert {name: item[name] for name in item} == {name: read[name] for name in item}
        assert counted_statuses(contacts_of(sandbox, execution_id)) == {name: read[name] for name in COUNTERS}
    assert item["num_contacts"] == 5
    assert {name: item[name] for name in COUNTERS} == FINISHED_COUNTERS


def test_by_time_a_list_read_shows_where_the_execution_is_without_any_status_read(sandbox):
    control(sandbox, progression="time", stage_seconds=0)
    flow_id = str(uuid.uuid4())
    execution_id = start_run(sandbox, flow_id)["id"]

    [item] = page(sandbox, EXECUTIONS, flow=flow_id)["results"]

    assert item["status"] == "COMPLETED"
    assert {name: item[name] for name in COUNTERS} == FINISHED_COUNTERS
    assert stats(sandbox)["status_reads"] == {}
    assert counted_statuses(contacts_of(sandbox, execution_id)) == {name: item[name] for name in COUNTERS}


# -- List Flow Execution Contacts ------------------------------------------------------------------


def test_contacts_are_listed_as_sent_in_order_with_canonical_phones_and_stable_ids(sandbox):
    flow_id = str(uuid.uuid4())
    known_contact = str(uuid.uuid4())
    sent = [
        {"phone": "+52 1 55 1234-5601", "first_name": "Ana", "email": "ana@example.com", "meta": {"plan": "b"}},
        {"id": known_contact},
        {"phone": "5215512345602", "id": str(uuid.uuid4()), "last_name": "Ruiz", "source": "crm"},
        {"phone": "(55) 1234 5603", "external_url": "https://example.com/c/3", "is_deleted": False},
    ]
    answer = post_run(sandbox, flow_id, sent)
    assert answer.status_code == 201, answer.text
    execution = answer.json()

    first = contacts_of(sandbox, execution["id"])
    again = contacts_of(sandbox, execution["id"])

    assert first == again  # stable: ids, fake phones, everything
    assert [item["contact"]["phone"] for item in first[:1] + first[2:]] == [
        "+52 1 55 1234-5601",
        "5215512345602",
        "(55) 1234 5603",
    ]
    assert [item["contact"]["canonical_phone"] for item in first] == [
        "+5215512345601",
        "+" + "".join(ch for ch in first[1]["contact"]["phone"] if ch.isdigit()),
        "+5215512345602",
        "+5512345603",
    ]
    by_id = first[1]["contact"]
    assert by_id["id"] == known_contact  # sent by id alone: keeps its id, gets a phone
    assert by_id["phone"].startswith("+")
    assert by_id["phone"][1:].isdigit()
    assert first[2]["contact"]["id"] == sent[2]["id"]
    assert len({item["id"] for item in first}) == 4
    ana = first[0]["contact"]
    assert (ana["first_name"], ana["last_name"], ana["email"], ana["meta"]) == (
        "Ana",
        None,
        "ana@example.com",
        sent[0]["meta"],
    )
    assert (first[2]["contact"]["last_name"], first[2]["contact"]["source"]) == ("Ruiz", "crm")
    assert first[3]["contact"]["external_url"] == "https://example.com/c/3"
    assert {item["contact"]["is_deleted"] for item in first} == {False}
    assert {item["created_on"] for item in first} == {execution["created_on"]}
    assert {(item["flow_name"], item["is_chatbot_execution"]) for item in first} == {("Sandbox flow", False)}
    # The same contact (by phone, by id) in another execution: the same contact, another execution contact.
    other = post_run(sandbox, flow_id, [sent[1], {"phone": "+5215512345601"}]).json()
    listed_again = contacts_of(sandbox, other["id"])
    assert [item["contact"]["id"] for item in listed_again] == [known_contact, ana["id"]]
    assert listed_again[0]["contact"]["phone"] == by_id["phone"]
    assert {item["id"] for item in listed_again}.isdisjoint({item["id"] for item in first})


def test_contact_statuses_follow_the_execution_with_reasons_and_add_up_to_its_counters(sandbox):
    control(sandbox, progression="per_read")
    flow_id = str(uuid.uuid4())
    execution_id = start_run(sandbox, flow_id)["id"]
    seen = {"PROCESSING": contacts_of(sandbox, execution_id)}

    for _ in range(3):
        read = detail(sandbox, execution_id)
        seen[read["status"]] = contacts = contacts_of(sandbox, execution_id)
        assert counted_statuses(contacts) == {name: read[name] for name in COUNTERS}

    def statuses(stage: str) -> list[str]:
        return [item["status"] for item in seen[stage]]

    assert statuses("PROCESSING") == statuses("STARTING") == ["READY"] * 5
    assert statuses("RUNNING") == ["FAILED", "RUNNING", "RUNNING", "RUNNING", "FAILED"]
    assert statuses("COMPLETED") == ["FAILED", "EXPIRED", "COMPLETED", "COMPLETED", "FAILED"]
    reasons = {item["status"]: item["reason"] for item in seen["COMPLETED"]}
    assert reasons["COMPLETED"] is None
    assert isinstance(reasons["FAILED"], str)
    assert reasons["FAILED"]
    assert isinstance(reasons["EXPIRED"], str)
    assert reasons["EXPIRED"]
    assert {item["reason"] for item in seen["RUNNING"] if item["status"] == "RUNNING"} == {None}


def test_a_canceled_execution_cancels_its_contacts_but_those_that_failed(sandbox):
    flow_id = str(uuid.uuid4())
    control(sandbox, progression="per_read", cancel_flows=[flow_id])
    execution_id = start_run(sandbox, flow_id)["id"]
    for _ in range(3):
        read = detail(sandbox, execution_id)

    contacts = contacts_of(sandbox, execution_id)

    assert read["status"] == "CANCELED"
    assert [item["status"] for item in contacts] == ["FAILED", "CANCELED", "CANCELED", "CANCELED", "FAILED"]
    assert counted_statuses(contacts) == {name: read[name] for name in COUNTERS}


def test_is_active_selects_the_contacts_still_in_the_flow(sandbox):
    control(sandbox, progression="per_read")
    flow_id = str(uuid.uuid4())
    execution_id = start_run(sandbox, flow_id)["id"]
    assert page(sandbox, CONTACTS, flow_execution=execution_id, is_active="true")["count"] == 5  # READY
    detail(sandbox, execution_id)
    detail(sandbox, execution_id)  # RUNNING

    active = page(sandbox, CONTACTS, flow_execution=execution_id, is_active="true")["results"]
    inactive = page(sandbox, CONTACTS, flow_execution=execution_id, is_active="0")["results"]

    assert [item["contact"]["phone"] for item in active] == PHONES[1:4]
    assert [item["status"] for item in inactive] == ["FAILED", "FAILED"]
    detail(sandbox, execution_id)  # COMPLETED
    assert page(sandbox, CONTACTS, flow_execution=execution_id, is_active="1")["count"] == 0
    assert page(sandbox, CONTACTS, flow_execution=execution_id, is_active="false")["count"] == 5


def test_contacts_page_by_page_size_capped_at_100_and_filter_by_execution_or_flow(own_sandbox):
    sandbox = own_sandbox
    flow_id, other_flow = str(uuid.uuid4()), str(uuid.uuid4())
    phones = [f"+52155{n:08d}" for n in range(120)]
    big = start_run(sandbox, flow_id, phones)["id"]
    small = start_run(sandbox, flow_id, PHONES[:2])["id"]
    elsewhere = start_run(sandbox, other_flow, PHONES[2:])["id"]

    # The layer's client: page_size=100, page=1, 2, ... until next is null.
    pages = every_page(sandbox, CONTACTS, flow_execution=big, page_size=100)
    assert [len(body["results"]) for body in pages] == [100, 20]
    assert [item["contact"]["phone"] for body in pages for item in body["results"]] == phones
    assert query(pages[0]["next"]) == {"flow_execution": [big], "page": ["2"], "page_size": ["100"]}
    assert query(pages[1]["previous"]) == {"flow_execution": [big], "page_size": ["100"]}
    # Capped at 100; not a positive integer: the default (list_page_size, 10).
    assert len(page(sandbox, CONTACTS, flow_execution=big, page_size=1000)["results"]) == 100
    for size in ("0", "-5", "abc"):
        assert len(page(sandbox, CONTACTS, flow_execution=big, page_size=size)["results"]) == 10
    control(sandbox, list_page_size=7)
    assert len(page(sandbox, CONTACTS, flow_execution=big)["results"]) == 7
    # Filters.
    of_flow = [
        item
        for body in every_page(sandbox, CONTACTS, flow_execution__flow=flow_id, page_size=100)
        for item in body["results"]
    ]
    assert len(of_flow) == 122
    assert [item["contact"]["phone"] for item in of_flow[120:]] == PHONES[:2]
    assert [item["contact"]["phone"] for item in contacts_of(sandbox, small)] == PHONES[:2]
    assert page(sandbox, CONTACTS, flow_execution=elsewhere, flow_execution__flow=flow_id)["count"] == 0
    assert page(sandbox, CONTACTS, flow_execution=str(uuid.uuid4()))["count"] == 0
    assert page(sandbox, CONTACTS)["count"] == 125  # no filter: every execution's contacts
