"""The local stack's SQS poller against a real SQS endpoint (moto's server on 127.0.0.1), with a small fake
function: the event source mapping's semantics, independent of what bulk_worker does with the records."""

import itertools
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from local.functions import Invocation
from local.poller import SqsPoller
from local.running_stack import wait_for
from local.template import SqsEventSource

pytestmark = pytest.mark.e2e

MAX_RECEIVE_COUNT = 2
_queue_numbers = itertools.count()


@pytest.fixture(scope="module")
def sqs() -> Iterator[Any]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield boto3.client(
        "sqs",
        endpoint_url=f"http://{host}:{port}",
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    server.stop()


class FakeFunction:
    """Records every event; ``decide(records)`` gives the invocation's outcome."""

    def __init__(self, decide: Callable[[list[dict[str, Any]]], Invocation]) -> None:
        self.events: list[list[dict[str, Any]]] = []
        self._decide = decide
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> Invocation:
        with self._lock:
            self.events.append(event["Records"])
        return self._decide(event["Records"])

    def deliveries(self, body: str) -> list[dict[str, Any]]:
        with self._lock:
            return [record for records in self.events for record in records if record["body"] == body]


def failing(*bodies: str) -> Callable[[list[dict[str, Any]]], Invocation]:
    """A function that reports the records with these bodies as failed (partial batch response)."""

    def decide(records: list[dict[str, Any]]) -> Invocation:
        failures = [{"itemIdentifier": r["messageId"]} for r in records if r["body"] in bodies]
        return Invocation(payload={"batchItemFailures": failures})

    return decide


@pytest.fixture
def queue(sqs: Any) -> dict[str, str]:
    number = next(_queue_numbers)
    dlq_url = sqs.create_queue(QueueName=f"poller-dlq-{number}")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT}
    url = sqs.create_queue(
        QueueName=f"poller-{number}", Attributes={"VisibilityTimeout": "1", "RedrivePolicy": json.dumps(redrive)}
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return {"url": url, "arn": arn, "dlq_url": dlq_url}


def run_poller(
    sqs: Any, queue: dict[str, str], function: FakeFunction, *, batch_size: int = 10, report: bool = True
) -> SqsPoller:
    source = SqsEventSource("FakeFunction", "FakeQueue", queue["url"], queue["arn"], batch_size, 0, report)
    poller = SqsPoller(sqs, source, function)
    poller.start()
    return poller


def stop(poller: SqsPoller) -> None:
    poller.request_stop()
    poller.join()


def queue_is_empty(sqs: Any, url: str) -> bool:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return all(attributes[name] == "0" for name in names)


def test_only_the_reported_failures_come_back_with_a_real_receive_count_then_go_to_the_dlq(sqs, queue):
    function = FakeFunction(failing("fail"))
    for body in ("ok-1", "ok-2", "fail"):
        sqs.send_message(QueueUrl=queue["url"], MessageBody=body)
    poller = run_poller(sqs, queue, function)
    try:
        in_dlq = wait_for(
            lambda: sqs.receive_message(QueueUrl=queue["dlq_url"], WaitTimeSeconds=1).get("Messages"), timeout=20
        )
    finally:
        stop(poller)

    assert in_dlq, "the failing message never reached the dead-letter queue"
    assert in_dlq[0]["Body"] == "fail"
    failed = function.deliveries("fail")
    assert [r["attributes"]["ApproximateReceiveCount"] for r in failed] == ["1", "2"]
    assert len({r["messageId"] for r in failed}) == 1
    assert failed[0]["eventSourceARN"] == queue["arn"]
    assert failed[0]["eventSource"] == "aws:sqs"
    assert len(function.deliveries("ok-1")) == len(function.deliveries("ok-2")) == 1  # deleted after success
    assert queue_is_empty(sqs, queue["url"])


@pytest.mark.parametrize(
    "first_outcome",
    [
        Invocation(error={"errorType": "RuntimeError", "errorMessage": "boom"}),
        Invocation(payload={"batchItemFailures": [{"itemIdentifier": "not-in-this-batch"}]}),
        Invocation(payload={"batchItemFailures": [{"itemIdentifier": ""}]}),
    ],
    ids=["function-error", "unknown-identifier", "empty-identifier"],
)
def test_an_error_or_an_invalid_answer_fails_the_whole_batch(sqs, queue, first_outcome):
    outcomes = iter([first_outcome])
    function = FakeFunction(lambda records: next(outcomes, Invocation(payload=None)))
    sqs.send_message(QueueUrl=queue["url"], MessageBody="a")
    sqs.send_message(QueueUrl=queue["url"], MessageBody="b")
    poller = run_poller(sqs, queue, function)
    try:
        done = wait_for(
            lambda: (
                len(function.deliveries("a")) == len(function.deliveries("b")) == 2
                and queue_is_empty(sqs, queue["url"])
            ),
            timeout=20,
        )
    finally:
        stop(poller)
    assert done, f"expected both messages delivered twice, then deleted; got {function.events}"


def test_without_report_batch_item_failures_a_returned_list_is_ignored(sqs, queue):
    function = FakeFunction(failing("a"))
    sqs.send_message(QueueUrl=queue["url"], MessageBody="a")
    poller = run_poller(sqs, queue, function, report=False)
    try:
        deleted = wait_for(lambda: function.events and queue_is_empty(sqs, queue["url"]), timeout=10)
    finally:
        stop(poller)
    assert deleted
    assert len(function.deliveries("a")) == 1


def test_batches_are_at_most_the_batch_size(sqs, queue):
    function = FakeFunction(lambda records: Invocation(payload={"batchItemFailures": []}))
    for number in range(5):
        sqs.send_message(QueueUrl=queue["url"], MessageBody=f"m{number}")
    poller = run_poller(sqs, queue, function, batch_size=2)
    try:
        all_seen = wait_for(lambda: sum(map(len, function.events)) == 5, timeout=15)
    finally:
        stop(poller)
    assert all_seen, function.events
    assert max(map(len, function.events)) <= 2
    assert queue_is_empty(sqs, queue["url"])
