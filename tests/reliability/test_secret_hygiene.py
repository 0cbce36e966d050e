"""Secret hygiene: one test drives every path a run can take, through the API and through the queue, with
a recognisable Hilos token, and then looks for that token everywhere a leak could land: every log line and
everything written to stdout/stderr (Powertools logs and EMF metrics), every API answer (status line
headers and body), every item of both DynamoDB tables (execution records and Powertools' idempotency
records), and every message left on the runs queue or its dead-letter queue.

Hilos is made to echo the Authorization header in its error bodies, the worst upstream behaviour: what
it says is passed on to callers and records, so the token must be cut out before that.
"""

import json
import zlib
from typing import Any

import pytest
import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from tests.fake_hilos import Answer, FakeHilos, Reply, by_first_phone, reply
from tests.helpers import FLOW_ID, RUN_URL, TEST_TOKEN, RunsQueue, call_run_api, contact, deliver, hilos_execution

pytestmark = pytest.mark.usefixtures("worker")


def echoing(status: int, headers: dict[str, str] | None = None) -> Answer:
    """An error answer that quotes the request's Authorization header back (an upstream debugging page)."""

    def answer(request: Any) -> Reply:
        echoed = request.headers["Authorization"]
        body = {"detail": f"HTTP {status} for request with Authorization: {echoed}", "contact_list": [echoed]}
        return status, headers or {}, json.dumps(body)

    return answer


REFUSED = MaxRetryError(None, RUN_URL, reason=NewConnectionError(None, "Connection refused"))  # type: ignore[arg-type]
# Each path by the first contact's phone: the fake Hilos answers accordingly.
PATHS: dict[str, Answer] = {
    "+5215500000201": reply(201, hilos_execution()),
    "+5215500000400": echoing(400),
    "+5215500000401": echoing(401),
    "+5215500000403": echoing(403),
    "+5215500000404": echoing(404),
    "+5215500000429": echoing(429, {"Retry-After": "1"}),
    "+5215500000500": echoing(500),
    "+5215500000503": echoing(503),
    "+5215500000504": echoing(504),
    "+5215500000901": requests.ReadTimeout("read timed out"),
    "+5215500000902": requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError())),
    "+5215500000903": requests.ConnectionError(REFUSED),
}


def readable(value: Any) -> str:
    """Binary attributes as text: the request bodies kept for reconciliation are zlib-compressed JSON."""
    assert isinstance(value, bytes), type(value)
    try:
        return zlib.decompress(value).decode()
    except zlib.error:  # one part of a body split over several items: the parts together decompress
        return value.decode("latin-1")


def scan(client: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    request: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    for _ in range(100):  # bounded; moto pages at 1 MB
        page = client.scan(**request)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            break
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return items


def test_the_token_appears_in_no_log_answer_record_or_message(
    hilos: FakeHilos,
    runs_queue: RunsQueue,
    capfd: pytest.CaptureFixture[str],
    logs_never_show_the_token: Any,
):
    import boto3

    from hilos_runner.settings import get_settings

    hilos.answer_runs(by_first_phone(PATHS))

    # -- the API: every path, with and without an idempotency key ----------------------------------------
    answers = []
    for number, phone in enumerate(PATHS):
        body = {"contact_list": [contact(phone=phone)]}
        answers.append(call_run_api("POST", f"/flows/{FLOW_ID}/runs", body))
        answers.append(call_run_api("POST", f"/flows/{FLOW_ID}/runs", body, headers={"Idempotency-Key": f"k-{number}"}))
    for run in [a.body.get("run", a.body) for a in answers if isinstance(a.body, dict)]:
        if run.get("run_id"):
            answers.append(call_run_api("GET", f"/runs/{run['run_id']}"))
    answers.append(call_run_api("GET", f"/flows/{FLOW_ID}/runs", query={"limit": "100"}))
    statuses = sorted({a.status for a in answers})
    assert statuses == [200, 201, 404, 422, 502, 503, 504], statuses  # every kind of answer was given

    # -- the queue: every path, then retried until the DLQ -----------------------------------------------
    sqs, queue_url = runs_queue.sqs, runs_queue.url
    for phone in PATHS:
        message = {"flow_id": FLOW_ID, "contact_list": [contact(phone=phone)]}
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(message))
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"flow_id": FLOW_ID, "contact_list": [{}]}))
    batch_answers = []
    for _ in range(50):  # bounded: 5 receives of the retried messages, then the DLQ
        messages, batch_answer = deliver(sqs, queue_url, runs_queue.arn)
        if not messages:
            break
        batch_answers.append(batch_answer)
        failed = {item["itemIdentifier"] for item in batch_answer["batchItemFailures"]}
        for m in (m for m in messages if m["MessageId"] in failed):
            # As if the retry delay had passed.
            sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
    dead = runs_queue.take_bodies(dead=True)
    assert len(dead) >= 5, len(dead)  # 429/500/503, connection refused, refused token: every attempt failed

    # -- where a leak could land --------------------------------------------------------------------------
    seen_tokens = [call.request.headers["Authorization"] for call in hilos.calls]
    assert seen_tokens
    assert set(seen_tokens) == {f"Token {TEST_TOKEN}"}  # the token really was in play on every call
    dynamodb = boto3.client("dynamodb")
    settings = get_settings()
    stored = scan(dynamodb, settings.executions_table_name) + scan(dynamodb, settings.idempotency_table_name)
    assert len(stored) > 2 * len(PATHS)
    printed = capfd.readouterr()
    places = {
        "API answers": json.dumps([[a.status, a.headers, a.body] for a in answers]),
        "worker answers": json.dumps(batch_answers),
        "DynamoDB items": json.dumps(stored, default=readable),
        "dead letters": json.dumps(dead),
        "queue left": json.dumps(runs_queue.take_bodies()),
        "stdout": printed.out,
        "stderr": printed.err,
        "log records": logs_never_show_the_token.getvalue(),
    }
    assert places["stdout"]  # Powertools' logs and metrics did go there
    for place, text in places.items():
        assert TEST_TOKEN not in text, f"the Hilos token leaked into {place}"
    assert any("[redacted]" in json.dumps(item) for item in stored)  # the echoed token was cut out
