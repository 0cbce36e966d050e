"""Property tests of the run request model against Hilos' own schema (schemas/hilos/, as JSON Schema).

1. Whatever the Hilos schema allows, FlowRunRequest accepts, and sends on byte for byte (what the caller
   sent, plus the two top-level fields Hilos requires), within our documented, intentional limits.
2. Whatever the Hilos schema forbids, FlowRunRequest refuses, naming the field.
3. Fields the Hilos schema does not know are refused too, naming them (Hilos would ignore them; a typo
   like ``phone_number`` would start a flow for nobody).

Intentional deviations from Hilos' schema (docs/reliability.md), each enforced and tested elsewhere:
- a request has 1 to MAX_CONTACTS_PER_RUN (1,000) contacts (Hilos: any number, even none);
- a contact needs a phone or the id of an existing contact (Hilos: neither), and a phone is a phone number: a
  country code and a possible length, sent as + and digits (hilos_runner.phones; Hilos: any text of 30);
- names, tag names and ids are one line of text (no control characters);
- whole numbers are JSON's safe integers, +-(2^53 - 1);
- a contact's meta is at most MAX_META_BYTES (16 KiB) of JSON;
- unknown fields are refused, and so is ``created_on`` (a bookkeeping field Hilos' schema leaves writable);
- a tag name is not empty; an email is a deliverable-looking address (email-validator, no display names),
  a URL one pydantic parses (Hilos' formats are looser);
- ``flow_execution_variables`` (used by Hilos' flows, absent from its published schema) is accepted.
"""

import copy
import json
import string
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from hilos_runner.models import FlowRunRequest
from local.hilos_schema import hilos_schema, run_request_problems
from tests.fuzz.budget import count, examples

FUZZ = {"deadline": None, "database": None, "suppress_health_check": list(HealthCheck)}
PHONE = "+5215512345678"


def within_our_limits(schema: dict[str, Any]) -> dict[str, Any]:
    """Hilos' request schema, narrowed by the deviations above (the fields they concern only)."""
    narrowed = copy.deepcopy(schema)
    defs = narrowed["$defs"]
    contact = defs["PatchedContactEdit"]
    contact["additionalProperties"] = False
    contact["properties"] = {
        name: spec
        for name, spec in contact["properties"].items()
        if spec.get("description") != "read-only" and name not in ("created_on",)
    }
    # Generated text stays printable ASCII here: email and URL formats are exercised by their own tests.
    contact["properties"]["email"] = {"type": ["string", "null"], "enum": ["ana@example.com", "ANA.b+1@mail.co", None]}
    contact["properties"]["external_url"] = {
        "type": ["string", "null"],
        "enum": ["https://example.com/a?b=c", "http://crm.example.org/contacts/42", None],
    }
    contact["properties"]["meta"]["maxProperties"] = 5
    # Phones as Hilos gets them (+ and digits); the formatting people type is exercised by tests/unit/test_phones.py.
    contact["properties"]["phone"] = {
        "type": "string",
        "enum": [PHONE, "+525512345678", "+14155550100", "+447700900123"],
    }
    defs["ContactTag"]["additionalProperties"] = False
    defs["ContactTag"]["properties"] = {"name": {"type": "string", "minLength": 1, "maxLength": 100}}
    narrowed["additionalProperties"] = False
    narrowed["properties"]["contact_list"].update(minItems=1, maxItems=4)
    return narrowed


# Text without control characters (our one-line rule; a line break in a name is refused by its own tests).
ONE_LINE = st.characters(exclude_categories=("Cc", "Cs"))


def from_schema(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> st.SearchStrategy[Any]:
    """Values valid for the JSON Schema subset the Hilos request uses (type, enum, string lengths, uuid,
    items, object properties / required / additionalProperties false, $ref). hypothesis-jsonschema would do
    this, but its last release does not run on the Hypothesis that schemathesis needs."""
    defs = schema.get("$defs", defs or {})
    if "$ref" in schema:
        return from_schema(defs[schema["$ref"].split("/")[-1]], defs)
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    types = schema.get("type", ["string", "integer", "boolean", "null"])
    options = []
    for kind in types if isinstance(types, list) else [types]:
        if kind == "null":
            options.append(st.none())
        elif kind == "boolean":
            options.append(st.booleans())
        elif kind == "integer":
            options.append(st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1))
        elif kind == "string" and schema.get("format") == "uuid":
            options.append(st.uuids().map(str))
        elif kind == "string" and schema.get("format") == "date-time":
            options.append(st.datetimes().map(lambda moment: moment.isoformat() + "Z"))
        elif kind == "string":
            options.append(
                st.text(ONE_LINE, min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 40), 40))
            )
        elif kind == "array":
            items = from_schema(schema.get("items", {}), defs)
            options.append(st.lists(items, min_size=schema.get("minItems", 0), max_size=schema.get("maxItems", 3)))
        elif kind == "object":
            options.append(_object(schema, defs))
    return st.one_of(options)


def _object(schema: dict[str, Any], defs: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    properties = schema.get("properties")
    if properties is None:  # free-form (meta): small JSON objects
        values = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10))
        return st.dictionaries(st.text(max_size=10), values, max_size=schema.get("maxProperties", 3))
    required = set(schema.get("required", []))
    return st.fixed_dictionaries(
        {name: from_schema(spec, defs) for name, spec in properties.items() if name in required},
        optional={name: from_schema(spec, defs) for name, spec in properties.items() if name not in required},
    )


REQUEST_SCHEMA = hilos_schema("FlowExecutionCreateRequest")
ALLOWED = from_schema(within_our_limits(REQUEST_SCHEMA))


def reachable(body: dict[str, Any]) -> dict[str, Any]:
    """Give a contact without a usable phone or id a phone (our rule); everything else as generated."""
    for contact in body["contact_list"]:
        if "id" not in contact and "phone" not in contact:
            contact["phone"] = PHONE
    return body


@settings(max_examples=examples("models_accepted"), **FUZZ)
@given(ALLOWED.map(reachable))
def test_what_the_hilos_schema_allows_is_accepted_and_sent_as_given(body: dict[str, Any]):
    assert run_request_problems(body) == []  # the generator did produce a valid Hilos request

    request = FlowRunRequest.model_validate(body)

    sent = json.loads(request.hilos_body())
    assert sent == {"execute_for": "LIST", "has_priority": False, **body}
    count("models: Hilos-valid request accepted", "accepted")


CONTACT_FIELDS = REQUEST_SCHEMA["$defs"]["PatchedContactEdit"]["properties"]
WRITABLE_FIELDS = sorted(name for name, spec in CONTACT_FIELDS.items() if spec.get("description") != "read-only")
READ_ONLY_FIELDS = sorted(name for name, spec in CONTACT_FIELDS.items() if spec.get("description") == "read-only")
WRONG_VALUES = st.one_of(
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: x != int(x)),
    st.booleans(),
    st.text(max_size=5),
    st.text(alphabet=string.ascii_letters, min_size=101, max_size=300),
    st.lists(st.integers(), max_size=2),
    st.lists(st.text(max_size=3), min_size=1, max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.just(None),
)


def refused_naming(body: dict[str, Any], path: tuple[str | int, ...]) -> list[tuple[Any, ...]]:
    try:
        FlowRunRequest.model_validate(body)
    except ValidationError as error:
        locations = [tuple(e["loc"]) for e in error.errors()]
    else:
        raise AssertionError(f"accepted what Hilos forbids at {path}: {body}")
    assert any(location[: len(path)] == path for location in locations), (path, locations)
    return locations


@settings(max_examples=examples("models_refused", 2), **FUZZ)
@given(ALLOWED.map(reachable), st.data())
def test_what_the_hilos_schema_forbids_in_a_contact_is_refused_naming_the_field(body: dict[str, Any], data: Any):
    index = data.draw(st.integers(0, len(body["contact_list"]) - 1), label="contact")
    field = data.draw(st.sampled_from(WRITABLE_FIELDS + READ_ONLY_FIELDS), label="field")
    value = data.draw(WRONG_VALUES, label="value")
    body["contact_list"][index][field] = value
    problems = run_request_problems(body)
    assume(any(path[:3] == ("contact_list", index, field) for path, _ in problems))

    refused_naming(body, ("contact_list", index, field))
    count("models: Hilos-invalid contact field refused", "refused naming the field")


TOP_LEVEL_WRONG = {
    "execute_for": st.one_of(st.text(max_size=8).filter(lambda s: s != "LIST"), st.integers(), st.just(None)),
    "has_priority": st.one_of(st.integers(), st.text(max_size=5), st.just(None), st.lists(st.booleans(), max_size=1)),
    "contact_list": st.one_of(st.integers(), st.text(max_size=5), st.just(None), st.dictionaries(st.text(), st.text())),
}


@settings(max_examples=examples("models_refused", 2), **FUZZ)
@given(ALLOWED.map(reachable), st.data())
def test_what_the_hilos_schema_forbids_at_the_top_is_refused_naming_the_field(body: dict[str, Any], data: Any):
    field = data.draw(st.sampled_from(sorted(TOP_LEVEL_WRONG)), label="field")
    body[field] = data.draw(TOP_LEVEL_WRONG[field], label="value")
    assume(any(path[:1] == (field,) for path, _ in run_request_problems(body)))

    refused_naming(body, (field,))
    count("models: Hilos-invalid top-level field refused", "refused naming the field")


KNOWN = set(CONTACT_FIELDS) | set(REQUEST_SCHEMA["properties"]) | {"flow_execution_variables"}
UNKNOWN_NAMES = st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=20).filter(
    lambda name: name not in KNOWN
)


@settings(max_examples=examples("models_unknown_fields"), **FUZZ)
@given(ALLOWED.map(reachable), UNKNOWN_NAMES, st.booleans(), st.data())
def test_unknown_fields_are_refused_naming_them(body: dict[str, Any], name: str, in_contact: bool, data: Any):
    if in_contact:
        index = data.draw(st.integers(0, len(body["contact_list"]) - 1), label="contact")
        body["contact_list"][index][name] = "x"
        path: tuple[str | int, ...] = ("contact_list", index, name)
    else:
        body[name] = "x"
        path = (name,)

    locations = refused_naming(body, path)
    assert path in locations
    count("models: unknown field refused", "refused naming the field")
