"""Hilos' own request schema, from the OpenAPI document the project carries (schemas/hilos/), as JSON Schema.

One implementation for two users: the Hilos sandbox of the local stack checks every run request
against it (and answers 400 like Hilos would), and the tests check that what we send is what Hilos
documents (tests/hilos_schema.py re-exports this module).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

HILOS_OPENAPI = Path(__file__).resolve().parent.parent / "schemas" / "hilos" / "flow-execution-openapi.yml"
RUN_REQUEST_SCHEMA = "FlowExecutionCreateRequest"

# A problem in a request body: where (JSON path parts, "" parts never occur) and what.
Problem = tuple[tuple[str | int, ...], str]


def _to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema objects -> JSON Schema, seen from the request side: `nullable` becomes a null
    type, refs point at $defs, read-only properties may not be sent (and so are never required)."""
    if isinstance(node, list):
        return [_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _to_json_schema(value) for key, value in node.items() if key not in ("nullable", "example")}
    if "$ref" in converted:
        converted["$ref"] = converted["$ref"].replace("#/components/schemas/", "#/$defs/")
    if node.get("nullable"):
        if "type" in converted:
            converted["type"] = [converted["type"], "null"]
        if "enum" in converted:
            converted["enum"] = [*converted["enum"], None]
    if node.get("readOnly"):
        return {"not": {}, "description": "read-only"}
    if "required" in node and isinstance(node.get("properties"), dict):
        # OpenAPI 3.0: "required" on a read-only property applies to responses only.
        properties = node["properties"]
        read_only = {name for name, spec in properties.items() if isinstance(spec, dict) and spec.get("readOnly")}
        converted["required"] = [name for name in node["required"] if name not in read_only]
    return converted


@cache
def hilos_schemas() -> dict[str, Any]:
    import yaml  # type: ignore[import-untyped]  # PyYAML ships no type hints

    document = yaml.safe_load(HILOS_OPENAPI.read_text())
    return {name: _to_json_schema(schema) for name, schema in document["components"]["schemas"].items()}


def hilos_schema(name: str) -> dict[str, Any]:
    return {"$defs": hilos_schemas(), **hilos_schemas()[name]}


@cache
def _run_request_validator() -> Any:
    import jsonschema  # type: ignore[import-untyped]  # jsonschema ships no type hints

    validator_class = jsonschema.Draft202012Validator
    return validator_class(hilos_schema(RUN_REQUEST_SCHEMA), format_checker=validator_class.FORMAT_CHECKER)


def run_request_problems(body: Any) -> list[Problem]:
    """Why ``body`` is not a valid FlowExecutionCreateRequest (formats checked: email, uuid, date-time);
    empty when it is. A missing property is reported at its own path, as Django REST framework does."""
    problems: list[Problem] = []
    for error in _run_request_validator().iter_errors(body):
        path = tuple(error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, dict):
            missing = [name for name in error.validator_value if name not in error.instance]
            problems.extend(((*path, name), "This field is required.") for name in missing)
        elif error.validator == "not" and error.validator_value == {}:
            problems.append((path, "This field is read-only."))
        else:
            problems.append((path, str(error.message)))
    return sorted(problems, key=lambda problem: [str(part) for part in problem[0]])
