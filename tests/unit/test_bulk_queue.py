"""QueueSender: SendMessageBatch within SQS's limits, failed entries resent (bounded), and visibility."""

from typing import Any

import pytest
from botocore.exceptions import ClientError

from hilos_runner import queue_sender
from hilos_runner.queue_sender import SEND_ATTEMPTS, QueueSender

URL = "https://sqs.us-east-1.amazonaws.com/123456789012/runs"


class FakeSqs:
    """Records SendMessageBatch calls; entries listed in ``refuse`` fail (per attempt, in order)."""

    def __init__(self, refuse: list[dict[str, dict[str, Any]]] | None = None, error: Exception | None = None) -> None:
        self.calls: list[list[dict[str, str]]] = []
        self.refuse = refuse or []
        self.error = error
        self.visibility: list[dict[str, Any]] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        assert QueueUrl == URL
        self.calls.append(Entries)
        if self.error:
            raise self.error
        refused = self.refuse.pop(0) if self.refuse else {}
        return {
            "Successful": [{"Id": e["Id"]} for e in Entries if e["MessageBody"] not in refused],
            "Failed": [{"Id": e["Id"], **refused[e["MessageBody"]]} for e in Entries if e["MessageBody"] in refused],
        }

    def change_message_visibility(self, **request: Any) -> None:
        if self.error:
            raise self.error
        self.visibility.append(request)


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(queue_sender.time, "sleep", slept.append)
    return slept


def test_at_most_ten_entries_per_batch_in_order_with_progress():
    sqs = FakeSqs()
    progress: list[int] = []

    failed = QueueSender(sqs, URL).send([f"m{i}" for i in range(25)], on_sent=progress.append)

    assert failed == {}
    assert [len(call) for call in sqs.calls] == [10, 10, 5]
    assert [e["MessageBody"] for call in sqs.calls for e in call] == [f"m{i}" for i in range(25)]
    assert progress == [10, 10, 5]


def test_a_batch_never_exceeds_256_kib():
    sqs = FakeSqs()
    bodies = [str(i) + "x" * 100_000 for i in range(5)]

    QueueSender(sqs, URL).send(bodies)

    assert [len(call) for call in sqs.calls] == [2, 2, 1]
    assert all(sum(len(e["MessageBody"]) for e in call) <= 262_144 for call in sqs.calls)


def test_server_faults_are_resent_sender_faults_are_not(no_backoff: list[float]):
    transient = {"SenderFault": False, "Code": "InternalError", "Message": "try again"}
    permanent = {"SenderFault": True, "Code": "InvalidMessageContents", "Message": "bad"}
    sqs = FakeSqs(refuse=[{"b": transient, "c": permanent}])

    failed = QueueSender(sqs, URL).send(["a", "b", "c"])

    assert failed == {2: "InvalidMessageContents: bad"}
    assert [[e["MessageBody"] for e in call] for call in sqs.calls] == [["a", "b", "c"], ["b"]]
    assert no_backoff == [0.2]


def test_resending_is_bounded_and_reports_what_never_got_through():
    transient = {"SenderFault": False, "Code": "InternalError", "Message": "down"}
    sqs = FakeSqs(refuse=[{"b": transient}] * 10)

    failed = QueueSender(sqs, URL).send(["a", "b"])

    assert failed == {1: "InternalError: down"}
    assert len(sqs.calls) == SEND_ATTEMPTS


def test_a_failing_call_fails_every_entry_after_the_attempts():
    error = ClientError({"Error": {"Code": "AWS.SimpleQueueService.NonExistentQueue"}}, "SendMessageBatch")
    sqs = FakeSqs(error=error)

    failed = QueueSender(sqs, URL).send(["a", "b"])

    assert failed == {0: "AWS.SimpleQueueService.NonExistentQueue", 1: "AWS.SimpleQueueService.NonExistentQueue"}
    assert len(sqs.calls) == SEND_ATTEMPTS


def test_delay_changes_visibility_and_tolerates_a_stale_receipt_handle():
    sqs = FakeSqs()
    assert QueueSender(sqs, URL).delay("receipt-1", 17) is True
    assert sqs.visibility == [{"QueueUrl": URL, "ReceiptHandle": "receipt-1", "VisibilityTimeout": 17}]

    stale = FakeSqs(error=ClientError({"Error": {"Code": "ReceiptHandleIsInvalid"}}, "ChangeMessageVisibility"))
    assert QueueSender(stale, URL).delay("receipt-2", 17) is False
