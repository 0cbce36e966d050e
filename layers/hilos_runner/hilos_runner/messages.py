"""Contracts of queued work: the SQS message a producer sends (``QueuedRun``) and a bulk contact list
(``BulkRunRequest``: the body of ``POST /flows/{flow_id}/bulk-runs`` and the content of a CLI file).

Contacts are the same ``Contact`` model the run API takes, so a contact valid in one place is valid in
all of them. The JSON Schema of ``QueuedRun`` is generated from this model into
schemas/queued-run.schema.json (``hilos-runner schema``); a test fails when that file is stale.
"""

import json
from typing import Annotated, Any, Self
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PrivateAttr,
    TypeAdapter,
    model_validator,
)

from hilos_runner.duplicates import DuplicatesRemoved, OnDuplicate
from hilos_runner.models import (
    IDEMPOTENCY_KEY_PATTERN,
    MAX_CONTACTS_PER_RUN,
    Contact,
    FlowRunRequest,
    FlowVariables,
    HasPriority,
)

# One contact, and the flow variables, must each leave room in a 256 KiB SQS message for the other.
MAX_QUEUED_PART_BYTES = 65_536


def _fits_a_message(value: Any) -> Any:
    size = len(_json_adapter.dump_json(value, exclude_unset=True))
    if size > MAX_QUEUED_PART_BYTES:
        raise ValueError(f"is {size} bytes of JSON; at most {MAX_QUEUED_PART_BYTES} fit a queued message")
    return value


_json_adapter: TypeAdapter[Any] = TypeAdapter(Any)
QueuableContact = Annotated[Contact, AfterValidator(_fits_a_message)]

# defer_build: validators are built on first use, not at import; run_api's single-run path and its cold
# start never need these (each costs tens of ms to build).
_message_config = ConfigDict(extra="forbid", str_strip_whitespace=False, defer_build=True)


class QueuedRun(BaseModel):
    """One message on the runs queue: start ``flow_id`` for ``contact_list``.

    Messages larger than the chunk size (BULK_CHUNK_SIZE) are split by the worker into several Hilos
    calls, each with its own derived idempotency key, so a redelivery resumes where it stopped.
    """

    model_config = ConfigDict(**_message_config, title="QueuedRun")

    flow_id: UUID = Field(description="The Hilos flow to start.")
    contact_list: list[Contact] = Field(
        min_length=1, description="Contacts to run the flow for (the run API's contact fields)."
    )
    has_priority: HasPriority = False
    flow_execution_variables: FlowVariables = None
    idempotency_key: str | None = Field(
        default=None,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="Messages with the same key start Hilos at most once (within the idempotency TTL); "
        "without one, the SQS message id is the key.",
    )
    on_duplicate: OnDuplicate = Field(
        default=OnDuplicate.DROP,
        description="drop: later contacts with an earlier contact's phone (or id) are dropped and the record "
        "says which; reject: such a message is recorded REJECTED, listing them.",
    )
    start_at: AwareDatetime | None = Field(
        default=None,
        description="Start at this time instead of now (RFC 3339 with an offset, at most SCHEDULE_HORIZON_DAYS ahead "
        "of when the message was sent): the run is recorded SCHEDULED at once and started then.",
    )
    bulk_id: UUID | None = Field(default=None, description="Set by the API: the bulk run this chunk belongs to.")
    chunk_index: int | None = Field(default=None, ge=0, description="Set by the API: position of this chunk.")
    run_id: UUID | None = Field(default=None, description="Set by the API: the chunk's execution record.")

    @model_validator(mode="after")
    def _bulk_references_together(self) -> Self:
        references = (self.bulk_id, self.chunk_index, self.run_id)
        if any(value is not None for value in references):
            if any(value is None for value in references):
                raise ValueError("bulk_id, chunk_index and run_id are set together (by the bulk API) or not at all")
            if len(self.contact_list) > MAX_CONTACTS_PER_RUN:
                raise ValueError(f"a bulk chunk carries at most {MAX_CONTACTS_PER_RUN} contacts")
        return self

    def run_request(self, contacts: list[Contact]) -> FlowRunRequest:
        """The Hilos request for ``contacts`` (all or part of this message), as the producer wrote it."""
        options: dict[str, Any] = {"has_priority": self.has_priority}
        if "flow_execution_variables" in self.model_fields_set:
            options["flow_execution_variables"] = self.flow_execution_variables
        return FlowRunRequest(contact_list=contacts, **options)

    def body(self) -> str:
        """The message body: what was set, nothing added (contacts keep explicit nulls vs absent)."""
        return self.model_dump_json(exclude_unset=True)


class BulkRunRequest(BaseModel):
    """A large contact list to run a flow for, split into queued chunks."""

    model_config = _message_config

    # No upper bound here: the API limits a submit (BULK_MAX_CONTACTS), the CLI takes files of any size.
    contact_list: list[QueuableContact] = Field(min_length=1)
    has_priority: HasPriority = False
    flow_execution_variables: Annotated[dict[str, JsonValue] | None, AfterValidator(_fits_a_message)] = Field(
        default=None, description="Variables available to the flow in this execution."
    )
    start_at: AwareDatetime | None = Field(
        default=None,
        description="Start every chunk at this time instead of now (RFC 3339 with an offset, at most "
        "SCHEDULE_HORIZON_DAYS ahead); for CSV or a bare list, the start_at query parameter.",
    )
    # Set by hilos_runner.contacts_input when it dropped repeated contacts from the list as read.
    _duplicates_removed: DuplicatesRemoved | None = PrivateAttr(default=None)

    @property
    def duplicates_removed(self) -> DuplicatesRemoved | None:
        return self._duplicates_removed


def queued_run_json_schema() -> str:
    """schemas/queued-run.schema.json's content, generated from the model."""
    return json_schema_document(QueuedRun)


def json_schema_document(model: type[BaseModel]) -> str:
    """A model's JSON Schema as the files in schemas/ hold it."""
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **model.model_json_schema()}
    return json.dumps(schema, indent=2, sort_keys=False) + "\n"
