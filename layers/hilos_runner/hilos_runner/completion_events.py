""" "Hilos Run Finished" events: what other systems hear when Hilos finishes a run.

When the status sync moves a run to COMPLETED or CANCELED it publishes one event to the EventBridge
bus COMPLETION_EVENT_BUS_NAME (source ``hilos-runner``, detail-type ``Hilos Run Finished``, detail a
``RunFinishedEvent``; JSON Schema in schemas/run-finished-event.schema.json, ``hilos-runner schema
--event``). Delivery is at least once: the record remembers that its event was published
(``event_published_at``) only after EventBridge accepted it, so a crash in between publishes it again
at the next sync. Consumers that must act once deduplicate on ``detail.run_id``.

A bulk run is announced once too, when its last chunk is done: detail-type ``Hilos Bulk Run Finished``, detail a
``BulkRunFinishedEvent`` (schemas/bulk-run-finished-event.schema.json, ``hilos-runner schema --bulk-event``) with
its chunks' counters summed; each chunk still has its own "Hilos Run Finished" event (``parent_id`` set).
"""

from datetime import datetime
from typing import Any, Literal, TypeVar
from uuid import UUID

from pydantic import BaseModel, Field

from hilos_runner.errors import DependencyUnavailableError
from hilos_runner.execution_records import ExecutionCounters, ExecutionRecord, RunStatus, Timestamp
from hilos_runner.messages import json_schema_document

EVENT_SOURCE = "hilos-runner"
_Detail = TypeVar("_Detail", bound=BaseModel)
EVENT_DETAIL_TYPE = "Hilos Run Finished"
BULK_EVENT_DETAIL_TYPE = "Hilos Bulk Run Finished"


class RunFinishedEvent(BaseModel):
    """The ``detail`` of a "Hilos Run Finished" event."""

    run_id: UUID = Field(description="The run's id in hilos-runner (GET /runs/{run_id}); unique per run.")
    flow_id: UUID
    hilos_execution_id: UUID
    status: Literal[RunStatus.COMPLETED, RunStatus.CANCELED]
    hilos_status: str | None = Field(description="Hilos' own status value.")
    parent_id: UUID | None = Field(description="The bulk run this run is a chunk of (GET /bulk-runs/{id}).")
    num_contacts: int
    counters: ExecutionCounters
    finished_at: Timestamp = Field(description="When the status sync saw the run finished (UTC).")
    contacts_url: str = Field(description="Each contact's outcome (status, reason), relative to the API's URL.")

    @classmethod
    def of(cls, record: ExecutionRecord) -> "RunFinishedEvent":
        if record.hilos_execution_id is None or not record.status.finished or record.synced_at is None:
            raise ValueError("only a finished run with a Hilos execution has a completion event")
        return _detail(cls, record, finished_at=record.synced_at)


class BulkRunFinishedEvent(BaseModel):
    """The ``detail`` of a "Hilos Bulk Run Finished" event: every chunk of the bulk run is done."""

    bulk_id: UUID = Field(description="The bulk run's id (GET /bulk-runs/{id}); unique per bulk run.")
    flow_id: UUID
    status: Literal[RunStatus.COMPLETED, RunStatus.COMPLETED_WITH_ERRORS] = Field(
        description="COMPLETED_WITH_ERRORS when a chunk was not started or was canceled, or a contact failed or "
        "expired."
    )
    num_contacts: int
    num_chunks: int
    counters: ExecutionCounters = Field(description="Hilos' contact counters, summed over the chunks.")
    retry_of: UUID | None = Field(description="The bulk run whose failed contacts this one was for.")
    finished_at: Timestamp = Field(description="When the last chunk was seen done (UTC).")
    contacts_url: str = Field(description="Each contact's outcome (status, reason), relative to the API's URL.")

    @classmethod
    def of(cls, record: ExecutionRecord) -> "BulkRunFinishedEvent":
        if not record.is_bulk or not record.status.finished:
            raise ValueError("only a finished bulk run has a bulk completion event")
        return _detail(cls, record, bulk_id=record.run_id, finished_at=record.synced_at or record.updated_at)


def _detail(model: type[_Detail], record: ExecutionRecord, **own: Any) -> _Detail:
    """An event's detail: the record's fields of the same names (counters zero when never synced), and ``own``."""
    shared = {name: getattr(record, name) for name in model.model_fields if hasattr(record, name)}
    return model.model_validate(shared | {"counters": record.counters or ExecutionCounters()} | own)


def finished_event(record: ExecutionRecord) -> tuple[str, BaseModel]:
    """The detail-type and detail of ``record``'s completion event (a run's, or a bulk run's)."""
    if record.is_bulk:
        return BULK_EVENT_DETAIL_TYPE, BulkRunFinishedEvent.of(record)
    return EVENT_DETAIL_TYPE, RunFinishedEvent.of(record)


def run_finished_json_schema() -> str:
    """schemas/run-finished-event.schema.json's content, generated from the model."""
    return json_schema_document(RunFinishedEvent)


def bulk_run_finished_json_schema() -> str:
    """schemas/bulk-run-finished-event.schema.json's content, generated from the model."""
    return json_schema_document(BulkRunFinishedEvent)


class CompletionEventPublisher:
    def __init__(self, client: Any, bus_name: str) -> None:
        self._client = client
        self._bus_name = bus_name

    def publish(self, record: ExecutionRecord, at: datetime) -> None:
        """Put the run's (or bulk run's) event on the bus; raises DependencyUnavailableError if EventBridge did not
        take it."""
        from botocore.exceptions import BotoCoreError, ClientError

        detail_type, detail = finished_event(record)
        entry = {
            "Source": EVENT_SOURCE,
            "DetailType": detail_type,
            "Detail": detail.model_dump_json(),
            "EventBusName": self._bus_name,
            "Resources": [],
            "Time": at,
        }
        try:
            answer = self._client.put_events(Entries=[entry])
        except (BotoCoreError, ClientError) as exc:
            raise DependencyUnavailableError(f"EventBridge put_events failed ({type(exc).__name__})") from exc
        if answer.get("FailedEntryCount"):
            code = (answer.get("Entries") or [{}])[0].get("ErrorCode", "unknown")
            raise DependencyUnavailableError(f"EventBridge refused the completion event ({code})")
