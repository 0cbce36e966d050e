"""A test assertion on Hilos' own request schema; the schema and its checks live in local/hilos_schema.py (the
local stack's Hilos sandbox checks requests with them too)."""

from typing import Any

from local.hilos_schema import run_request_problems


def assert_matches_hilos_run_request(body: dict[str, Any]) -> None:
    """Fail unless ``body`` is a valid FlowExecutionCreateRequest (formats checked: email, uuid, date-time)."""
    problems = [f"{'.'.join(map(str, path)) or '(body)'}: {message}" for path, message in run_request_problems(body)]
    assert not problems, f"not a valid Hilos run request: {problems}"
