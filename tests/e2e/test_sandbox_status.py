"""The Hilos sandbox's Get Flow Execution over real sockets: answers valid against Hilos' FlowExecutionReadDetail,
a progression by reads or by age, counters that add up, CANCELED for cancel_flows, a hold at a stage, status reads
counted per execution, and auth and faults applied to status reads as to runs."""

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from local.hilos_schema import hilos_response_schemas, response_problems
from local.sandbox import HilosSandbox
from local.sandbox_settings import SandboxSettings

pytestmark = pytest.mark.e2e

TOKEN = "sandbox-status-test-token-3b1f"
COUNTERS = ("running", "completed", "failed", "expired", "canceled")


@pytest.fixture(scope="module")
def sandbox() -> Iterator[HilosSandbox]:
    server = HilosSandbox(TOKEN, SandboxSettings())
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fresh(sandbox: HilosSandbox) -> None:
    requests.post(f"{sandbox.url}/_sandbox/reset", timeout=5).raise_for_status()


def control(sandbox: HilosSandbox, **changes: Any) -> requests.Response:
    return requests.post(f"{sandbox.url}/_sandbox/faults", json=changes, timeout=5)


def start_run(sandbox: HilosSandbox, phones: list[str], flow_id: str | None = None) -> str:
    flow_id = flow_id or str(uuid.uuid4())
    answer = requests.post(
        f"{sandbox.api_url}/flow/{flow_id}/run",
        json={"execute_for": "LIST", "contact_list": [{"phone": phone} for phone in phones]},
        headers={"Authorization": f"Token {TOKEN}"},
        timeout=5,
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["status"] == "PROCESSING"
    execution_id: str = answer.json()["id"]
    return execution_id


def read(sandbox: HilosSandbox, execution_id: str, *, token: str | None = TOKEN) -> requests.Response:
    headers = {"Authorization": f"Token {token}"} if token is not None else {}
    return requests.get(f"{sandbox.api_url}/flow-execution/{execution_id}", headers=headers, timeout=5)


def detail(sandbox: HilosSandbox, execution_id: str) -> dict[str, Any]:
    """One status read, checked against the schema Hilos documents for it."""
    answer = read(sandbox, execution_id)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert response_problems(body) == []
    declared = set(hilos_response_schemas()["FlowExecutionReadDetail"]["properties"])
    assert set(body) <= declared, f"undocumented fields: {set(body) - declared}"
    return body


def counters(body: dict[str, Any]) -> dict[str, int]:
    return {name: body[name] for name in COUNTERS}


def stats(sandbox: HilosSandbox) -> dict[str, Any]:
    answer: dict[str, Any] = requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).json()
    return answer


# Phones ending in 7 fail, in 9 expire (the defaults); the others complete.
PHONES = ["+5215500000017", "+5215500000029", "+5215500000031", "+5215500000042", "+5215500000057"]


def test_per_read_each_status_read_moves_the_run_one_stage_with_counters_that_add_up(sandbox):
    control(sandbox, progression="per_read")
    execution_id = start_run(sandbox, PHONES)

    seen = [detail(sandbox, execution_id) for _ in range(5)]

    assert [body["status"] for body in seen] == ["STARTING", "RUNNING", "COMPLETED", "COMPLETED", "COMPLETED"]
    starting, running, completed = seen[:3]
    assert counters(starting) == dict.fromkeys(COUNTERS, 0)
    assert counters(running) == {"running": 3, "completed": 0, "failed": 2, "expired": 0, "canceled": 0}
    assert counters(completed) == {"running": 0, "completed": 2, "failed": 2, "expired": 1, "canceled": 0}
    assert sum(counters(running).values()) == sum(counters(completed).values()) == completed["num_contacts"] == 5
    assert seen[3] == seen[4] == completed  # a finished run stays as it ended
    assert completed["avg_completion_time"].count(":") == 2
    assert {body["id"] for body in seen} == {execution_id}
    assert stats(sandbox)["status_reads"] == {execution_id: 5}


def test_by_time_the_stage_follows_the_runs_age(sandbox):
    control(sandbox, progression="time", stage_seconds=3600)
    waiting = start_run(sandbox, PHONES)
    assert detail(sandbox, waiting)["status"] == "PROCESSING"

    control(sandbox, stage_seconds={"PROCESSING": 0, "STARTING": 0, "RUNNING": 3600})
    assert detail(sandbox, waiting)["status"] == "RUNNING"

    control(sandbox, stage_seconds=0)
    finished = detail(sandbox, waiting)
    assert finished["status"] == "COMPLETED"
    assert counters(finished)["completed"] == 2


def test_switching_progression_never_moves_a_run_back(sandbox):
    control(sandbox, progression="time", stage_seconds=0)
    execution_id = start_run(sandbox, PHONES)
    assert detail(sandbox, execution_id)["status"] == "COMPLETED"

    control(sandbox, progression="per_read", stage_seconds=3600)

    assert detail(sandbox, execution_id)["status"] == "COMPLETED"


def test_a_flow_in_cancel_flows_ends_canceled_with_its_running_contacts_canceled(sandbox):
    flow_id = str(uuid.uuid4())
    control(sandbox, progression="per_read", cancel_flows=[flow_id])
    execution_id = start_run(sandbox, PHONES, flow_id)

    statuses = [detail(sandbox, execution_id) for _ in range(3)]

    assert [body["status"] for body in statuses] == ["STARTING", "RUNNING", "CANCELED"]
    assert counters(statuses[-1]) == {"running": 0, "completed": 0, "failed": 2, "expired": 0, "canceled": 3}
    assert statuses[-1]["avg_completion_time"] == ""
    other = start_run(sandbox, PHONES)  # another flow is not canceled
    assert [detail(sandbox, other)["status"] for _ in range(3)][-1] == "COMPLETED"


def test_a_held_flow_stays_at_its_stage_until_released(sandbox):
    flow_id = str(uuid.uuid4())
    control(sandbox, progression="per_read", hold_flows={flow_id: "RUNNING"})
    execution_id = start_run(sandbox, PHONES, flow_id)

    held = [detail(sandbox, execution_id)["status"] for _ in range(4)]
    control(sandbox, hold_flows={})
    released = detail(sandbox, execution_id)["status"]

    assert held == ["STARTING", "RUNNING", "RUNNING", "RUNNING"]
    assert released == "COMPLETED"


def test_status_reads_need_the_token_and_take_the_flows_faults_and_every_read_is_counted(sandbox):
    flow_id = str(uuid.uuid4())
    control(sandbox, progression="per_read")
    execution_id = start_run(sandbox, PHONES, flow_id)
    control(sandbox, flows={flow_id: {"rate": 1, "mix": {"503": 1}, "limit": 1, "targets": ["status"]}})

    faulted = read(sandbox, execution_id)  # the gateway's fault comes before the token is looked at
    missing = read(sandbox, execution_id, token=None)
    wrong = read(sandbox, execution_id, token="not-the-token")
    answered = detail(sandbox, execution_id)

    assert (faulted.status_code, missing.status_code, wrong.status_code) == (503, 401, 401)
    assert answered["status"] == "STARTING"  # refused reads do not move the run
    current = stats(sandbox)
    assert current["status_reads"] == {execution_id: 4}
    assert [call["status"] for call in current["recent_status_reads"]] == [503, 401, 401, 200]
    assert {call["flow_id"] for call in current["recent_status_reads"]} == {flow_id}
    assert current["status_read_answers"] == {"503": 1, "401": 2, "200": 1}
    assert current["status_read_faults"] == {"503": 1}
    # Status reads are counted apart: the run-call figures are the one create call's.
    assert (current["requests"], current["responses"], current["faults"]) == (1, {"201": 1}, {})
    assert current["flows"][flow_id] == {"calls": 1, "created": 1}
    assert [call["method"] for call in current["recent"]] == ["POST"]


def test_a_reset_keeps_the_executions_and_their_stage(sandbox):
    control(sandbox, progression="per_read")
    execution_id = start_run(sandbox, PHONES)
    assert detail(sandbox, execution_id)["status"] == "STARTING"

    requests.post(f"{sandbox.url}/_sandbox/reset", timeout=5).raise_for_status()

    assert stats(sandbox)["status_reads"] == {}
    assert requests.get(f"{sandbox.url}/_sandbox/faults", timeout=5).json()["progression"] == "time"
    control(sandbox, progression="per_read")
    assert detail(sandbox, execution_id)["status"] == "RUNNING"  # on from where it was
    assert stats(sandbox)["status_reads"] == {execution_id: 1}


def test_an_unknown_execution_is_404_and_counted(sandbox):
    unknown = str(uuid.uuid4())

    answer = read(sandbox, unknown)

    assert answer.status_code == 404
    assert stats(sandbox)["status_reads"] == {unknown: 1}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"progression": "sometimes"}, "progression"),
        ({"stage_seconds": {"DONE": 1}}, "stage_seconds"),
        ({"stage_seconds": -1}, "stage_seconds"),
        ({"hold_flows": {str(uuid.uuid4()): "COMPLETED"}}, "hold_flows"),
    ],
)
def test_the_control_refuses_invalid_progression_settings(sandbox, changes, field):
    answer = control(sandbox, **changes)

    assert answer.status_code == 400
    assert field in answer.text


def test_stage_seconds_given_in_part_keep_the_other_defaults(sandbox):
    answer = control(sandbox, stage_seconds={"RUNNING": 30})

    assert answer.json()["stage_seconds"] == {"PROCESSING": 2.0, "STARTING": 1.0, "RUNNING": 30.0}


def test_response_problems_finds_what_breaks_the_documented_answer(sandbox):
    control(sandbox, progression="per_read")
    body = detail(sandbox, start_run(sandbox, PHONES))

    wrong_status = response_problems({**body, "status": "DONE"})
    negative = response_problems({**body, "failed": -1})
    missing = response_problems({key: value for key, value in body.items() if key != "flow_version"})
    broken_flow = response_problems({**body, "flow": {"id": "x"}})

    assert [path for path, _ in wrong_status] == [("status",)]
    assert [path for path, _ in negative] == [("failed",)]
    assert missing == [((), "'flow_version' is a required property")]
    assert {path for path, _ in broken_flow} == {("flow",)}
    assert len(broken_flow) == 3  # name, created_by and channel are required too


def test_a_flows_fault_plan_faults_its_run_calls_only_unless_it_targets_status_reads(sandbox):
    flow_id = str(uuid.uuid4())
    execution_id = start_run(sandbox, PHONES, flow_id)
    control(sandbox, flows={flow_id: {"rate": 1, "mix": {"503": 1}, "limit": 1}})

    # The status sync's reads do not use up a plan meant for the flow's next run.
    assert read(sandbox, execution_id).status_code == 200
    assert stats(sandbox)["status_read_faults"] == {}
    again = requests.post(
        f"{sandbox.api_url}/flow/{flow_id}/run",
        json={"execute_for": "LIST", "contact_list": [{"phone": "+5215512340001"}]},
        headers={"Authorization": f"Token {TOKEN}"},
        timeout=5,
    )
    assert again.status_code == 503
