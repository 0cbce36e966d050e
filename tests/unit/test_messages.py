"""The queued-run message contract and its JSON Schema file."""

import json
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError

from hilos_runner.messages import QueuedRun, queued_run_json_schema
from tests.helpers import FLOW_ID, queued_run

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "queued-run.schema.json"
BULK_REFERENCES = {
    "bulk_id": "6f9a8a44-1f1e-4a53-9a3b-6d2f0c1e7b11",
    "chunk_index": 0,
    "run_id": "0e6b7b9e-3f84-4d38-8b6c-2c3f7a0d9e55",
}


def test_the_schema_file_is_current():
    assert SCHEMA_PATH.read_text() == queued_run_json_schema(), (
        "schemas/queued-run.schema.json is stale: run `hilos-runner schema --output schemas/queued-run.schema.json`"
    )


@pytest.mark.parametrize(
    ("message", "valid"),
    [
        (queued_run(2, has_priority=True, idempotency_key="crm-1", flow_execution_variables={"a": 1}), True),
        (queued_run(1, **BULK_REFERENCES), True),
        (queued_run(1, phone_number="+5215500000001"), False),
        ({"flow_id": "not-a-uuid", "contact_list": [{"phone": "+5215500000001"}]}, False),
        ({"flow_id": FLOW_ID, "contact_list": []}, False),
        ({"flow_id": FLOW_ID, "contact_list": [{"phone": "+5215500000001", "nickname": "x"}]}, False),
    ],
)
def test_the_schema_and_the_model_agree(message: dict, valid: bool):
    schema = json.loads(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    assert validator.is_valid(json.loads(json.dumps(message))) is valid
    if valid:
        QueuedRun.model_validate(message)
    else:
        with pytest.raises(ValidationError):
            QueuedRun.model_validate(message)


@pytest.mark.parametrize(
    "references",
    [{"bulk_id": BULK_REFERENCES["bulk_id"]}, {"chunk_index": 0, "run_id": BULK_REFERENCES["run_id"]}],
)
def test_bulk_references_come_together(references: dict):
    with pytest.raises(ValidationError, match="set together"):
        QueuedRun.model_validate(queued_run(1, **references))


def test_a_bulk_chunk_is_one_hilos_call_at_most():
    with pytest.raises(ValidationError, match="at most 1000"):
        QueuedRun.model_validate(queued_run(1001, **BULK_REFERENCES))
    assert len(QueuedRun.model_validate(queued_run(1001)).contact_list) == 1001  # a producer's: split by the worker


@pytest.mark.parametrize("key", ["order#1", "with space", "x" * 129])
def test_producer_keys_follow_the_api_pattern_and_never_look_derived(key: str):
    # '#' is how the worker derives the keys of a split message's calls: a producer cannot collide.
    with pytest.raises(ValidationError):
        QueuedRun.model_validate(queued_run(idempotency_key=key))


def test_the_hilos_request_carries_exactly_what_the_producer_sent():
    message = QueuedRun.model_validate(
        {"flow_id": FLOW_ID, "contact_list": [{"phone": "+5215500000001", "email": None}, {"phone": "+5215500000002"}]}
    )

    request = message.run_request(message.contact_list[1:])

    assert json.loads(request.hilos_body()) == {
        "execute_for": "LIST",
        "has_priority": False,
        "contact_list": [{"phone": "+5215500000002"}],
    }
    assert json.loads(message.run_request(message.contact_list[:1]).hilos_body())["contact_list"] == [
        {"phone": "+5215500000001", "email": None}
    ]
    assert message.body() == json.dumps(
        {"flow_id": FLOW_ID, "contact_list": [{"phone": "+5215500000001", "email": None}, {"phone": "+5215500000002"}]},
        separators=(",", ":"),
    )
