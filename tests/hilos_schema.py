"""Hilos' own request schema, from the OpenAPI document the project carries (schemas/hilos/),
turned into JSON Schema so tests can check that what we send is what Hilos documents."""

from functools import cache
from pathlib import Path
from typing import Any

import yaml

HILOS_OPENAPI = Path(__file__).resolve().parent.parent / "schemas" / "hilos" / "flow-execution-openapi.yml"


def _to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema objects -> JSON Schema: `nullable` becomes a null type, refs point at $defs,
    read-only properties may not be sent."""
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
    return converted


@cache
def hilos_schemas() -> dict[str, Any]:
    document = yaml.safe_load(HILOS_OPENAPI.read_text())
    return {name: _to_json_schema(schema) for name, schema in document["components"]["schemas"].items()}


def hilos_schema(name: str) -> dict[str, Any]:
    return {"$defs": hilos_schemas(), **hilos_schemas()[name]}


def assert_matches_hilos_run_request(body: dict[str, Any]) -> None:
    """Fail unless ``body`` is a valid FlowExecutionCreateRequest (formats checked: email, uri, uuid)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(
        hilos_schema("FlowExecutionCreateRequest"), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    problems = sorted(str(error.message) for error in validator.iter_errors(body))
    assert not problems, f"not a valid Hilos run request: {problems}"
