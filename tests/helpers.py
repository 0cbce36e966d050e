"""Helpers shared by the tests: constants, request bodies, and calling the handlers."""

import json
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from local.events import LocalLambdaContext, http_api_event

# Recognisable so that a leak is easy to grep for; never a real token.
TEST_TOKEN = "hilos-test-token-7f3c9a1e5b2d"
FLOW_ID = "a3ff7ee5-0c11-49e2-a0d6-7e316626f7b1"
HILOS_BASE = "https://api.hilos.io/api"
RUN_URL = f"{HILOS_BASE}/flow/{FLOW_ID}/run"
HILOS_EXECUTION_ID = "5b0e7c1a-2f7d-4c55-9a43-0d4e2a1b9c10"


def hilos_execution(**overrides: Any) -> dict[str, Any]:
    """A FlowExecutionEdit as Hilos answers it (201)."""
    return {
        "id": HILOS_EXECUTION_ID,
        "status": "PROCESSING",
        "execute_for": "LIST",
        "has_priority": False,
        "num_contacts": 1,
        "status_reason": None,
        "status_triggered_by": None,
        "status_last_change_on": None,
        "source": "API",
        **overrides,
    }


def contact(**overrides: Any) -> dict[str, Any]:
    return {"phone": "+5215512345678", "first_name": "Ana", **overrides}


def run_body(contacts: int = 1, **overrides: Any) -> dict[str, Any]:
    return {"contact_list": [contact(phone=f"+52155{i:08d}") for i in range(contacts)], **overrides}


@dataclass
class ApiAnswer:
    status: int
    body: Any
    headers: dict[str, str]


def call_run_api(
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
) -> ApiAnswer:
    """Invoke run_api's Lambda handler with the event API Gateway would send."""
    import run_api

    path = urlsplit(path).path  # a URL the API answered (status_url), or a path
    event = http_api_event(method, path, body=body, headers=headers, query=query)
    answer = run_api.lambda_handler(event, LocalLambdaContext(function_name="run-api"))
    text = answer.get("body") or ""
    content_type = answer.get("headers", {}).get("Content-Type", "")
    parsed = json.loads(text) if text and content_type.startswith("application/json") else text
    return ApiAnswer(answer["statusCode"], parsed, answer.get("headers", {}))


def queued_run(contacts: int = 1, **overrides: Any) -> dict[str, Any]:
    """A QueuedRun message body (what a producer puts on the runs queue)."""
    return {"flow_id": FLOW_ID, **run_body(contacts), **overrides}


# template.yaml gives bulk_worker 300 s; a shorter deadline would trip the worker's time guard.
WORKER_TIMEOUT_SECONDS = 300


def call_bulk_worker(records: list[dict[str, Any]], context: Any = None) -> dict[str, Any]:
    """Invoke bulk_worker's Lambda handler with an SQS event of ``records`` (local.events.sqs_record)."""
    import bulk_worker
    from local.events import sqs_event

    context = context or LocalLambdaContext(function_name="bulk-worker", timeout_seconds=WORKER_TIMEOUT_SECONDS)
    return bulk_worker.lambda_handler(sqs_event(records), context)


def failed_ids(answer: dict[str, Any]) -> list[str]:
    """The message ids a partial batch response reports as failed."""
    return [failure["itemIdentifier"] for failure in answer["batchItemFailures"]]


def deliver(
    sqs: Any, queue_url: str, queue_arn: str, context: Any = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One event source mapping poll against a real (moto) queue: receive up to 10 messages, invoke
    bulk_worker with them, delete those not in ``batchItemFailures``. Returns (messages, answer)."""
    from local.events import sqs_record

    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"])
    messages = messages.get("Messages", [])
    if not messages:
        return [], {"batchItemFailures": []}
    records = [
        sqs_record(
            m["Body"],
            queue_arn=queue_arn,
            message_id=m["MessageId"],
            receipt_handle=m["ReceiptHandle"],
            attributes=m.get("Attributes", {}),
        )
        for m in messages
    ]
    answer = call_bulk_worker(records, context)
    failed = set(failed_ids(answer))
    for m in messages:
        if m["MessageId"] not in failed:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    return messages, answer


@dataclass
class RunsQueue:
    sqs: Any  # a boto3 SQS client (moto)
    url: str
    arn: str
    dlq_url: str

    def take_bodies(self, *, dead: bool = False) -> list[dict[str, Any]]:
        """Receive every message on the queue (or its DLQ) and return their bodies; the messages stay
        in flight (hidden) afterwards."""
        url = self.dlq_url if dead else self.url
        bodies: list[dict[str, Any]] = []
        for _ in range(1000):  # bounded; a receive returns at most 10 messages
            messages = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600)
            if not messages.get("Messages"):
                break
            bodies += [json.loads(m["Body"]) for m in messages["Messages"]]
        return bodies


def use_function_environment(stack: Any, logical_id: str, setenv: Any) -> None:
    """Give this process ``logical_id``'s environment from template.yaml (resolved against ``stack``),
    and drop every cached client and setting so the next call builds them from it."""
    from hilos_runner import factories

    for name, value in stack.function_environment(logical_id).items():
        setenv(name, value)
    factories.reset()


def drain(runs_queue: RunsQueue, aws: Any, monkeypatch: Any, *, one_at_a_time: bool = False) -> int:
    """Let bulk_worker (its own environment) take everything on the queue; returns the messages seen.

    ``one_at_a_time``: records of a batch one after the other. Two copies of a message in one batch
    meet in Powertools' conditional write, which DynamoDB makes atomic but moto does not."""
    from hilos_runner import factories

    with monkeypatch.context() as env:
        use_function_environment(aws, "BulkWorkerFunction", env.setenv)
        if one_at_a_time:  # read on first use, after the reset above
            env.setenv("WORKER_CONCURRENCY", "1")
        seen = 0
        for _ in range(50):  # bounded
            messages, _answer = deliver(runs_queue.sqs, runs_queue.url, runs_queue.arn)
            if not messages:
                break
            seen += len(messages)
    factories.reset()
    return seen


def execution_record(**fields: Any) -> Any:
    """An ExecutionRecord of a submitted one-contact API run of FLOW_ID, with ``fields`` changed."""
    from hilos_runner.execution_records import ExecutionRecord, RunSource, RunStatus

    values: dict[str, Any] = {
        "flow_id": FLOW_ID,
        "source": RunSource.API,
        "status": RunStatus.SUBMITTED,
        "num_contacts": 1,
        **fields,
    }
    return ExecutionRecord.model_validate(values)


def sync_pass(aws: Any, monkeypatch: Any, **settings: str) -> dict[str, Any]:
    """One scheduled invocation of status_sync, in its own environment from template.yaml (plus ``settings``,
    e.g. RECONCILE_GRACE_SECONDS="0"); returns its report."""
    import status_sync
    from hilos_runner import factories
    from local.events import LocalLambdaContext, rule_arn, scheduled_event

    with monkeypatch.context() as env:
        use_function_environment(aws, "StatusSyncFunction", env.setenv)
        # Due again at once (a run is looked at after a tenth of its age): each pass sees every run.
        env.setenv("STATUS_SYNC_MIN_INTERVAL_SECONDS", "0")
        for name, value in settings.items():
            env.setenv(name, value)
        context = LocalLambdaContext(function_name="status-sync", timeout_seconds=120)
        report = status_sync.lambda_handler(scheduled_event(rule_arn("status-sync")), context)
    factories.reset()
    return report


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
