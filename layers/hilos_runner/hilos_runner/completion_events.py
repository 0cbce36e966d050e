""" "Hilos Run Finished" events: what other systems hear when Hilos finishes a run.

When the status sync moves a run to COMPLETED or CANCELED it publishes one event to the EventBridge
bus COMPLETION_EVENT_BUS_NAME (source ``hilos-runner``, detail-type ``Hilos Run Finished``, detail a
``RunFinishedEvent``; JSON Schema in schemas/run-finished-event.schema.json, ``hilos-runner schema
--event``). Delivery is at least once: the record remembers that its event was published
(``event_published_at``) only after EventBridge accepted it, so a crash in between publishes it again
at the next sync. Consumers that must act once deduplicate on ``detail.run_id``.
"""

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from hilos_runner.errors import DependencyUnavailableError
from hilos_runner.executions import ExecutionCounters, ExecutionRecord, RunStatus, Timestamp
from hilos_runner.messages import json_schema_document

EVENT_SOURCE = "hilos-runner"
EVENT_DETAIL_TYPE = "Hilos Run Finished"


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

    @classmethod
    def of(cls, record: ExecutionRecord) -> "RunFinishedEvent":
        if record.hilos_execution_id is None or not record.status.finished or record.synced_at is None:
            raise ValueError("only a finished run with a Hilos execution has a completion event")
        return cls.model_validate(
            {
                "run_id": record.run_id,
                "flow_id": record.flow_id,
                "hilos_execution_id": record.hilos_execution_id,
                "status": record.status,
                "hilos_status": record.hilos_status,
                "parent_id": record.parent_id,
                "num_contacts": record.num_contacts,
                "counters": record.counters or ExecutionCounters(),
                "finished_at": record.synced_at,
            }
        )


def run_finished_json_schema() -> str:
    """schemas/run-finished-event.schema.json's content, generated from the model."""
    return json_schema_document(RunFinishedEvent)


class CompletionEventPublisher:
    def __init__(self, client: Any, bus_name: str) -> None:
        self._client = client
        self._bus_name = bus_name

    def publish(self, record: ExecutionRecord, at: datetime) -> None:
        """Put the run's event on the bus; raises DependencyUnavailableError if EventBridge did not take it."""
        from botocore.exceptions import BotoCoreError, ClientError

        entry = {
            "Source": EVENT_SOURCE,
            "DetailType": EVENT_DETAIL_TYPE,
            "Detail": RunFinishedEvent.of(record).model_dump_json(),
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
