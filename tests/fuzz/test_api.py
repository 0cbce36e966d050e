"""The API through the local stack (HTTP front, run_api, the queue and bulk_worker, the Hilos sandbox):

1. the bad-input corpus (tests/bad_inputs.py) through the HTTP front and through the stack's real SQS queue: each
   answered as the table says, naming the field; each message recorded REJECTED and gone after one delivery;
   no Hilos call; plus what only a real HTTP server meets (TRACE, a URL over the front's limit);
2. schemathesis with all its phases (examples, coverage, fuzzing, stateful) and all its checks against the OpenAPI
   document the API serves. Must hold: 0 5xx, 0 answers with an undocumented status code, media type or headers,
   0 answers outside their schema, and at least half of the schema-valid run bodies generated accepted (201) and
   created in the sandbox. The other checks' findings are counted and printed (see docs/reliability.md).

``make fuzz`` runs every phase with FUZZ_EXAMPLES (10,000) shared out; ``make test`` runs a small version
(examples and fuzzing phases) so the suite stays within minutes.
"""

import json
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from local.running_stack import RunningStack, start_stack, stop_stack, wait_for
from tests.bad_inputs import CASES, QUEUE_ONLY, BadInput
from tests.fuzz.budget import FULL_RUN, count, examples
from tests.helpers import FLOW_ID

pytestmark = pytest.mark.e2e

PATHS = {"runs": f"/flows/{FLOW_ID}/runs", "bulk": f"/flows/{FLOW_ID}/bulk-runs"}
# Checks whose every failure fails the run; the others' findings are reported (schemathesis runs them all).
MUST_PASS = {
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
}
ERROR_KEYS = {"code", "message", "details"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = start_stack(Path(tmp_path_factory.mktemp("fuzz-stack")))
    try:
        yield running
    finally:
        stop_stack(running)


# --- 1. the corpus --------------------------------------------------------------------------------------------


def post(stack: RunningStack, case: BadInput, route: str) -> requests.Response:
    body = case.body if isinstance(case.body, bytes) else case.body.encode()
    return stack.api("POST", PATHS[route], data=body, headers=case.headers(), params=case.query)


def test_the_corpus_through_the_http_front(stack: RunningStack):
    calls_before = stack.sandbox_stats()["requests"]
    for case in CASES:
        for route in (route for route in case.routes if route != "queue"):
            answer = post(stack, case, route)
            where = f"{route}: {case.name}"
            assert answer.status_code == case.status, f"{where}: {answer.text[:300]}"
            body = answer.json()
            assert body["code"] == case.code, where
            assert any(detail["field"].startswith(case.field) for detail in body["details"]), f"{where}: {body}"
            count("corpus: API", str(answer.status_code))
    assert stack.sandbox_stats()["requests"] == calls_before  # no Hilos call


def test_what_only_a_real_server_meets(stack: RunningStack):
    trace = stack.api("TRACE", PATHS["runs"])
    assert (trace.status_code, trace.json()) == (404, {"message": "Not Found"})  # as API Gateway answers
    query = stack.api("QUERY", f"/runs/{uuid.uuid4()}")
    assert (query.status_code, query.json()) == (404, {"message": "Not Found"})
    too_long = stack.api("GET", f"/flows/{FLOW_ID}/runs", params={"cursor": "x" * 70_000})
    assert too_long.status_code == 414
    assert set(too_long.json()) == ERROR_KEYS
    assert too_long.json()["code"] == "uri_too_long"
    for answer in (trace, query, too_long):
        count("corpus: API", str(answer.status_code))


def test_the_corpus_through_the_queue(stack: RunningStack):
    calls_before = stack.sandbox_stats()["requests"]
    sqs = stack.aws_client("sqs")
    messages = [case.message() for case in CASES if "queue" in case.routes] + [text for text, _ in QUEUE_ONLY.values()]
    sent = {sqs.send_message(QueueUrl=stack.info["queue_url"], MessageBody=text)["MessageId"] for text in messages}

    def recorded() -> dict[str, dict[str, Any]] | None:
        found = {}
        for flow in (FLOW_ID, str(uuid.UUID(int=0))):
            for run in stack.api("GET", f"/flows/{flow}/runs", params={"limit": "100"}).json()["items"]:
                found[str(run["idempotency_key"]).removeprefix("sqs-")] = run
        return found if sent <= set(found) else None

    runs = wait_for(recorded, timeout=60, interval=0.5)
    assert runs is not None, "not every message was recorded"
    for message_id in sent:
        assert (runs[message_id]["status"], runs[message_id]["attempts"]) == ("REJECTED", 1), runs[message_id]
        count("corpus: queue", "REJECTED on the first delivery")
    dead = sqs.receive_message(QueueUrl=stack.info["dlq_url"], MaxNumberOfMessages=10).get("Messages", [])
    assert dead == []
    assert stack.sandbox_stats()["requests"] == calls_before


# --- 2. schemathesis --------------------------------------------------------------------------------------------


def schemathesis(stack: RunningStack, report: Path, max_examples: int, phases: str) -> list[dict[str, Any]]:
    """``st run`` against the served document; the scenarios of its NDJSON report."""
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        stack.info["api_url"] + "/openapi.json",
        "--header",
        f"Authorization: Bearer {stack.info['api_token']}",
        "--phases",
        phases,
        "--checks",
        "all",
        "--max-examples",
        str(max_examples),
        "--seed",
        "12",
        "--continue-on-failure",
        "--suppress-health-check",
        "all",
        "--no-color",
        "--report",
        "ndjson",
        "--report-ndjson-path",
        str(report),
    ]
    # The venv's own schemathesis, arguments built here: nothing untrusted reaches the command line.
    finished = subprocess.run(command, capture_output=True, text=True, timeout=3600, check=False)  # noqa: S603
    (report.parent / "schemathesis.txt").write_text(finished.stdout + finished.stderr)
    events = [json.loads(line) for line in report.read_text().splitlines()]
    return [event["ScenarioFinished"]["recorder"] for event in events if "ScenarioFinished" in event]


def is_valid_run_body(case: dict[str, Any]) -> bool:
    """A POST of a run that schemathesis generated valid in every part, to be started (not a dry run)."""
    value = case["value"]
    modes = {part["mode"] for part in value["meta"].get("components", {}).values()}
    return (
        value["method"] == "POST"
        and value["path"] == "/flows/{flow_id}/runs"
        and value["meta"]["generation"]["mode"] == "positive"
        and modes <= {"positive"}
        and str((value.get("query") or {}).get("dry_run", "false")).lower() in ("false", "0", "off", "no")
    )


def is_scheduled(case: dict[str, Any]) -> bool:
    """A run asked to start later (``start_at``): answered 202 (or 422 outside the horizon), started at its time."""
    return "start_at" in (case["value"].get("query") or {})


def test_schemathesis_every_phase_and_check(stack: RunningStack, tmp_path: Path):
    phases = "examples,coverage,fuzzing,stateful" if FULL_RUN else "examples,fuzzing"
    created_before = stack.sandbox_stats()["runs_created"]
    scenarios = schemathesis(stack, tmp_path / "schemathesis.ndjson", examples("api", 5), phases)
    created = stack.sandbox_stats()["runs_created"] - created_before

    failures: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    valid_runs = accepted_runs = 0
    examples_of_failure: dict[str, str] = {}
    for scenario in scenarios:
        for case_id, interaction in scenario.get("interactions", {}).items():
            response = interaction.get("response") or {}
            status = response.get("status_code")
            statuses[f"{status // 100}xx" if status else "no answer"] += 1
            count(f"api: schemathesis {scenario['label']}", str(status))
            case = scenario.get("cases", {}).get(case_id)
            if case and is_valid_run_body(case) and is_scheduled(case):
                count("schemathesis valid run bodies with start_at", str(status))
            elif case and is_valid_run_body(case):
                valid_runs += 1
                accepted_runs += status == 201
        for case_id, checks in scenario.get("checks", {}).items():
            for check in checks:
                if check["status"] == "failure":
                    failures[check["name"]] += 1
                    examples_of_failure.setdefault(check["name"], f"{scenario['label']} ({case_id})")
    for name, number in failures.items():
        count("schemathesis check failures", name, number)
    count("schemathesis valid run bodies", "accepted (201)", accepted_runs)
    count("schemathesis valid run bodies", "refused (to start now)", valid_runs - accepted_runs)
    count("schemathesis valid run bodies", "runs the sandbox created meanwhile", created)

    assert sum(statuses.values()) > 0
    assert statuses["5xx"] == 0, examples_of_failure
    assert not {name: failures[name] for name in MUST_PASS if failures[name]}, examples_of_failure
    assert valid_runs > 0
    assert accepted_runs >= valid_runs / 2, f"{accepted_runs} of {valid_runs} valid run bodies accepted"
    assert created >= accepted_runs  # each accepted run was created in the sandbox (bulk chunks add more)
