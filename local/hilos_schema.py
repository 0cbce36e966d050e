"""Hilos' own schemas, from the OpenAPI documents the project carries (schemas/hilos/), as JSON Schema.

Two documents: Flow Execution (run, get, list executions; the default) and Flow Execution Contact (list an
execution's contacts). One implementation for two users: the Hilos sandbox of the local stack checks every
run request against it (and answers 400 like Hilos would), and the tests check that what we send is what
Hilos documents (tests/hilos_schema.py re-exports this module). Answers are checked against the documents
seen from the response side (``response_problems``): what the sandbox answers is what Hilos documents, so
a client that reads the sandbox reads Hilos. A schema name is looked up in the Flow Execution document
first, then in the Flow Execution Contact one (the names both define are the same schema in both).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

_SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "schemas" / "hilos"
HILOS_OPENAPI = _SCHEMAS_DIR / "flow-execution-openapi.yml"
HILOS_CONTACT_OPENAPI = _SCHEMAS_DIR / "flow-execution-contact-openapi.yml"
FLOW_EXECUTION_DOCUMENT = "flow-execution"
FLOW_EXECUTION_CONTACT_DOCUMENT = "flow-execution-contact"
# In lookup order: a name both define is taken from the first.
HILOS_DOCUMENTS: dict[str, Path] = {
    FLOW_EXECUTION_DOCUMENT: HILOS_OPENAPI,
    FLOW_EXECUTION_CONTACT_DOCUMENT: HILOS_CONTACT_OPENAPI,
}
RUN_REQUEST_SCHEMA = "FlowExecutionCreateRequest"
EXECUTION_DETAIL_SCHEMA = "FlowExecutionReadDetail"
EXECUTION_LIST_SCHEMA = "PaginatedFlowExecutionListList"
EXECUTION_CONTACT_LIST_SCHEMA = "PaginatedFlowExecutionContactListSimpleList"

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
def _openapi_schemas(document: str = FLOW_EXECUTION_DOCUMENT) -> dict[str, Any]:
    import yaml  # type: ignore[import-untyped]  # PyYAML ships no type hints

    schemas: dict[str, Any] = yaml.safe_load(HILOS_DOCUMENTS[document].read_text())["components"]["schemas"]
    return schemas


def document_of(name: str) -> str:
    """The first document (of HILOS_DOCUMENTS) that defines schema ``name``; KeyError if none does."""
    for document in HILOS_DOCUMENTS:
        if name in _openapi_schemas(document):
            return document
    raise KeyError(f"{name}: no such schema in {sorted(HILOS_DOCUMENTS)}")


@cache
def hilos_schemas(document: str = FLOW_EXECUTION_DOCUMENT) -> dict[str, Any]:
    """Every schema of a document, seen from the request side."""
    return {name: _to_json_schema(schema) for name, schema in _openapi_schemas(document).items()}


@cache
def hilos_response_schemas(document: str = FLOW_EXECUTION_DOCUMENT) -> dict[str, Any]:
    """Every schema of a document, seen from the response side."""
    return {name: _to_json_schema(schema, response=True) for name, schema in _openapi_schemas(document).items()}


def hilos_schema(name: str, document: str | None = None) -> dict[str, Any]:
    """Schema ``name`` seen from the request side, from ``document`` or the first that defines it."""
    schemas = hilos_schemas(document or document_of(name))
    return {"$defs": schemas, **schemas[name]}


def hilos_response_schema(name: str, document: str | None = None) -> dict[str, Any]:
    """Schema ``name`` seen from the response side, from ``document`` or the first that defines it."""
    schemas = hilos_response_schemas(document or document_of(name))
    return {"$defs": schemas, **schemas[name]}


def _validator(schema: dict[str, Any]) -> Any:
    import jsonschema  # type: ignore[import-untyped]  # jsonschema ships no type hints

    validator_class = jsonschema.Draft202012Validator
    return validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)


@cache
def _run_request_validator() -> Any:
    return _validator(hilos_schema(RUN_REQUEST_SCHEMA, FLOW_EXECUTION_DOCUMENT))


@cache
def _response_validator(name: str, document: str) -> Any:
    return _validator(hilos_response_schema(name, document))


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


def response_problems(
    body: Any, schema_name: str = EXECUTION_DETAIL_SCHEMA, document: str | None = None
) -> list[Problem]:
    """Why ``body`` is not a valid answer of schema ``schema_name`` (FlowExecutionReadDetail, the answer to
    Get Flow Execution, by default), from ``document`` or the first document that defines it (formats
    checked: email, uuid, date-time; no uri checker is installed); empty when it is."""
    validator = _response_validator(schema_name, document or document_of(schema_name))
    problems = [(tuple(error.absolute_path), str(error.message)) for error in validator.iter_errors(body)]
    return sorted(problems, key=lambda problem: [str(part) for part in problem[0]])
