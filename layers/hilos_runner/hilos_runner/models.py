"""Pydantic models for the Hilos run request and response.

``Contact`` and ``FlowRunRequest`` mirror Hilos' ``PatchedContactEdit`` and
``FlowExecutionCreateRequest`` constraint by constraint (the Hilos OpenAPI the project carries is in
schemas/hilos/; tests check our bodies against it). Input is strict: unknown fields and read-only fields are
an error naming the field, never silently dropped, because a typo like ``phone_number`` would
otherwise start a flow for nobody.

Fields Hilos marks optional but not nullable may be omitted, not sent as null. What the caller sent
is what Hilos gets: the body is dumped with ``exclude_unset`` so an explicit ``null`` (clear this
field) and an absent field (leave it) stay different, as Hilos' PATCH-style contact semantics need.
"""

import re
from typing import Annotated, Any, Generic, Literal, TypeVar
from uuid import UUID

from pydantic import (
    AfterValidator,
    AnyUrl,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PrivateAttr,
    StrictBool,
    StrictInt,
    TypeAdapter,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonDict
from pydantic_core import PydanticCustomError

from hilos_runner import phones
from hilos_runner.json_input import MAX_INTEGER

# One synchronous Hilos call carries at most this many contacts; larger lists go through bulk runs.
MAX_CONTACTS_PER_RUN = 1000
# Whole numbers within JSON's safe integers, as json_input reads them.
WholeNumber = Annotated[StrictInt, Field(ge=-MAX_INTEGER, le=MAX_INTEGER)]
# A contact's `meta` beyond this many bytes of JSON is refused: it is stored by Hilos per contact.
MAX_META_BYTES = 16_384
# The run options of every way to start a flow (run API, queued message, bulk run), described once.
HasPriority = Annotated[
    StrictBool, Field(description="True closes any other running flows or conversations of the contacts.")
]
FlowVariables = Annotated[
    dict[str, JsonValue] | None, Field(description="Variables available to the flow in this execution.")
]
# An Idempotency-Key as callers send it (API header, queued message field).
IDEMPOTENCY_KEY_PATTERN = r"^[A-Za-z0-9._:\-]{1,128}$"


_any_url: TypeAdapter[AnyUrl] = TypeAdapter(AnyUrl)


# Plain ASCII addresses (nearly all of them) are checked with one regex; anything else goes through
# email-validator, which costs ~0.2 ms an address (IDNA tables) — 200 ms on a 1,000-contact run. The
# regex is stricter than email-validator (dot-atom local part, LDH labels without "--", alphabetic
# TLD), so it only ever accepts what email-validator accepts; tests hold the two side by side.
_PLAIN_EMAIL = re.compile(
    r"(?=[^@]{1,64}@)[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*\.)+[A-Za-z]{2,63}"
)
# email_validator.SPECIAL_USE_DOMAIN_NAMES, copied (a unit test holds the two equal): importing
# email-validator costs ~60 ms of every cold start (it compiles its RFC regexes), and plain addresses
# never need it.
SPECIAL_USE_DOMAINS = frozenset({"arpa", "invalid", "local", "localhost", "onion", "test"})


def is_plain_email(value: str) -> bool:
    """True for an address email-validator surely accepts as it is, told without importing it (the cold-start fast
    path); False leaves the address to email-validator."""
    if len(value) > 254 or not _PLAIN_EMAIL.fullmatch(value):
        return False
    labels = value.rsplit("@", 1)[1].lower().split(".")
    if any(len(label) > 63 for label in labels):
        return False
    # Special-use names (RFC 6761: "test", "localhost", ...) are refused by email-validator: leave
    # any address whose domain ends in one to it.
    return not any(".".join(labels[i:]) in SPECIAL_USE_DOMAINS for i in range(len(labels)))


def _checked_email(value: str) -> str:
    if not is_plain_email(value):
        from email_validator import EmailNotValidError, validate_email

        # email-validator itself, not pydantic's wrapper, which also takes "Ana <ana@x.com>" (Hilos
        # refuses that form). Syntax only, no DNS.
        try:
            validate_email(value, check_deliverability=False)
        except EmailNotValidError as error:
            raise ValueError(f"value is not a valid email address: {error}") from None
    return value  # keep the caller's spelling: Hilos gets exactly what was sent


def _checked_uri(value: str) -> str:
    _any_url.validate_python(value)
    return value


_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def _printable(value: str | None) -> str | None:
    """Names and identifiers are one line of text, as Hilos shows them."""
    if value is not None and _CONTROL_CHARACTERS.search(value):
        raise PydanticCustomError("control_character", "contains a control character (NUL, a line break, ...)")
    return value


_ONE_LINE: JsonDict = {"pattern": "^[^\\u0000-\\u001f\\u007f]*$"}
_ONE_LINE_FIELDS = ("first_name", "last_name", "source", "external_id", "native_id", "wa_id")
Email = Annotated[str, Field(max_length=254), AfterValidator(_checked_email)]
Uri = Annotated[str, Field(max_length=200), AfterValidator(_checked_uri)]

_strict_input = ConfigDict(extra="forbid", str_strip_whitespace=False)


class ContactTag(BaseModel):
    """A tag given by name; Hilos assigns the id (read-only there)."""

    model_config = _strict_input

    name: str = Field(max_length=100, min_length=1, json_schema_extra=_ONE_LINE)

    _one_line = field_validator("name")(_printable)


# Fields Hilos documents as optional but not nullable: they may be left out, not sent as null.
_NOT_NULLABLE = (
    "phone",
    "meta",
    "is_deleted",
    "id",
    "source",
    "tags",
    "default_assignees",
    "overwrite_tags",
    "overwrite_default_assignees",
    "overwrite_meta",
)


def _contact_schema(schema: JsonDict) -> None:
    """What the validators below enforce, stated for generated clients and testers: a contact needs a phone or
    an id (_reachable), and the fields Hilos does not take as null are not nullable (_not_null)."""
    schema["anyOf"] = [{"required": ["phone"]}, {"required": ["id"]}]
    properties = schema["properties"]
    assert isinstance(properties, dict)
    for name in _NOT_NULLABLE:
        field = properties[name]
        assert isinstance(field, dict)
        branches = field.pop("anyOf", [])
        assert isinstance(branches, list)
        (kept,) = [branch for branch in branches if isinstance(branch, dict) and branch.get("type") != "null"]
        assert isinstance(kept, dict)
        field.update(kept)


class Contact(BaseModel):
    """A contact to run the flow for (Hilos ``PatchedContactEdit`` minus read-only fields)."""

    model_config = ConfigDict(**_strict_input, json_schema_extra=_contact_schema)

    phone: str | None = Field(
        default=None,
        max_length=30,
        json_schema_extra={"pattern": phones.schema_pattern()},  # checked, with a reason, by _phone_number
        examples=["+5215512345678", "+52 1 55 1234 5678"],
        description="With its country code (+52 ...), or national if DEFAULT_PHONE_COUNTRY is set; spaces, dashes, "
        "dots and parentheses are dropped and Hilos gets + and the digits as typed. Contacts with the same phone "
        "are sent once (on_duplicate).",
    )
    first_name: str | None = Field(default=None, max_length=100, json_schema_extra=_ONE_LINE)
    last_name: str | None = Field(default=None, max_length=100, json_schema_extra=_ONE_LINE)
    email: Email | None = Field(default=None, json_schema_extra={"format": "email"})
    meta: dict[str, JsonValue] | None = Field(
        default=None,
        description=f"At most {MAX_META_BYTES} bytes of JSON, nested at most 32 levels (the whole body included); "
        "no NaN/Infinity, whole numbers within +-(2^53 - 1), no NUL in strings.",
    )
    external_url: Uri | None = Field(default=None, json_schema_extra={"format": "uri"})
    is_deleted: StrictBool | None = None
    id: UUID | None = Field(default=None, description="The id of an existing Hilos contact.")
    source: str | None = Field(default="website", json_schema_extra=_ONE_LINE)
    tags: list[ContactTag] | None = None
    external_id: str | None = Field(default=None, json_schema_extra=_ONE_LINE)
    native_id: str | None = Field(default=None, json_schema_extra=_ONE_LINE)
    default_assignees: list[WholeNumber] | None = None
    contact_import: UUID | None = None
    default_channel: WholeNumber | None = None
    wa_id: str | None = Field(default=None, json_schema_extra=_ONE_LINE)
    overwrite_tags: StrictBool | None = False
    overwrite_default_assignees: StrictBool | None = False
    overwrite_meta: StrictBool | None = False

    @field_validator(*_NOT_NULLABLE, mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Runs only for values the caller sent; defaults are not validated.
        if value is None:
            raise ValueError("may be omitted but must not be null")
        return value

    _one_line = field_validator(*_ONE_LINE_FIELDS)(_printable)

    @field_validator("phone")
    @classmethod
    def _phone_number(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from hilos_runner.settings import get_settings  # settings import this module

        try:
            return phones.normalise(value, get_settings().default_phone_country)
        except phones.PhoneError as error:
            raise PydanticCustomError("phone", str(error)) from None

    @field_validator("meta")
    @classmethod
    def _meta_size(cls, value: dict[str, JsonValue] | None) -> dict[str, JsonValue] | None:
        if value is not None and len(_json_of(value)) > MAX_META_BYTES:
            raise ValueError(f"must be at most {MAX_META_BYTES} bytes of JSON")
        return value

    @model_validator(mode="after")
    def _reachable(self) -> "Contact":
        if self.phone is None and self.id is None:
            raise ValueError("a contact needs a phone (or the id of an existing Hilos contact)")
        return self


_json_value_adapter: TypeAdapter[Any] = TypeAdapter(Any)


def _json_of(value: Any) -> bytes:
    return _json_value_adapter.dump_json(value)


class FlowRunRequest(BaseModel):
    """Body of ``POST /flows/{flow_id}/runs``, forwarded to Hilos' "Create a Flow Execution"."""

    model_config = _strict_input

    execute_for: Literal["LIST"] = "LIST"
    has_priority: HasPriority = False
    contact_list: list[Contact] = Field(min_length=1, max_length=MAX_CONTACTS_PER_RUN)
    flow_execution_variables: FlowVariables = None
    _body: bytes | None = PrivateAttr(default=None)

    def model_post_init(self, context: Any, /) -> None:
        # Hilos requires execute_for; count both top-level defaults as "sent" so that the
        # exclude_unset dump below always carries them, while contacts keep exact unset-ness.
        self.__pydantic_fields_set__.update(("execute_for", "has_priority"))

    def __repr__(self) -> str:
        # Counts, not contacts: a repr ends up in debug logs (Powertools logs route arguments), and
        # phone numbers do not belong there; building the full repr of 1,000 contacts also costs ~40 ms.
        return f"FlowRunRequest(contacts={len(self.contact_list)}, has_priority={self.has_priority})"

    def with_contacts(self, contacts: list[Contact]) -> "FlowRunRequest":
        """This request for ``contacts`` instead (duplicates dropped); the other fields stay as the caller sent them."""
        fewer = self.model_copy(update={"contact_list": contacts})
        fewer._body = None  # built from these contacts when first asked for
        return fewer

    def hilos_body(self) -> bytes:
        """The JSON body Hilos receives: what the caller sent, nothing added, nothing dropped. Built once: the
        idempotency fingerprint, the copy kept for reconciliation and the Hilos call share it (~1.4 ms for
        1,000 contacts), and a validated request is never changed afterwards."""
        if self._body is None:
            self._body = self.model_dump_json(exclude_unset=True).encode()
        return self._body

    def options_json(self) -> str:
        """``has_priority`` and ``flow_execution_variables`` as sent (JSON): what a retry of its contacts keeps."""
        return run_options_json(self)


def run_options_json(request: BaseModel) -> str:
    """The run options of a run or bulk request (``has_priority``, and ``flow_execution_variables`` when set), as
    JSON: kept on the run's record so that a retry of its contacts runs as the first send did."""
    return request.model_dump_json(include={"has_priority", "flow_execution_variables"}, exclude_unset=True)


class FlowExecution(BaseModel):
    """Hilos' ``FlowExecutionEdit`` (run answer) and ``FlowExecutionReadDetail`` (status read), parsed
    leniently: unknown upstream fields are kept, and a missing one is None."""

    model_config = ConfigDict(extra="allow")

    id: UUID | None = None
    status: str | None = None
    execute_for: str | None = None
    has_priority: bool | None = None
    num_contacts: int | None = None
    created_on: str | None = None
    # Contacts per state, counted by Hilos.
    running: int | None = None
    completed: int | None = None
    failed: int | None = None
    expired: int | None = None
    canceled: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _without_contacts_echo(cls, value: Any) -> Any:
        # Hilos' create answer echoes the run's contact_list: the caller's own data, as large as the request.
        # Not kept, so what is stored and answered for a run stays small whatever its size.
        if isinstance(value, dict) and "contact_list" in value:
            return {name: item for name, item in value.items() if name != "contact_list"}
        return value


class HilosContact(BaseModel):
    """The part of Hilos' ``ContactReadSimple`` that identifies a contact, and what a contact file holds of it."""

    model_config = ConfigDict(extra="ignore")

    id: str | None = None
    phone: str | None = None
    canonical_phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    meta: dict[str, Any] | None = None


class FlowExecutionContact(BaseModel):
    """One item of Hilos' List Flow Execution Contacts (``FlowExecutionContactListSimple``), leniently."""

    model_config = ConfigDict(extra="ignore")

    id: UUID | None = None
    contact: HilosContact
    status: str | None = None
    reason: str | None = None


Item = TypeVar("Item", bound=BaseModel)


class HilosPage(BaseModel, Generic[Item]):
    """A page of one of Hilos' lists (DRF pagination: ``count``, ``next``, ``previous``, ``results``)."""

    model_config = ConfigDict(extra="ignore")

    count: int | None = None
    next: str | None = None
    results: list[Item] = Field(default_factory=list)
