"""Hilos' own request schema for the tests: the one implementation lives in local/hilos_schema.py (the Hilos
sandbox of the local stack checks requests with it too); this module re-exports it with a test assertion."""

from typing import Any

from local.hilos_schema import HILOS_OPENAPI, hilos_schema, hilos_schemas, run_request_problems

__all__ = ["HILOS_OPENAPI", "assert_matches_hilos_run_request", "hilos_schema", "hilos_schemas"]


def assert_matches_hilos_run_request(body: dict[str, Any]) -> None:
    """Fail unless ``body`` is a valid FlowExecutionCreateRequest (formats checked: email, uuid, date-time)."""
    problems = [f"{'.'.join(map(str, path)) or '(body)'}: {message}" for path, message in run_request_problems(body)]
    assert not problems, f"not a valid Hilos run request: {problems}"
