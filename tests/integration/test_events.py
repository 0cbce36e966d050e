"""The sample events in events/ (for `sam local invoke RunApiFunction -e events/...`) do what their names
say when fed to run_api's handler, and none of them carries a token."""

import json
import re
from pathlib import Path
from typing import Any

import pytest

from local.events import LocalLambdaContext
from tests.fake_hilos import FakeHilos, reply
from tests.helpers import TEST_TOKEN, hilos_execution

EVENTS = Path(__file__).resolve().parents[2] / "events"
API_EVENTS = sorted(EVENTS.glob("api-*.json"))
# An Authorization value of any scheme, a Hilos-style "Token xyz", or a JWT (three base64url parts).
TOKEN_LIKE = re.compile(r"(?i)\b(?:token|bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}|\beyJ[\w-]+\.[\w-]+\.[\w-]+")


def invoke(name: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    import run_api

    event = json.loads((EVENTS / name).read_text())
    answer = run_api.lambda_handler(event, LocalLambdaContext(function_name="run-api"))
    return answer["statusCode"], json.loads(answer["body"]), answer.get("headers", {})


def test_there_is_an_event_per_documented_case():
    assert {path.name for path in API_EVENTS} >= {
        "api-create-run.json",
        "api-create-run-invalid.json",
        "api-get-run.json",
    }


@pytest.mark.parametrize("path", API_EVENTS, ids=lambda p: p.name)
def test_event_files_carry_no_token(path: Path):
    text = path.read_text()
    event = json.loads(text)

    assert TEST_TOKEN not in text
    assert not TOKEN_LIKE.search(text + (event.get("body") or ""))
    assert "authorization" not in {name.lower() for name in event["headers"]}


@pytest.mark.usefixtures("aws")
def test_create_run_event_starts_the_run_once(hilos: FakeHilos):
    hilos.answer_runs(reply(201, hilos_execution(num_contacts=2)))

    status, body, headers = invoke("api-create-run.json")

    assert status == 201
    assert len(hilos.calls) == 1
    assert body["run"]["status"] == "SUBMITTED"
    assert body["run"]["num_contacts"] == 2
    assert headers["Location"] == f"/runs/{body['run']['run_id']}"
    sent = json.loads(hilos.calls[0].request.body or b"")
    event_body = json.loads(json.loads((EVENTS / "api-create-run.json").read_text())["body"])
    assert sent == {"execute_for": "LIST", **event_body}
    assert TEST_TOKEN not in json.dumps(body)


@pytest.mark.usefixtures("aws")
def test_invalid_run_event_is_422_naming_every_bad_field_and_hilos_is_not_called(hilos: FakeHilos):
    status, body, _ = invoke("api-create-run-invalid.json")

    assert status == 422
    assert body["code"] == "validation_error"
    assert {detail["field"] for detail in body["details"]} >= {
        "body.execute_for",
        "body.has_priority",
        "body.contact_list.0.phone",
        "body.contact_list.0.email",
        "body.contact_list.0.phone_number",
        "body.contact_list.1",
        "body.contact_list.2.tags.0.id",
        "body.contact_list.2.default_assignees.0",
    }
    assert len(hilos.calls) == 0


@pytest.mark.usefixtures("aws")
def test_get_run_event_for_an_unknown_run_is_404(hilos: FakeHilos):
    status, body, _ = invoke("api-get-run.json")

    assert status == 404
    assert body["code"] == "not_found"
    assert len(hilos.calls) == 0
