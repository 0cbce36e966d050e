"""Helpers shared by the tests: constants, request bodies, and calling the handlers."""

import json
from dataclasses import dataclass
from typing import Any

from local.events import LocalLambdaContext, http_api_event

# Recognisable so that a leak is easy to grep for; never a real token.
TEST_TOKEN = "hilos-test-token-7f3c9a1e5b2d"
FLOW_ID = "a3ff7ee5-0c11-49e2-a0d6-7e316626f7b1"
HILOS_BASE = "https://api.hilos.io/api"
RUN_URL = f"{HILOS_BASE}/flow/{FLOW_ID}/run"
HILOS_EXECUTION_ID = "5b0e7c1a-2f7d-4c55-9a43-0d4e2a1b9c10"


def hilos_execution(**overrides: Any) -> dict[str, Any]:
    """A FlowExecutionEdit as Hilos answers it (201)."""
    return {
        "id": HILOS_EXECUTION_ID,
        "status": "PROCESSING",
        "execute_for": "LIST",
        "has_priority": False,
        "num_contacts": 1,
        "status_reason": None,
        "status_triggered_by": None,
        "status_last_change_on": None,
        "source": "API",
        **overrides,
    }


def contact(**overrides: Any) -> dict[str, Any]:
    return {"phone": "+5215512345678", "first_name": "Ana", **overrides}


def run_body(contacts: int = 1, **overrides: Any) -> dict[str, Any]:
    return {"contact_list": [contact(phone=f"+52155{i:08d}") for i in range(contacts)], **overrides}


@dataclass
class ApiAnswer:
    status: int
    body: Any
    headers: dict[str, str]


def call_run_api(
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
) -> ApiAnswer:
    """Invoke run_api's Lambda handler with the event API Gateway would send."""
    import run_api

    event = http_api_event(method, path, body=body, headers=headers, query=query)
    answer = run_api.lambda_handler(event, LocalLambdaContext(function_name="run-api"))
    text = answer.get("body") or ""
    content_type = answer.get("headers", {}).get("Content-Type", "")
    parsed = json.loads(text) if text and content_type.startswith("application/json") else text
    return ApiAnswer(answer["statusCode"], parsed, answer.get("headers", {}))
