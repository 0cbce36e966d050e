"""The run request model against Hilos' own schema (PatchedContactEdit, FlowExecutionCreateRequest).

Every accepted body must be one Hilos documents as valid (checked with tests/hilos_schema.py), and
every refusal must name the field, so that a caller's typo never reaches Hilos as a silent no-op.
"""

import json
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from hilos_runner.models import MAX_CONTACTS_PER_RUN, MAX_META_BYTES, Contact, FlowExecution, FlowRunRequest
from local.hilos_schema import HILOS_OPENAPI
from tests.helpers import hilos_execution
from tests.hilos_schema import assert_matches_hilos_run_request

PHONE = "+5215512345678"
CONTACT_ID = "3f1d2c4b-5a69-4e7d-8c2b-1a0f9e8d7c6b"
IMPORT_ID = "9c8b7a65-4321-4fed-bcba-0123456789ab"
EMAIL_OF_254 = "a" * 64 + "@" + ("b" * 62 + ".") * 2 + "c" * 63  # local part and labels at their own limits


def one_contact(**fields: Any) -> dict[str, Any]:
    return {"contact_list": [{"phone": PHONE, **fields}]}


def refusals(body: Any) -> dict[str, str]:
    """Field path -> pydantic error type of every problem in ``body``."""
    with pytest.raises(ValidationError) as info:
        FlowRunRequest.model_validate(body)
    return {".".join(map(str, error["loc"])): error["type"] for error in info.value.errors()}


def sent_body(body: dict[str, Any]) -> dict[str, Any]:
    return json.loads(FlowRunRequest.model_validate(body).hilos_body())


def meta_of_bytes(size: int) -> dict[str, str]:
    """A meta object whose compact JSON is exactly ``size`` bytes."""
    return {"k": "x" * (size - len('{"k":""}'))}


# --- what is accepted, and sent exactly as given -------------------------------------------------

VALID_CONTACTS = {
    "phone only": {"phone": PHONE},
    "id of an existing contact, no phone": {"id": CONTACT_ID},
    "phone of 15 digits (E.164's most)": {"phone": "+491234567890123"},
    "names of 100 characters": {"phone": PHONE, "first_name": "A" * 100, "last_name": "B" * 100},
    "null names clear them": {"phone": PHONE, "first_name": None, "last_name": None},
    "email spelled as the caller did": {"phone": PHONE, "email": "Ana.Perez@Example.COM"},
    "email of 254 characters": {"phone": PHONE, "email": EMAIL_OF_254},
    "null email": {"phone": PHONE, "email": None},
    "external_url of 200 characters": {"phone": PHONE, "external_url": "https://crm.example.com/" + "p" * 176},
    "null external_url": {"phone": PHONE, "external_url": None},
    "nested meta": {"phone": PHONE, "meta": {"plan": "gold", "visits": [1, 2.5, None, {"deep": True}]}},
    "meta of exactly MAX_META_BYTES": {"phone": PHONE, "meta": meta_of_bytes(MAX_META_BYTES)},
    "tags by name": {"phone": PHONE, "tags": [{"name": "vip"}, {"name": "T" * 100}]},
    "default_assignees": {"phone": PHONE, "default_assignees": [1, 42]},
    "overwrite flags": {
        "phone": PHONE,
        "overwrite_tags": True,
        "overwrite_default_assignees": True,
        "overwrite_meta": False,
    },
    "source": {"phone": PHONE, "source": "crm"},
    "contact_import and default_channel": {"phone": PHONE, "contact_import": IMPORT_ID, "default_channel": 7},
    "nullable ids cleared": {
        "phone": PHONE,
        "contact_import": None,
        "default_channel": None,
        "external_id": None,
        "native_id": None,
        "wa_id": None,
    },
    "external ids": {"phone": PHONE, "external_id": "crm-1", "native_id": "n-1", "wa_id": "5215512345678"},
    "is_deleted": {"phone": PHONE, "is_deleted": False},
    "unicode names": {"phone": PHONE, "first_name": "Zoë 👋", "last_name": "Ñúñez"},
}


@pytest.mark.parametrize("contact", VALID_CONTACTS.values(), ids=VALID_CONTACTS.keys())
def test_valid_contact_is_sent_exactly_as_given_and_matches_the_hilos_schema(contact: dict[str, Any]):
    body = sent_body({"contact_list": [contact]})

    assert body["contact_list"] == [contact]  # nothing added, nothing dropped, spelling kept
    assert_matches_hilos_run_request(body)


VALID_REQUESTS = {
    "defaults": {"contact_list": [{"phone": PHONE}]},
    "priority": {"has_priority": True, "execute_for": "LIST", "contact_list": [{"phone": PHONE}]},
    "flow variables": {"contact_list": [{"phone": PHONE}], "flow_execution_variables": {"campaign": "spring", "n": 3}},
    "null flow variables": {"contact_list": [{"phone": PHONE}], "flow_execution_variables": None},
    "the maximum number of contacts": {
        "contact_list": [{"phone": f"+52155{i:08d}"} for i in range(MAX_CONTACTS_PER_RUN)]
    },
}


@pytest.mark.parametrize("request_body", VALID_REQUESTS.values(), ids=VALID_REQUESTS.keys())
def test_valid_request_is_sent_with_execute_for_and_has_priority_and_matches_the_hilos_schema(
    request_body: dict[str, Any],
):
    body = sent_body(request_body)

    assert body == {"execute_for": "LIST", "has_priority": False, **request_body}
    assert_matches_hilos_run_request(body)


def test_defaults():
    request = FlowRunRequest.model_validate({"contact_list": [{"phone": PHONE}]})
    contact = request.contact_list[0]

    assert request.execute_for == "LIST"
    assert request.has_priority is False
    assert request.flow_execution_variables is None
    assert contact.source == "website"
    assert (contact.overwrite_tags, contact.overwrite_default_assignees, contact.overwrite_meta) == (False,) * 3


def test_hilos_body_exact_bytes_keep_explicit_null_and_leave_out_what_was_not_sent():
    request = FlowRunRequest.model_validate(
        {
            "flow_execution_variables": {"campaign": "spring"},
            "contact_list": [
                {"last_name": None, "phone": PHONE, "tags": [{"name": "vip"}]},
                {"id": CONTACT_ID, "overwrite_meta": True, "meta": {"a": 1}},
            ],
            "has_priority": True,
        }
    )

    assert request.hilos_body() == (
        b'{"execute_for":"LIST","has_priority":true,"contact_list":['
        b'{"phone":"+5215512345678","last_name":null,"tags":[{"name":"vip"}]},'
        b'{"meta":{"a":1},"id":"3f1d2c4b-5a69-4e7d-8c2b-1a0f9e8d7c6b","overwrite_meta":true}],'
        b'"flow_execution_variables":{"campaign":"spring"}}'
    )


def test_hilos_body_of_a_minimal_request_carries_the_required_execute_for():
    assert FlowRunRequest.model_validate({"contact_list": [{"phone": PHONE}]}).hilos_body() == (
        b'{"execute_for":"LIST","has_priority":false,"contact_list":[{"phone":"+5215512345678"}]}'
    )


def test_non_ascii_is_sent_as_utf8():
    body = FlowRunRequest.model_validate(one_contact(first_name="Zoë")).hilos_body()
    assert "Zoë".encode() in body


# --- what is refused, naming the field -----------------------------------------------------------

INVALID_CONTACT_FIELDS = [
    ({"phone": "+" + "1" * 30}, "phone", "string_too_long"),
    ({"phone": None}, "phone", "value_error"),
    ({"phone": 5215512345678}, "phone", "string_type"),
    ({"first_name": "A" * 101}, "first_name", "string_too_long"),
    ({"last_name": "B" * 101}, "last_name", "string_too_long"),
    ({"first_name": 7}, "first_name", "string_type"),
    ({"email": "not-an-email"}, "email", "value_error"),
    ({"email": "ana@"}, "email", "value_error"),
    ({"email": EMAIL_OF_254 + "c"}, "email", "string_too_long"),
    ({"external_url": "not a url"}, "external_url", "url_parsing"),
    ({"external_url": "/relative/path"}, "external_url", "url_parsing"),
    ({"external_url": "https://crm.example.com/" + "p" * 177}, "external_url", "string_too_long"),
    ({"id": "not-a-uuid"}, "id", "uuid_parsing"),
    ({"id": None}, "id", "value_error"),
    ({"contact_import": "not-a-uuid"}, "contact_import", "uuid_parsing"),
    ({"meta": ["a", "list"]}, "meta", "dict_type"),
    ({"meta": "text"}, "meta", "dict_type"),
    ({"meta": None}, "meta", "value_error"),
    ({"meta": meta_of_bytes(MAX_META_BYTES + 1)}, "meta", "value_error"),
    ({"tags": [{"id": 3, "name": "vip"}]}, "tags.0.id", "extra_forbidden"),
    ({"tags": [{"name": "T" * 101}]}, "tags.0.name", "string_too_long"),
    ({"tags": [{"name": ""}]}, "tags.0.name", "string_too_short"),
    ({"tags": ["vip"]}, "tags.0", "model_type"),
    ({"tags": None}, "tags", "value_error"),
    ({"default_assignees": ["1"]}, "default_assignees.0", "int_type"),
    ({"default_assignees": [True]}, "default_assignees.0", "int_type"),
    ({"default_assignees": [1.0]}, "default_assignees.0", "int_type"),
    ({"default_assignees": None}, "default_assignees", "value_error"),
    ({"default_channel": "3"}, "default_channel", "int_type"),
    ({"overwrite_tags": "true"}, "overwrite_tags", "bool_type"),
    ({"overwrite_default_assignees": 1}, "overwrite_default_assignees", "bool_type"),
    ({"overwrite_meta": None}, "overwrite_meta", "value_error"),
    ({"is_deleted": "false"}, "is_deleted", "bool_type"),
    ({"is_deleted": None}, "is_deleted", "value_error"),
    ({"source": None}, "source", "value_error"),
    ({"notes": [{"notes": "called"}]}, "notes", "extra_forbidden"),
    ({"created_on": "2024-01-01T00:00:00Z"}, "created_on", "extra_forbidden"),
    ({"phone_number": "+521"}, "phone_number", "extra_forbidden"),
]


@pytest.mark.parametrize(
    ("fields", "field", "error_type"), INVALID_CONTACT_FIELDS, ids=[f"{f}-{t}" for _, f, t in INVALID_CONTACT_FIELDS]
)
def test_invalid_contact_field_is_refused_naming_it(fields: dict[str, Any], field: str, error_type: str):
    assert refusals(one_contact(**fields)) == {f"contact_list.0.{field}": error_type}


@pytest.mark.parametrize(
    "contact",
    [{"first_name": "Ana"}, {}],
    ids=["no phone nor id", "empty"],
)
def test_a_contact_needs_a_phone_or_an_id(contact: dict[str, Any]):
    with pytest.raises(ValidationError) as info:
        FlowRunRequest.model_validate({"contact_list": [{"phone": PHONE}, contact]})
    (error,) = info.value.errors()
    assert error["loc"] == ("contact_list", 1)
    assert "phone" in error["msg"]


INVALID_REQUESTS = [
    ({"execute_for": "ALL", "contact_list": [{"phone": PHONE}]}, "execute_for", "literal_error"),
    ({"execute_for": None, "contact_list": [{"phone": PHONE}]}, "execute_for", "literal_error"),
    ({"has_priority": "true", "contact_list": [{"phone": PHONE}]}, "has_priority", "bool_type"),
    ({"has_priority": 1, "contact_list": [{"phone": PHONE}]}, "has_priority", "bool_type"),
    ({"has_priority": None, "contact_list": [{"phone": PHONE}]}, "has_priority", "bool_type"),
    ({}, "contact_list", "missing"),
    ({"contact_list": []}, "contact_list", "too_short"),
    ({"contact_list": None}, "contact_list", "list_type"),
    ({"contact_list": [{"phone": PHONE}] * (MAX_CONTACTS_PER_RUN + 1)}, "contact_list", "too_long"),
    ({"contact_list": [{"phone": PHONE}], "flow_execution_variables": [1]}, "flow_execution_variables", "dict_type"),
    ({"contact_list": [{"phone": PHONE}], "flow_id": "x"}, "flow_id", "extra_forbidden"),
]


@pytest.mark.parametrize(
    ("body", "field", "error_type"), INVALID_REQUESTS, ids=[f"{f}-{t}" for _, f, t in INVALID_REQUESTS]
)
def test_invalid_request_is_refused_naming_the_field(body: dict[str, Any], field: str, error_type: str):
    assert refusals(body) == {field: error_type}


def test_every_problem_of_a_body_is_reported_at_once():
    body = {
        "execute_for": "ALL",
        "contact_list": [
            {"phone": "+" + "1" * 40, "email": "nope", "tags": [{"id": 1, "name": "x"}]},
            {"first_name": "x"},
        ],
    }
    assert set(refusals(body)) == {
        "execute_for",
        "contact_list.0.phone",
        "contact_list.0.email",
        "contact_list.0.tags.0.id",
        "contact_list.1",
    }


# --- the model follows the Hilos document, field for field ----------------------------------------


def test_contact_fields_are_exactly_the_writable_fields_of_patched_contact_edit():
    properties = yaml.safe_load(HILOS_OPENAPI.read_text())["components"]["schemas"]["PatchedContactEdit"]["properties"]
    read_only = {name for name, spec in properties.items() if spec.get("readOnly")}

    # created_on is a server timestamp: Hilos sets it; the caller never does.
    assert set(Contact.model_fields) == set(properties) - read_only - {"created_on"}
    assert read_only == {"notes"}


def test_not_nullable_fields_of_the_hilos_document_refuse_null():
    properties = yaml.safe_load(HILOS_OPENAPI.read_text())["components"]["schemas"]["PatchedContactEdit"]["properties"]
    for name in sorted(set(Contact.model_fields) & set(properties)):
        contact = {"id": CONTACT_ID, name: None} if name == "phone" else {"phone": PHONE, name: None}
        body = {"contact_list": [contact]}
        if properties[name].get("nullable"):
            assert_matches_hilos_run_request(sent_body(body))
        else:
            assert f"contact_list.0.{name}" in refusals(body), name


# --- Hilos' answer is read leniently --------------------------------------------------------------


def test_flow_execution_keeps_fields_it_does_not_know():
    execution = FlowExecution.model_validate(hilos_execution(brand_new_field={"x": 1}, num_contacts=3))

    assert str(execution.id) == hilos_execution()["id"]
    assert execution.num_contacts == 3
    assert json.loads(execution.model_dump_json())["brand_new_field"] == {"x": 1}


def test_flow_execution_accepts_an_answer_with_none_of_its_fields():
    assert FlowExecution.model_validate({}).id is None


@pytest.mark.parametrize("email", ["Ana <ana@example.com>", '"Ana" <ana@example.com>'])
def test_a_display_name_email_that_hilos_would_refuse_is_refused(email: str):
    assert refusals(one_contact(email=email)) == {"contact_list.0.email": "value_error"}
