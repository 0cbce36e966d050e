"""The Hilos sandbox's lookups under faults, over real sockets: auth and counting apart from runs and status
reads, lookup faults only when a plan targets them, slow_before/reset_before create nothing while slow/reset create
exactly one, and clock skew."""

import uuid
from datetime import UTC, datetime

import pytest
import requests

from local.sandbox_settings import DEFAULT_FAULT_MIX, FaultKind, SandboxSettings
from tests.e2e.sandbox_lookup.lookups import (
    AUTH,
    CONTACTS,
    EXECUTIONS,
    PHONES,
    contacts_of,
    control,
    detail,
    lookup,
    page,
    post_run,
    start_run,
    stats,
)

pytestmark = pytest.mark.e2e


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
