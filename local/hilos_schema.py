"""Hilos' own schemas, from the OpenAPI document the project carries (schemas/hilos/), as JSON Schema.

One implementation for two users: the Hilos sandbox of the local stack checks every run request
against it (and answers 400 like Hilos would), and the tests check that what we send is what Hilos
documents (tests/hilos_schema.py re-exports this module). Answers are checked against the same
document seen from the response side (``response_problems``): what the sandbox answers is what Hilos
documents, so a client that reads the sandbox reads Hilos.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

HILOS_OPENAPI = Path(__file__).resolve().parent.parent / "schemas" / "hilos" / "flow-execution-openapi.yml"
RUN_REQUEST_SCHEMA = "FlowExecutionCreateRequest"
EXECUTION_DETAIL_SCHEMA = "FlowExecutionReadDetail"

# A problem in a request body: where (JSON path parts, "" parts never occur) and what.
Problem = tuple[tuple[str | int, ...], str]


def _to_json_schema(node: Any, *, response: bool = False) -> Any:
    """OpenAPI 3.0 schema objects -> JSON Schema: `nullable` becomes a null type, refs point at $defs.
    Seen from the request side, read-only properties may not be sent (and so are never required);
    seen from the response side (``response``), they are ordinary properties, required where listed."""
    if isinstance(node, list):
        return [_to_json_schema(item, response=response) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {
        key: _to_json_schema(value, response=response)
        for key, value in node.items()
        if key not in ("nullable", "example", "readOnly")
    }
    if "$ref" in converted:
        converted["$ref"] = converted["$ref"].replace("#/components/schemas/", "#/$defs/")
    if node.get("nullable"):
        if "type" in converted:
            converted["type"] = [converted["type"], "null"]
        if "enum" in converted:
            converted["enum"] = [*converted["enum"], None]
    if response:
        return converted  # the document has no writeOnly property, so nothing else differs
    if node.get("readOnly"):
        return {"not": {}, "description": "read-only"}
    if "required" in node and isinstance(node.get("properties"), dict):
        # OpenAPI 3.0: "required" on a read-only property applies to responses only.
        properties = node["properties"]
        read_only = {name for name, spec in properties.items() if isinstance(spec, dict) and spec.get("readOnly")}
        converted["required"] = [name for name in node["required"] if name not in read_only]
    return converted


@cache
def _openapi_schemas() -> dict[str, Any]:
    import yaml  # type: ignore[import-untyped]  # PyYAML ships no type hints

    schemas: dict[str, Any] = yaml.safe_load(HILOS_OPENAPI.read_text())["components"]["schemas"]
    return schemas


@cache
def hilos_schemas() -> dict[str, Any]:
    """Every schema of the document, seen from the request side."""
    return {name: _to_json_schema(schema) for name, schema in _openapi_schemas().items()}


@cache
def hilos_response_schemas() -> dict[str, Any]:
    """Every schema of the document, seen from the response side."""
    return {name: _to_json_schema(schema, response=True) for name, schema in _openapi_schemas().items()}


def hilos_schema(name: str) -> dict[str, Any]:
    return {"$defs": hilos_schemas(), **hilos_schemas()[name]}


def hilos_response_schema(name: str) -> dict[str, Any]:
    return {"$defs": hilos_response_schemas(), **hilos_response_schemas()[name]}


def _validator(schema: dict[str, Any]) -> Any:
    import jsonschema  # type: ignore[import-untyped]  # jsonschema ships no type hints

    validator_class = jsonschema.Draft202012Validator
    return validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)


@cache
def _run_request_validator() -> Any:
    return _validator(hilos_schema(RUN_REQUEST_SCHEMA))


@cache
def _response_validator(name: str) -> Any:
    return _validator(hilos_response_schema(name))


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


def response_problems(body: Any, schema_name: str = EXECUTION_DETAIL_SCHEMA) -> list[Problem]:
    """Why ``body`` is not a valid answer of schema ``schema_name`` (FlowExecutionReadDetail, the answer to
    Get Flow Execution, by default; formats checked: email, uuid, date-time); empty when it is."""
    problems = [
        (tuple(error.absolute_path), str(error.message)) for error in _response_validator(schema_name).iter_errors(body)
    ]
    return sorted(problems, key=lambda problem: [str(part) for part in problem[0]])
