"""The corpus of bad input (issue 12's table, and what we found besides): each case is what a careless or hostile
caller sends, and the clear 4xx it must get, naming the field. Driven through the API and the queue in-process by
tests/integration/test_bad_input.py, and through the local stack (HTTP front, real SQS) by tests/fuzz.

A case's ``body`` is a run body (``POST /flows/{id}/runs``); ``route`` says where else it goes: ``bulk`` (the same
text to ``POST /flows/{id}/bulk-runs``), ``queue`` (as a message: ``flow_id`` added in front). ``field`` is the
start of the field the answer must name (the queue's record names it without ``body.``).
"""

import json
from dataclasses import dataclass, field
from typing import Any

from tests.helpers import FLOW_ID

PHONE = "+5215512345678"
DEEP = '{"a":' * 10_000 + "1" + "}" * 10_000


def contacts_text(contact: str) -> str:
    """A run body with one contact given as JSON text (so it can hold what json.dumps would never write)."""
    return '{"contact_list": [' + contact + "]}"


@dataclass(frozen=True)
class BadInput:
    name: str
    body: str | bytes
    status: int
    code: str
    field: str
    content_type: str | None = "application/json"
    routes: tuple[str, ...] = ("runs", "bulk", "queue")
    query: dict[str, str] = field(default_factory=dict)
    base64: bool = False  # API Gateway base64-encodes the body

    def message(self) -> str:
        """The same content as a queued message: ``flow_id`` put in front of the run body's fields."""
        text = self.body if isinstance(self.body, str) else self.body.decode()
        return '{"flow_id": "' + FLOW_ID + '", ' + text.lstrip()[1:]

    def headers(self) -> dict[str, str]:
        return {"content-type": self.content_type} if self.content_type is not None else {}


def _invalid(name: str, body: str, field: str, **options: Any) -> BadInput:
    return BadInput(name, body, 422, "validation_error", field, **options)


def _in_contact(name: str, members: str, field: str) -> BadInput:
    """A run body whose one contact has PHONE and ``members`` (JSON text, possibly what json.dumps would never
    write); the answer must name ``field`` of that contact."""
    return _invalid(name, contacts_text('{"phone": "' + PHONE + '", ' + members + "}"), f"body.contact_list.0.{field}")


def _phone(name: str, phone: str) -> BadInput:
    return _invalid(f"phone {name}", contacts_text(json.dumps({"phone": phone})), "body.contact_list.0.phone")


RUN_BODY = json.dumps({"contact_list": [{"phone": PHONE}]})

CASES: list[BadInput] = [
    # -- the table ----------------------------------------------------------------------------------
    _invalid(
        "meta nested 10,000 deep",
        contacts_text('{"phone": "' + PHONE + '", "meta": ' + DEEP + "}"),
        "body.contact_list.0.meta.a",
    ),
    _invalid(
        "meta nested 10,000 deep in a CSV cell",
        "phone,meta\n" + PHONE + ',"' + DEEP.replace('"', '""') + '"\n',
        "body.row.2.meta",
        content_type="text/csv",
        routes=("bulk",),
    ),
    BadInput(
        "text/plain run",
        RUN_BODY,
        415,
        "unsupported_media_type",
        "header.content-type",
        content_type="text/plain",
        routes=("runs",),
    ),
    BadInput(
        "application/xml run",
        "<run/>",
        415,
        "unsupported_media_type",
        "header.content-type",
        content_type="application/xml",
        routes=("runs",),
    ),
    BadInput(
        "text/csv run",
        "phone\n" + PHONE + "\n",
        415,
        "unsupported_media_type",
        "header.content-type",
        content_type="text/csv",
        routes=("runs",),
    ),
    BadInput(
        "form-encoded run (curl -d)",
        RUN_BODY,
        415,
        "unsupported_media_type",
        "header.content-type",
        content_type="application/x-www-form-urlencoded",
        routes=("runs", "bulk"),
    ),
    _invalid(
        "integer of 5,000 digits in default_assignees",
        contacts_text('{"phone": "' + PHONE + '", "default_assignees": [' + "9" * 5000 + "]}"),
        "body.contact_list.0.default_assignees.0",
    ),
    _in_contact("NaN in meta", '"meta": {"score": NaN}', "meta.score"),
    _invalid(
        "Infinity in flow_execution_variables",
        '{"contact_list": [{"phone": "' + PHONE + '"}], "flow_execution_variables": {"limit": Infinity}}',
        "body.flow_execution_variables.limit",
    ),
    _in_contact("-Infinity in meta", '"meta": {"x": [-Infinity]}', "meta.x.0"),
    _in_contact("duplicate keys", '"phone": "+5215512345679"', "phone"),
    _phone('"abc"', "abc"),
    _phone('"call me maybe"', "call me maybe"),
    _phone("with a NUL", "+52155\x0012345678"),
    _phone('"(55) 1234 5678" (no country code)', "(55) 1234 5678"),
    _invalid(
        "a name containing NUL",
        contacts_text(json.dumps({"phone": PHONE, "first_name": "An\x00a"})),
        "body.contact_list.0.first_name",
    ),
    _invalid(
        "CSV with ; separators",
        "Phone;First Name;Email\n" + PHONE + ";Ana;ana@example.com\n",
        "body.row.1.column.1",
        content_type="text/csv",
        routes=("bulk",),
    ),
    _invalid(
        "CSV column Email",
        "phone,Email\n" + PHONE + ",ana@example.com\n",
        "body.row.1.column.2",
        content_type="text/csv",
        routes=("bulk",),
    ),
    _invalid(
        "CSV column company",
        "phone,company\n" + PHONE + ",ACME\n",
        "body.row.1.column.2",
        content_type="text/csv",
        routes=("bulk",),
    ),
    # -- found besides ------------------------------------------------------------------------------------------
    _in_contact("1e999 in meta (a float overflow)", '"meta": {"x": 1e999}', "meta.x"),
    _in_contact("a whole number one past JSON's safe integers (2^53)", '"meta": {"n": 9007199254740992}', "meta.n"),
    _in_contact("a lone surrogate in a name", '"first_name": "\\ud800"', "first_name"),
    _in_contact("NUL escaped in meta", '"meta": {"note": "a\\u0000b"}', "meta.note"),
    _invalid(
        "a line break in a tag name",
        contacts_text(json.dumps({"phone": PHONE, "tags": [{"name": "a\nb"}]})),
        "body.contact_list.0.tags.0.name",
    ),
    _invalid(
        "invalid UTF-8 (base64 body)",
        b'{"contact_list": [{"phone": "\xff"}]}',
        "body",
        base64=True,
        routes=("runs", "bulk"),
    ),
    _invalid("contact_list nested 100 deep", '{"contact_list": ' + "[" * 100 + "]" * 100 + "}", "body.contact_list.0"),
    _invalid(
        "a phone of 40 digits", contacts_text(json.dumps({"phone": "+52" + "1" * 38})), "body.contact_list.0.phone"
    ),
    _phone("with the 00 international prefix", "0052 55 1234 5678"),
    _phone("with a country code that does not exist", "+999 1234 5678"),
    _phone("of a country, with too few digits", "+52 55 1234"),
    _phone("with an extension", "+52 55 1234 5678 ext. 12"),
    _invalid("a blank phone", contacts_text('{"phone": "   "}'), "body.contact_list.0.phone"),
    _invalid(
        "a string of 1 MB as a first name",
        contacts_text(json.dumps({"phone": PHONE, "first_name": "x" * 900_000})),
        "body.contact_list.0.first_name",
        routes=("runs", "bulk"),
    ),
    _invalid(
        "1,001 contacts in one run",
        json.dumps({"contact_list": [{"phone": f"+52155{i:08d}"} for i in range(1001)]}),
        "body.contact_list",
        routes=("runs",),
    ),
    _invalid("contact_list is a string", '{"contact_list": "' + PHONE + '"}', "body.contact_list"),
    _invalid("a contact is a number", '{"contact_list": [5]}', "body.contact_list.0"),
    _invalid("meta is a list", contacts_text('{"phone": "' + PHONE + '", "meta": [1]}'), "body.contact_list.0.meta"),
    _invalid(
        "tags is a string", contacts_text('{"phone": "' + PHONE + '", "tags": "vip"}'), "body.contact_list.0.tags"
    ),
    _invalid(
        "has_priority is a string",
        '{"contact_list": [{"phone": "' + PHONE + '"}], "has_priority": "yes"}',
        "body.has_priority",
    ),
    _invalid(
        "on_duplicate=reject with a phone twice",
        json.dumps({"contact_list": [{"phone": PHONE}, {"phone": "+52 1 55 1234 5678"}]}),
        "body.contact_list.1",
        query={"on_duplicate": "reject"},
        routes=("runs", "bulk"),
    ),
    _invalid(
        "on_duplicate=reject with a phone twice, queued",
        json.dumps({"contact_list": [{"phone": PHONE}, {"phone": "+52 1 55 1234 5678"}], "on_duplicate": "reject"}),
        "body.contact_list.1",
        routes=("queue",),
    ),
    _invalid("the body is a JSON string", '"' + PHONE + '"', "body", routes=("runs", "bulk")),
]

# Only as a queued message: the queue has no size or media type checks of its own in front of the worker.
QUEUE_ONLY: dict[str, tuple[str, str]] = {
    "a message nested 3,000 deep": (
        '{"flow_id": "' + FLOW_ID + '", "contact_list": ' + "[" * 3000 + "]" * 3000 + "}",
        "contact_list.0",
    ),
    "a message that is not JSON": ("flow_id=" + FLOW_ID, ""),
    "a message that is a JSON list": ("[" + json.dumps({"flow_id": FLOW_ID}) + "]", ""),
    "a message with a flow_id of 100,000 characters": (
        '{"flow_id": "' + "f" * 100_000 + '", "contact_list": []}',
        "flow_id",
    ),
}
