"""The Hilos sandbox's list endpoints and ambiguity faults over real sockets: List Flow Executions and List Flow
Execution Contacts paged like DRF (count/next/previous, 404 "Invalid page."), filtered, every answer valid against
Hilos' own schemas; contacts as sent, with statuses that follow their execution; lookup faults only when a plan
targets them; slow_before/reset_before create nothing while slow/reset create exactly one; clock skew."""

import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from local.hilos_schema import (
    EXECUTION_CONTACT_LIST_SCHEMA,
    EXECUTION_LIST_SCHEMA,
    hilos_response_schemas,
    response_problems,
)
from local.sandbox import HilosSandbox
from local.sandbox_settings import DEFAULT_FAULT_MIX, FaultKind, SandboxSettings

pytestmark = pytest.mark.e2e

TOKEN = "sandbox-lookup-test-token-8c2d"
AUTH = {"Authorization": f"Token {TOKEN}"}
COUNTERS = ("running", "completed", "failed", "expired", "canceled")
EXECUTIONS = "flow-execution"
CONTACTS = "flow-execution-contact"
SCHEMAS = {EXECUTIONS: EXECUTION_LIST_SCHEMA, CONTACTS: EXECUTION_CONTACT_LIST_SCHEMA}
ITEM_SCHEMAS = {
    EXECUTIONS: ("flow-execution", "FlowExecutionList"),
    CONTACTS: (CONTACTS, "FlowExecutionContactListSimple"),
}
# Phones ending in 7 fail, in 9 expire (the defaults); the others complete.
PHONES = ["+5215500000017", "+5215500000029", "+5215500000031", "+5215500000042", "+5215500000057"]


def started_sandbox() -> Iterator[HilosSandbox]:
    server = HilosSandbox(TOKEN, SandboxSettings())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shared_sandbox() -> Iterator[HilosSandbox]:
    yield from started_sandbox()


@pytest.fixture
def sandbox(shared_sandbox: HilosSandbox) -> HilosSandbox:
    """Settings and stats back to the start; the executions of earlier tests stay (each test has its own flows)."""
    requests.post(f"{shared_sandbox.url}/_sandbox/reset", timeout=5).raise_for_status()
    return shared_sandbox


@pytest.fixture
def own_sandbox() -> Iterator[HilosSandbox]:
    """A sandbox of the test's own, for lists of every execution."""
    yield from started_sandbox()


def control(sandbox: HilosSandbox, **changes: Any) -> dict[str, Any]:
    answer = requests.post(f"{sandbox.url}/_sandbox/faults", json=changes, timeout=5)
    assert answer.status_code == 200, answer.text
    settings: dict[str, Any] = answer.json()
    return settings


def stats(sandbox: HilosSandbox) -> dict[str, Any]:
    answer: dict[str, Any] = requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).json()
    return answer


def post_run(sandbox: HilosSandbox, flow_id: str, contacts: list[dict[str, Any]], timeout: float = 5) -> Any:
    return requests.post(
        f"{sandbox.api_url}/flow/{flow_id}/run",
        json={"execute_for": "LIST", "contact_list": contacts},
        headers=AUTH,
        timeout=timeout,
    )


def start_run(sandbox: HilosSandbox, flow_id: str, phones: list[str] = PHONES) -> dict[str, Any]:
    answer = post_run(sandbox, flow_id, [{"phone": phone} for phone in phones])
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def lookup(sandbox: HilosSandbox, endpoint: str, token: str | None = TOKEN, **params: Any) -> requests.Response:
    headers = {"Authorization": f"Token {token}"} if token is not None else {}
    return requests.get(f"{sandbox.api_url}/{endpoint}", params=params, headers=headers, timeout=5)


def checked(answer: requests.Response, endpoint: str) -> dict[str, Any]:
    """A 200 list page, valid against the schema Hilos documents for it, with documented fields only."""
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert response_problems(body, SCHEMAS[endpoint]) == []
    document, item_schema = ITEM_SCHEMAS[endpoint]
    declared = set(hilos_response_schemas(document)[item_schema]["properties"])
    for item in body["results"]:
        assert set(item) <= declared, f"undocumented fields: {set(item) - declared}"
    for link in (body["next"], body["previous"]):
        if link is not None:  # format: uri (jsonschema checks no uri format without rfc3987): absolute
            assert urlsplit(link).scheme == "http"
            assert urlsplit(link).netloc == urlsplit(answer.url).netloc
    return body


def page(sandbox: HilosSandbox, endpoint: str, **params: Any) -> dict[str, Any]:
    return checked(lookup(sandbox, endpoint, **params), endpoint)


def every_page(sandbox: HilosSandbox, endpoint: str, **params: Any) -> list[dict[str, Any]]:
    """What the layer's client does: page=1, 2, ... until next is null."""
    pages, number = [], 1
    while True:
        body = page(sandbox, endpoint, **params, page=number)
        pages.append(body)
        if body["next"] is None:
            return pages
        number += 1


def query(link: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(link).query)


def detail(sandbox: HilosSandbox, execution_id: str) -> dict[str, Any]:
    answer = requests.get(f"{sandbox.api_url}/flow-execution/{execution_id}", headers=AUTH, timeout=5)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def contacts_of(sandbox: HilosSandbox, execution_id: str, **params: Any) -> list[dict[str, Any]]:
    return [
        item
        for body in every_page(sandbox, CONTACTS, flow_execution=execution_id, **params)
        for item in body["results"]
    ]


def counted_statuses(contacts: list[dict[str, Any]]) -> dict[str, int]:
    """The contacts' statuses as the execution's counters count them (READY is in none)."""
    counts = Counter(item["status"].lower() for item in contacts if item["status"] != "READY")
    return {name: counts[name] for name in COUNTERS}


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
    assert {name: item[name] for name in COUNTERS} == {
        "running": 0,
        "completed": 2,
        "failed": 2,
        "expired": 1,
        "canceled": 0,
    }


def test_by_time_a_list_read_shows_where_the_execution_is_without_any_status_read(sandbox):
    control(sandbox, progression="time", stage_seconds=0)
    flow_id = str(uuid.uuid4())
    execution_id = start_run(sandbox, flow_id)["id"]

    [item] = page(sandbox, EXECUTIONS, flow=flow_id)["results"]

    assert item["status"] == "COMPLETED"
    assert {name: item[name] for name in COUNTERS} == {
        "running": 0,
        "completed": 2,
        "failed": 2,
        "expired": 1,
        "canceled": 0,
    }
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


# -- auth, counting, faults ------------------------------------------------------------------------


def test_lookups_need_the_token_and_are_counted_apart_from_run_calls_and_status_reads(sandbox):
    flow_id = str(uuid.uuid4())
    execution_id = start_run(sandbox, flow_id)["id"]

    missing = lookup(sandbox, EXECUTIONS, token=None, flow=flow_id)
    wrong = lookup(sandbox, CONTACTS, token="not-the-token", flow_execution=execution_id)
    page(sandbox, EXECUTIONS, flow=flow_id)
    page(sandbox, CONTACTS, flow_execution=execution_id)
    page(sandbox, CONTACTS, flow_execution=execution_id, page_size=2, page=3)

    assert (missing.status_code, missing.json()) == (401, {"detail": "Authentication credentials were not provided."})
    assert (wrong.status_code, wrong.json()) == (401, {"detail": "Invalid token."})
    current = stats(sandbox)
    assert current["lookup_reads"] == {EXECUTIONS: 2, CONTACTS: 3}
    assert current["lookup_read_answers"] == {"401": 2, "200": 3}
    assert current["lookup_read_faults"] == {}
    assert [call["returned"] for call in current["recent_lookup_reads"] if call["status"] == 200] == [1, 5, 1]
    assert {call["flow_id"] for call in current["recent_lookup_reads"]} == {flow_id}
    assert (current["requests"], current["responses"], current["status_reads"]) == (1, {"201": 1}, {})
    assert [call["method"] for call in current["recent"]] == ["POST"]


def test_a_plan_faults_lookups_only_when_it_targets_them(sandbox):
    flow_id, other_flow = str(uuid.uuid4()), str(uuid.uuid4())
    execution_id = start_run(sandbox, flow_id)["id"]
    other_execution = start_run(sandbox, other_flow)["id"]
    control(sandbox, rate=1, mix={"503": 1})  # every run call, no lookup

    assert page(sandbox, EXECUTIONS, flow=flow_id)["count"] == 1
    assert page(sandbox, CONTACTS, flow_execution=execution_id)["count"] == 5
    assert post_run(sandbox, flow_id, [{"phone": "+5215500000101"}]).status_code == 503
    assert stats(sandbox)["lookup_read_faults"] == {}

    control(sandbox, rate=0, flows={flow_id: {"rate": 1, "mix": {"500": 1, "503": 1, "429": 1}, "targets": ["lookup"]}})
    answers = [
        lookup(sandbox, EXECUTIONS, flow=flow_id),
        lookup(sandbox, CONTACTS, flow_execution=execution_id),  # the flow of the execution
        lookup(sandbox, CONTACTS, flow_execution__flow=flow_id),
    ]
    assert all(answer.status_code in (500, 503, 429) for answer in answers)
    for answer in answers:
        if answer.status_code == 429:
            assert answer.headers["Retry-After"] == "1"
    # Another flow's lookups and run calls, and this flow's run calls and status reads, are not faulted.
    assert page(sandbox, EXECUTIONS, flow=other_flow)["count"] == 1
    assert page(sandbox, CONTACTS, flow_execution=other_execution)["count"] == 5
    assert post_run(sandbox, flow_id, [{"phone": "+5215500000102"}]).status_code == 201
    detail(sandbox, execution_id)
    faults = stats(sandbox)["lookup_read_faults"]
    assert sum(faults.values()) == 3
    assert set(faults) <= {"500", "503", "429"}


@pytest.mark.parametrize(("kind", "error"), [("slow", requests.ReadTimeout), ("reset", requests.ConnectionError)])
def test_slow_and_reset_apply_to_lookups_too(sandbox, kind, error):
    flow_id = str(uuid.uuid4())
    start_run(sandbox, flow_id)
    control(sandbox, slow_seconds=2, flows={flow_id: {"rate": 1, "mix": {kind: 1}, "limit": 1, "targets": ["lookup"]}})

    with pytest.raises(error):
        requests.get(f"{sandbox.api_url}/{EXECUTIONS}", params={"flow": flow_id}, headers=AUTH, timeout=0.5)

    assert page(sandbox, EXECUTIONS, flow=flow_id)["count"] == 1  # the limit was one
    assert stats(sandbox)["lookup_read_faults"] == {kind: 1}


# -- ambiguity: before and after the execution was created -----------------------------------------


@pytest.mark.parametrize(
    ("kind", "error", "creates"),
    [
        ("slow", requests.ReadTimeout, True),
        ("reset", requests.ConnectionError, True),
        ("slow_before", requests.ReadTimeout, False),
        ("reset_before", requests.ConnectionError, False),
    ],
)
def test_before_faults_create_nothing_while_after_faults_create_exactly_one(sandbox, kind, error, creates):
    flow_id = str(uuid.uuid4())
    contacts = [{"phone": "+5215500000201"}, {"phone": "+5215500000202"}]
    control(sandbox, slow_seconds=2, flows={flow_id: {"rate": 1, "mix": {kind: 1}, "limit": 1}})

    with pytest.raises(error):
        post_run(sandbox, flow_id, contacts, timeout=0.5)

    current = stats(sandbox)
    [call] = current["recent"]
    assert (call["fault"], call["created"]) == (kind, creates)
    assert current["runs_created"] == int(creates)
    listed = page(sandbox, EXECUTIONS, flow=flow_id)["results"]
    assert [item["id"] for item in listed] == ([call["execution_id"]] if creates else [])
    assert (call["execution_id"] is not None) == creates
    [entry] = current["contact_lists"].values()
    assert entry["execution_ids"] == [item["id"] for item in listed]

    # The client sends again (the plan's one fault is used up): a duplicate only if the first had been created.
    again = post_run(sandbox, flow_id, contacts)
    assert again.status_code == 201
    after = stats(sandbox)
    resent = after["recent"][-1]
    assert (resent["fault"], resent["created"], resent["execution_id"]) == (None, True, again.json()["id"])
    [entry] = after["contact_lists"].values()
    assert entry["execution_ids"] == [item["id"] for item in listed] + [again.json()["id"]]
    assert len(after["duplicates"]) == int(creates)
    assert page(sandbox, EXECUTIONS, flow=flow_id)["count"] == 1 + int(creates)


def test_slow_before_answers_504_to_a_client_that_waits_and_creates_nothing(sandbox):
    flow_id = str(uuid.uuid4())
    control(sandbox, slow_seconds=0.2, flows={flow_id: {"rate": 1, "mix": {"slow_before": 1}, "limit": 1}})

    answer = post_run(sandbox, flow_id, [{"phone": "+5215500000301"}], timeout=30)

    assert answer.status_code == 504
    assert isinstance(answer.json()["detail"], str)
    assert stats(sandbox)["runs_created"] == 0
    assert page(sandbox, EXECUTIONS, flow=flow_id)["count"] == 0


def test_a_gateway_fault_is_recorded_as_creating_nothing_and_the_default_mix_names_no_before_kind(sandbox):
    flow_id = str(uuid.uuid4())
    control(sandbox, flows={flow_id: {"rate": 1, "mix": {"503": 1}, "limit": 1}})

    assert post_run(sandbox, flow_id, [{"phone": "+5215500000401"}]).status_code == 503

    [call] = stats(sandbox)["recent"]
    assert (call["fault"], call["created"], call["execution_id"]) == ("503", False, None)
    assert set(SandboxSettings().mix) == set(DEFAULT_FAULT_MIX) == {"500", "503", "429", "slow", "reset"}
    assert {FaultKind.SLOW_BEFORE, FaultKind.RESET_BEFORE}.isdisjoint(SandboxSettings().mix)
    assert control(sandbox, mix={"slow_before": 1, "reset_before": 2})["mix"] == {
        "slow_before": 1.0,
        "reset_before": 2.0,
    }


def test_execution_ids_per_contact_list_in_order(sandbox):
    flow_id = str(uuid.uuid4())
    first = start_run(sandbox, flow_id, PHONES[:2])["id"]
    second = start_run(sandbox, flow_id, PHONES[1::-1])["id"]  # the same contacts in another order
    third = start_run(sandbox, flow_id, PHONES[2:3])["id"]

    lists = stats(sandbox)["contact_lists"]

    assert sorted(entry["execution_ids"] for entry in lists.values()) == sorted([[first, second], [third]])
    assert len(stats(sandbox)["duplicates"]) == 1


# -- clock skew -------------------------------------------------------------------------------------


@pytest.mark.parametrize("skew", [-3600, 7200])
def test_every_created_on_is_off_by_the_clock_skew(sandbox, skew):
    control(sandbox, clock_skew_seconds=skew, progression="per_read")
    flow_id = str(uuid.uuid4())
    before = datetime.now(UTC)
    created = start_run(sandbox, flow_id)
    after = datetime.now(UTC)

    stamped = datetime.fromisoformat(created["created_on"])
    assert stamped.utcoffset() is not None  # ISO 8601 with an offset
    # Off by the skew, far beyond any time the call took (no timing is asserted: the window is the call's own).
    assert before.timestamp() + skew <= stamped.timestamp() <= after.timestamp() + skew
    [listed] = page(sandbox, EXECUTIONS, flow=flow_id)["results"]
    read = detail(sandbox, created["id"])
    contacts = contacts_of(sandbox, created["id"])
    assert listed["created_on"] == read["created_on"] == created["created_on"]
    assert {item["created_on"] for item in contacts} == {created["created_on"]}
    assert {item["contact"]["created_on"] for item in contacts} == {created["created_on"]}


def test_newest_first_follows_created_on_as_hilos_stamped_it(sandbox):
    flow_id = str(uuid.uuid4())
    unskewed = start_run(sandbox, flow_id)["id"]
    control(sandbox, clock_skew_seconds=-3600)
    an_hour_behind = start_run(sandbox, flow_id)["id"]  # created later, stamped earlier

    listed = page(sandbox, EXECUTIONS, flow=flow_id)["results"]

    assert [item["id"] for item in listed] == [unskewed, an_hour_behind]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"list_page_size": 0}, "list_page_size"),
        ({"list_page_size": 101}, "list_page_size"),
        ({"clock_skew_seconds": 86_401}, "clock_skew_seconds"),
        ({"targets": ["lookups"]}, "targets"),
        ({"mix": {"slow_after": 1}}, "mix"),
    ],
)
def test_the_control_refuses_invalid_lookup_settings(sandbox, changes, field):
    answer = requests.post(f"{sandbox.url}/_sandbox/faults", json=changes, timeout=5)

    assert answer.status_code == 400
    assert field in answer.text
