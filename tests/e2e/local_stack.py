"""What e2e tests share on top of local/running_stack.py (the stack they start, shared with the benchmarks):
reading a run's record, waiting for a status, the completion events received."""

import json
from typing import Any

from local.running_stack import RunningStack, wait_for

WAIT_SECONDS = 40


class CompletionEvents:
    """Everything that arrived on the stack's completion events queue (received once, kept here)."""

    def __init__(self, stack: RunningStack) -> None:
        self._sqs = stack.aws_client("sqs")
        self._queue_url = stack.info["completion_events_queue_url"]
        self.received: list[dict[str, Any]] = []

    def poll(self) -> list[dict[str, Any]]:
        answer = self._sqs.receive_message(QueueUrl=self._queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in answer.get("Messages", []):
            self.received.append(json.loads(message["Body"]))
            self._sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"])
        return self.received

    def of_run(self, run_id: str) -> list[dict[str, Any]]:
        return [event for event in self.received if event["detail"].get("run_id") == run_id]

    def of_bulk_run(self, bulk_id: str) -> list[dict[str, Any]]:
        return [event for event in self.received if event["detail"].get("bulk_id") == bulk_id]


def run_record(stack: RunningStack, run_id: str) -> dict[str, Any]:
    answer = stack.api("GET", f"/runs/{run_id}")
    assert answer.status_code == 200, answer.text
    record: dict[str, Any] = answer.json()
    return record


def wait_for_status(stack: RunningStack, run_id: str, status: str) -> dict[str, Any]:
    record = wait_for(
        lambda: (found := run_record(stack, run_id))["status"] == status and found,
        timeout=WAIT_SECONDS,
        interval=0.2,
    )
    assert record, f"run {run_id} did not reach {status} in {WAIT_SECONDS} s: {run_record(stack, run_id)}"
    return record
