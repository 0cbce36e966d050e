"""The run API over real HTTP: bearer auth at the front, the run reaching the Hilos sandbox, the record
readable over HTTP, and Hilos' faults turned into the documented answers without duplicate runs."""

import uuid

import pytest

from local.running_stack import RunningStack
from tests.helpers import run_body

pytestmark = pytest.mark.e2e


def new_flow() -> str:
    return str(uuid.uuid4())


def test_a_run_over_http_reaches_the_sandbox_and_is_recorded(local_stack: RunningStack):
    flow_id = new_flow()
    body = run_body(contacts=2, flow_execution_variables={"campaign": "e2e"})

    answer = local_stack.api("POST", f"/flows/{flow_id}/runs", json=body)

    assert answer.status_code == 201, answer.text
    run = answer.json()["run"]
    assert run["status"] == "SUBMITTED"
    [call] = local_stack.calls_for(flow_id)
    assert call["auth_scheme"] == "Token"
    assert call["auth_ok"] is True
    assert call["body_valid"] is True  # checked against the Hilos schema by the sandbox
    assert call["status"] == 201
    assert call["num_contacts"] == 2
    assert run["hilos_execution_id"] == call["execution_id"]

    stored = local_stack.api("GET", f"/runs/{run['run_id']}")
    assert stored.status_code == 200
    assert stored.json() | {"updated_at": None} == run | {"updated_at": None}
    assert answer.headers["Location"] == f"/runs/{run['run_id']}"

    listed = local_stack.api("GET", f"/flows/{flow_id}/runs", params={"limit": "5"})
    assert [item["run_id"] for item in listed.json()["items"]] == [run["run_id"]]


@pytest.mark.parametrize("token", [None, "not-the-token"])
def test_without_the_bearer_token_the_front_answers_401_and_nothing_runs(local_stack: RunningStack, token):
    flow_id = new_flow()

    answer = local_stack.api("POST", f"/flows/{flow_id}/runs", json=run_body(), token=token)

    assert answer.status_code == 401
    assert answer.json()["code"] == "unauthorized"
    assert set(answer.json()) == {"code", "message", "details"}
    assert local_stack.calls_for(flow_id) == []


def test_an_unknown_route_is_404_like_api_gateway(local_stack: RunningStack):
    assert local_stack.api("GET", "/no/such/route").status_code == 404


def test_a_transient_hilos_failure_is_503_and_a_retry_with_the_same_key_starts_the_flow_once(
    local_stack: RunningStack,
):
    flow_id = new_flow()
    local_stack.set_faults(flows={flow_id: {"rate": 1, "mix": {"503": 1}, "limit": 1}})
    key = {"Idempotency-Key": f"e2e-{flow_id}"}
    body = run_body(contacts=3)

    first = local_stack.api("POST", f"/flows/{flow_id}/runs", json=body, headers=key)
    second = local_stack.api("POST", f"/flows/{flow_id}/runs", json=body, headers=key)

    assert first.status_code == 503
    assert first.json()["code"] == "hilos_unavailable"
    assert int(first.headers["Retry-After"]) >= 1
    assert second.status_code == 201, second.text
    assert [call["status"] for call in local_stack.calls_for(flow_id)] == [503, 201]
    assert local_stack.sandbox_stats()["flows"][flow_id] == {"calls": 2, "created": 1}


@pytest.mark.parametrize("fault", ["slow", "reset"])
def test_an_unknown_outcome_is_504_recorded_unknown_and_never_resent(local_stack: RunningStack, fault):
    flow_id = new_flow()
    local_stack.set_faults(flows={flow_id: {"rate": 1, "mix": {fault: 1}}})
    key = {"Idempotency-Key": f"e2e-{fault}-{flow_id}"}
    body = run_body()

    first = local_stack.api("POST", f"/flows/{flow_id}/runs", json=body, headers=key)
    repeated = local_stack.api("POST", f"/flows/{flow_id}/runs", json=body, headers=key)

    assert first.status_code == 504, first.text
    assert first.json()["code"] == "hilos_outcome_unknown"
    run_id = first.json()["run_id"]
    assert local_stack.api("GET", f"/runs/{run_id}").json()["status"] == "UNKNOWN"
    assert repeated.status_code == 504
    assert repeated.json()["run_id"] == run_id  # the stored first answer, not a second Hilos call
    stats = local_stack.sandbox_stats()
    assert stats["flows"][flow_id]["created"] == 1
    assert not [fp for fp in stats["duplicates"] if stats["contact_lists"][fp]["flow_id"] == flow_id]


def test_permanent_hilos_refusals_are_recorded_and_answered(local_stack: RunningStack):
    rejected_flow, unknown_flow = new_flow(), new_flow()
    local_stack.set_faults(reject_flows=[rejected_flow], unknown_flows=[unknown_flow])

    rejected = local_stack.api("POST", f"/flows/{rejected_flow}/runs", json=run_body())
    unknown = local_stack.api("POST", f"/flows/{unknown_flow}/runs", json=run_body())

    assert rejected.status_code == 422
    assert rejected.json()["code"] == "hilos_rejected"
    assert local_stack.api("GET", f"/runs/{rejected.json()['run_id']}").json()["status"] == "REJECTED"
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "flow_not_found"
    assert local_stack.api("GET", f"/runs/{unknown.json()['run_id']}").json()["status"] == "FAILED"
