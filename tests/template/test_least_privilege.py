"""Least privilege, both ways: every action a function's role grants is one its code calls, on that resource, and
every call its code makes is granted.

Each function runs its paths in-process under moto, in its own environment from template.yaml, while a botocore
hook records every AWS call (action and resource). The paths: run_api starts runs (with and without a key, one
that Hilos refuses), lists and refreshes runs (a refresh that finishes a run publishes its event), submits and
reads a bulk run, schedules and cancels a run and a bulk run; bulk_worker takes messages (one started, one
Hilos answers 503: delayed, one scheduled) and starts a scheduled bulk run; status_sync syncs a run to its end.
What the event source mapping does with bulk_worker's role (receive, delete, queue attributes) and what Lambda
does with every role (logs) is granted for them, not for the code.
"""

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hilos_runner.chunking import chunk_run_id
from tests.fake_hilos import USUAL, FakeHilos, reply
from tests.helpers import (
    FLOW_ID,
    HILOS_BASE,
    HILOS_EXECUTION_ID,
    call_bulk_worker,
    call_run_api,
    queued_run,
    run_body,
    use_function_environment,
)
from tests.template.sam_template import granted, role_of

# Used by AWS on the function's behalf, not by its code.
EVENT_SOURCE_MAPPING_ACTIONS = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
LAMBDA_ACTIONS = {"logs:CreateLogStream", "logs:PutLogEvents"}
# Powertools idempotency reads a key's record with GetItem only when a failed conditional write did not return it
# (ReturnValuesOnConditionCheckFailure): DynamoDB does, so the read is a fallback no test can provoke.
POWERTOOLS_FALLBACK_READS = {("dynamodb:GetItem", "IdempotencyTable")}
# IAM authorises some API operations under another action's name.
ACTION_OF_OPERATION = {"sqs:SendMessageBatch": "sqs:SendMessage"}
EXECUTION_URL = f"{HILOS_BASE}/flow-execution/{HILOS_EXECUTION_ID}"

Call = tuple[str, str]  # (IAM action, resource: a logical id, "<table>/index/<name>", or "event-bus")


class CallRecorder:
    """Every AWS call made through the factories' boto3 session, as (action, logical resource)."""

    def __init__(self, stack: Any) -> None:
        self.calls: set[Call] = set()
        self._logical = {str(physical): logical for logical, physical in stack.physical_ids.items()}
        self._logical |= {str(value): logical for (logical, _), value in stack.attributes.items()}

    def attach(self) -> None:
        from hilos_runner import factories

        factories.boto3_session().events.register("before-parameter-build", self._record)

    def _record(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        service = model.service_model.signing_name
        action = f"{service}:{model.name}"
        self.calls.add((ACTION_OF_OPERATION.get(action, action), self._resource(params)))
        if "RoleArn" in params.get("Target", {}):  # a schedule's target role is passed to EventBridge Scheduler
            self.calls.add(("iam:PassRole", self._logical[params["Target"]["RoleArn"]]))

    def _resource(self, params: dict[str, Any]) -> str:
        if "RequestItems" in params:
            (table,) = params["RequestItems"]
            return self._logical[table]
        if "TableName" in params:
            table = self._logical[params["TableName"]]
            return f"{table}/index/{params['IndexName']}" if "IndexName" in params else table
        if "QueueUrl" in params:
            return self._logical[params["QueueUrl"]]
        if "SecretId" in params:
            return self._logical.get(params["SecretId"], params["SecretId"])
        if "Entries" in params:
            return "event-bus"
        if "GroupName" in params:  # EventBridge Scheduler: a schedule of the group
            return self._logical[params["GroupName"]]
        raise AssertionError(f"no resource in {sorted(params)}")


@pytest.fixture
def record(aws: Any, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], CallRecorder]:
    """``record("RunApiFunction")``: that function's environment, and a recorder on its AWS clients."""

    def start(function: str) -> CallRecorder:
        use_function_environment(aws, function, monkeypatch.setenv)
        recorder = CallRecorder(aws)
        recorder.attach()
        return recorder

    return start


def drive_run_api(hilos: FakeHilos) -> None:
    hilos.answer_runs(USUAL, reply(503), USUAL)
    started = call_run_api("POST", f"/flows/{FLOW_ID}/runs", run_body(), headers={"Idempotency-Key": "k-1"})
    assert started.status == 201
    repeated = call_run_api("POST", f"/flows/{FLOW_ID}/runs", run_body(), headers={"Idempotency-Key": "k-1"})
    assert repeated.body == started.body
    assert call_run_api("POST", f"/flows/{FLOW_ID}/runs", run_body(), headers={"Idempotency-Key": "k-2"}).status == 503
    assert call_run_api("POST", f"/flows/{FLOW_ID}/runs", run_body()).status == 201
    assert call_run_api("GET", f"/flows/{FLOW_ID}/runs").status == 200
    hilos.finish()
    refreshed = call_run_api("GET", f"/runs/{started.body['run']['run_id']}", query={"refresh": "true"})
    assert refreshed.body["status"] == "COMPLETED"
    bulk = call_run_api("POST", f"/flows/{FLOW_ID}/bulk-runs", run_body(3), headers={"Idempotency-Key": "b-1"})
    assert bulk.status == 202
    assert call_run_api("GET", f"/bulk-runs/{bulk.body['id']}").status == 200
    later = {"start_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}
    scheduled = call_run_api("POST", f"/flows/{FLOW_ID}/runs", run_body(), query=later)  # a schedule, its role passed
    assert scheduled.status == 202
    assert call_run_api("DELETE", f"/runs/{scheduled.body['run']['run_id']}").status == 200  # the schedule deleted
    scheduled_bulk = call_run_api("POST", f"/flows/{FLOW_ID}/bulk-runs", {**run_body(3), **later})
    assert call_run_api("DELETE", f"/bulk-runs/{scheduled_bulk.body['id']}").status == 200


def drive_bulk_worker(hilos: FakeHilos) -> None:
    from local.events import sqs_record

    hilos.answer_runs(USUAL, reply(503))
    answer = call_bulk_worker([sqs_record(queued_run(1)), sqs_record(queued_run(1, idempotency_key="q-2"))])
    assert len(answer["batchItemFailures"]) == 1  # the 503: delayed with ChangeMessageVisibility
    drive_scheduled_starts()


def drive_scheduled_starts() -> None:
    """A queued message with start_at (its schedule created, its role passed), and the start of a scheduled bulk run
    (its chunks read in a batch, a start message per chunk queued)."""
    from hilos_runner import factories
    from hilos_runner.execution_records import RunStatus
    from local.events import sqs_record
    from tests.helpers import execution_record

    start_at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    answer = call_bulk_worker([sqs_record(queued_run(1, start_at=start_at))])
    assert answer["batchItemFailures"] == []
    bulk_id = uuid.uuid4()
    now = datetime.now(UTC)
    chunk = execution_record(
        run_id=chunk_run_id(bulk_id, 0), parent_id=bulk_id, chunk_index=0, status=RunStatus.SCHEDULED, start_at=now
    )
    factories.execution_store().put(chunk)
    parent = execution_record(run_id=bulk_id, num_chunks=1, status=RunStatus.SCHEDULED, start_at=now)
    factories.execution_store().put(parent)
    answer = call_bulk_worker([sqs_record(json.dumps({"scheduled_runs": [str(bulk_id)]}))])
    assert answer["batchItemFailures"] == []


def drive_status_sync(hilos: FakeHilos, monkeypatch: pytest.MonkeyPatch) -> None:
    import status_sync
    from hilos_runner import factories
    from local.events import LocalLambdaContext, rule_arn, scheduled_event
    from tests.helpers import execution_record

    finished = hilos.add_execution(["+5215512345678"])
    hilos.finish(finished)
    gone = uuid.uuid4()  # an execution Hilos no longer knows: the failure is noted on the record
    factories.execution_store().put(execution_record(run_id=uuid.uuid4(), hilos_execution_id=finished))
    factories.execution_store().put(execution_record(run_id=uuid.uuid4(), hilos_execution_id=gone))
    monkeypatch.setenv("STATUS_SYNC_MIN_INTERVAL_SECONDS", "0")
    context = LocalLambdaContext(function_name="status-sync", timeout_seconds=120)
    report = status_sync.lambda_handler(scheduled_event(rule_arn("status-sync")), context)
    assert report, report


@pytest.mark.parametrize(
    ("function", "allowed_for_aws"),
    [
        ("RunApiFunction", LAMBDA_ACTIONS),
        ("BulkWorkerFunction", LAMBDA_ACTIONS | EVENT_SOURCE_MAPPING_ACTIONS),
        ("StatusSyncFunction", LAMBDA_ACTIONS),
    ],
)
def test_every_action_granted_is_used_and_every_call_is_granted(  # noqa: PLR0917 - pytest passes fixtures by position
    function: str,
    allowed_for_aws: set[str],
    translated: dict[str, Any],
    record: Callable[[str], CallRecorder],
    hilos: FakeHilos,
    monkeypatch: pytest.MonkeyPatch,
):
    recorder = record(function)
    if function == "RunApiFunction":
        drive_run_api(hilos)
    elif function == "BulkWorkerFunction":
        drive_bulk_worker(hilos)
    else:
        drive_status_sync(hilos, monkeypatch)

    grants = granted(translated, role_of(translated, function))
    other_secret = {("secretsmanager:GetSecretValue", "ExistingTokenSecret")}  # ExistingTokenSecretArn's branch
    unused = grants - recorder.calls - other_secret - POWERTOOLS_FALLBACK_READS
    unused = {(action, resource) for action, resource in unused if action not in allowed_for_aws}
    assert not unused, f"{function}'s role grants what its code never calls: {sorted(unused)}"
    assert recorder.calls <= grants, f"{function} calls what its role does not grant: {sorted(recorder.calls - grants)}"
