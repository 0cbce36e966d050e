"""The "Hilos Run Finished" event: its detail, its schema file, and how EventBridge failures surface."""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest.mock import Mock

import jsonschema
import pytest

from hilos_runner.completion_events import (
    BULK_EVENT_DETAIL_TYPE,
    EVENT_DETAIL_TYPE,
    EVENT_SOURCE,
    BulkRunFinishedEvent,
    CompletionEventPublisher,
    RunFinishedEvent,
    bulk_run_finished_json_schema,
    run_finished_json_schema,
)
from hilos_runner.errors import DependencyUnavailableError
from hilos_runner.execution_records import ExecutionCounters, ExecutionRecord, RunSource, RunStatus
from tests.helpers import HILOS_EXECUTION_ID, execution_record

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "run-finished-event.schema.json"
BULK_SCHEMA_PATH = SCHEMA_PATH.with_name("bulk-run-finished-event.schema.json")
AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def finished(**fields: Any) -> ExecutionRecord:
    values: dict[str, Any] = {
        "source": RunSource.QUEUE,
        "status": RunStatus.COMPLETED,
        "num_contacts": 5,
        "hilos_execution_id": HILOS_EXECUTION_ID,
        "hilos_status": "COMPLETED",
        "counters": ExecutionCounters(completed=4, failed=1),
        "synced_at": AT,
        **fields,
    }
    record: ExecutionRecord = execution_record(**values)
    return record


def test_the_schema_file_is_current():
    assert SCHEMA_PATH.read_text() == run_finished_json_schema(), (
        "schemas/run-finished-event.schema.json is stale: run "
        "`hilos-runner schema --event --output schemas/run-finished-event.schema.json`"
    )
    assert BULK_SCHEMA_PATH.read_text() == bulk_run_finished_json_schema(), (
        "schemas/bulk-run-finished-event.schema.json is stale: run "
        "`hilos-runner schema --bulk-event --output schemas/bulk-run-finished-event.schema.json`"
    )


def test_the_published_entry_carries_a_detail_valid_against_the_schema():
    client = Mock()
    client.put_events.return_value = {"FailedEntryCount": 0, "Entries": [{"EventId": "1"}]}
    record = finished()

    CompletionEventPublisher(client, "runs-bus").publish(record, AT)

    [entry] = client.put_events.call_args.kwargs["Entries"]
    assert (entry["Source"], entry["DetailType"], entry["EventBusName"]) == (
        EVENT_SOURCE,
        EVENT_DETAIL_TYPE,
        "runs-bus",
    )
    detail = json.loads(entry["Detail"])
    jsonschema.validate(detail, json.loads(SCHEMA_PATH.read_text()))
    assert detail["run_id"] == str(record.run_id)
    assert detail["counters"] == {"running": 0, "completed": 4, "failed": 1, "expired": 0, "canceled": 0}
    assert detail["finished_at"] == "2026-12-01T12:00:00.000000Z"
    assert detail["contacts_url"] == f"/runs/{record.run_id}/contacts"


def test_a_finished_bulk_run_is_announced_as_one_with_its_summed_counters():
    client = Mock()
    client.put_events.return_value = {"FailedEntryCount": 0, "Entries": [{"EventId": "1"}]}
    parent = finished(status=RunStatus.COMPLETED_WITH_ERRORS, num_chunks=3, hilos_execution_id=None)

    CompletionEventPublisher(client, "runs-bus").publish(parent, AT)

    [entry] = client.put_events.call_args.kwargs["Entries"]
    assert entry["DetailType"] == BULK_EVENT_DETAIL_TYPE
    detail = json.loads(entry["Detail"])
    jsonschema.validate(detail, json.loads(BULK_SCHEMA_PATH.read_text()))
    assert (detail["bulk_id"], detail["status"], detail["num_chunks"]) == (
        str(parent.run_id),
        "COMPLETED_WITH_ERRORS",
        3,
    )
    assert detail["contacts_url"] == f"/bulk-runs/{parent.run_id}/contacts"
    with pytest.raises(ValueError, match="only a finished bulk run"):
        BulkRunFinishedEvent.of(finished(status=RunStatus.IN_PROGRESS, num_chunks=3))


@pytest.mark.parametrize(
    "fields",
    [{"status": RunStatus.RUNNING}, {"status": RunStatus.SUBMITTED}, {"hilos_execution_id": None}, {"synced_at": None}],
)
def test_a_run_that_has_not_finished_in_hilos_has_no_event(fields: dict[str, Any]):
    with pytest.raises(ValueError, match="only a finished run"):
        RunFinishedEvent.of(finished(**fields))


def test_an_entry_eventbridge_refuses_is_a_dependency_failure_naming_its_code():
    client = Mock()
    client.put_events.return_value = {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure"}]}

    with pytest.raises(DependencyUnavailableError, match="InternalFailure"):
        CompletionEventPublisher(client, "default").publish(finished(), AT)
