"""schemathesis against the API's own OpenAPI document (GET /openapi.json), through the local stack's HTTP front
with its bearer token, the Hilos sandbox behind it: valid requests (positive mode) and requests the document
forbids (negative mode) for every operation. No answer may be a 5xx, and every error answer must be in the
one JSON error shape: {"code", "message", "details": [{"field", "reason"}], "run_id"?}."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from tests.e2e.local_stack import RunningStack, start_stack, stop_stack
from tests.fuzz.budget import count, examples

pytestmark = pytest.mark.e2e

ERROR_KEYS = {"code", "message", "details"}
OPTIONAL_ERROR_KEYS = {"run_id"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = start_stack(Path(tmp_path_factory.mktemp("fuzz-stack")))
    try:
        yield running
    finally:
        stop_stack(running)


def assert_error_shape(status: int, body: Any, where: str) -> None:
    assert isinstance(body, dict), f"{where}: {status} without a JSON object: {body!r}"
    assert ERROR_KEYS <= set(body) <= ERROR_KEYS | OPTIONAL_ERROR_KEYS, f"{where}: {body}"
    assert isinstance(body["code"], str), where
    assert body["code"], where
    assert isinstance(body["message"], str), where
    assert isinstance(body["details"], list), where
    for detail in body["details"]:
        assert set(detail) == {"field", "reason"}, f"{where}: {detail}"
        assert isinstance(detail["field"], str), f"{where}: {detail}"
        assert isinstance(detail["reason"], str), f"{where}: {detail}"


def gateway_refusal(status: int, content_type: str, text: str) -> bool:
    """API Gateway's own 4xx answers (mimicked by the local front): {"message": ...} for an unmatched route or
    an oversized body, and the HTTP server's refusal of a malformed request (an HTML page locally)."""
    if content_type.startswith("text/html") and status in (400, 414, 431):
        return True
    return content_type.startswith("application/json") and text in ('{"message":"Not Found"}',)


def fuzz(operation: Any, mode: GenerationMode, stack: RunningStack, max_examples: int) -> None:
    """Run ``max_examples`` generated requests of ``operation`` against the stack and check each answer."""
    auth = {"Authorization": f"Bearer {stack.info['api_token']}"}
    label = f"api: {operation.method.upper()} {operation.path} ({mode.value})"

    # No shrinking: a failing case is reported as generated (shrinking HTTP calls can take many minutes).
    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def call(case: Any) -> None:
        response = case.call(base_url=stack.info["api_url"], headers=auth, timeout=30)
        where = f"{label}: {case.method} {case.formatted_path} -> {response.status_code}"
        assert response.status_code < 500, f"{where}: {response.text[:500]}"
        if response.status_code < 400:
            count(label, str(response.status_code))
            return
        content_type = response.headers.get("content-type", [""])[0]  # schemathesis: lower-case names, lists
        if gateway_refusal(response.status_code, content_type, response.text):
            # The HTTP front refused the request before any function ran, as API Gateway does in its own
            # words (a route that does not exist, a malformed request line or header).
            count(label, f"{response.status_code} gateway")
            return
        assert content_type.startswith("application/json"), f"{where}: {content_type}: {response.text[:300]}"
        assert_error_shape(response.status_code, response.json(), where)
        count(label, str(response.status_code))

    call()


def test_no_5xx_and_every_error_in_the_one_shape(stack: RunningStack):
    document = stack.api("GET", "/openapi.json")
    assert document.status_code == 200
    schema = schemathesis.openapi.from_dict(document.json())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 5
    per_run = examples("api", 2 * len(operations))
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, mode, stack, per_run)
