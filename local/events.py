"""Lambda events and context as AWS builds them: API Gateway HTTP API (payload 2.0), SQS and EventBridge
schedules.

One module serves the local stack (which turns real HTTP requests and real SQS messages into these
events) and the tests (which build them directly), so both exercise the same shapes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"


def http_api_event(
    method: str,
    path: str,
    *,
    body: str | bytes | dict[str, Any] | list[Any] | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    jwt_claims: dict[str, Any] | None = None,
    source_ip: str = "127.0.0.1",
    raw_query: str | None = None,
) -> dict[str, Any]:
    """The event API Gateway (HTTP API, payload format 2.0) sends to a Lambda proxy integration.

    ``raw_query`` is the query string as received (the local HTTP front); repeated parameters are
    joined with commas in ``queryStringParameters``, as API Gateway does.
    """
    header_map = {name.lower(): value for name, value in (headers or {}).items()}
    if raw_query is not None:
        query = {}
        for name, value in parse_qsl(raw_query, keep_blank_values=True):
            query[name] = f"{query[name]},{value}" if name in query else value
    is_base64 = False
    if isinstance(body, dict | list):
        body = json.dumps(body)
        header_map.setdefault("content-type", "application/json")
    elif isinstance(body, bytes):
        raw = body
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError:
            body, is_base64 = base64.b64encode(raw).decode(), True
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": raw_query if raw_query is not None else urlencode(query or {}),
        "headers": header_map,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": "local",
            "domainName": header_map.get("host", "localhost"),
            "domainPrefix": "local",
            "http": {
                "method": method.upper(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": header_map.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": is_base64,
    }
    if query:
        event["queryStringParameters"] = dict(query)
    if body is not None:
        event["body"] = body
    if jwt_claims is not None:
        event["requestContext"]["authorizer"] = {"jwt": {"claims": jwt_claims, "scopes": None}}
    return event


def sqs_record(
    body: str | dict[str, Any],
    *,
    queue_arn: str = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:runs",
    message_id: str | None = None,
    receipt_handle: str | None = None,
    receive_count: int = 1,
    sent_timestamp_ms: int | None = None,
    attributes: dict[str, str] | None = None,
    message_attributes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One record of an SQS event as the event source mapping delivers it.

    ``attributes`` (system attributes) and ``message_attributes`` are given as ReceiveMessage returns
    them (the local poller); they replace the made-up ones and are put in the event's own shape.
    """
    text = body if isinstance(body, str) else json.dumps(body)
    sent = sent_timestamp_ms or int(time.time() * 1000)
    default_attributes = {
        "ApproximateReceiveCount": str(receive_count),
        "SentTimestamp": str(sent),
        "SenderId": ACCOUNT_ID,
        "ApproximateFirstReceiveTimestamp": str(sent),
    }
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": receipt_handle or f"local-{uuid.uuid4()}",
        "body": text,
        "attributes": dict(attributes) if attributes is not None else default_attributes,
        "messageAttributes": {
            name: _event_message_attribute(value) for name, value in (message_attributes or {}).items()
        },
        "md5OfBody": hashlib.md5(text.encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


def _event_message_attribute(value: dict[str, Any]) -> dict[str, Any]:
    """ReceiveMessage's {"StringValue", "DataType"} -> the event's {"stringValue", ..., "dataType"}."""
    binary = value.get("BinaryValue")
    return {
        "stringValue": value.get("StringValue"),
        "binaryValue": base64.b64encode(binary).decode() if isinstance(binary, bytes) else binary,
        "stringListValues": list(value.get("StringListValues", [])),
        "binaryListValues": list(value.get("BinaryListValues", [])),
        "dataType": value.get("DataType", "String"),
    }


def sqs_event(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Records": records}


def scheduled_event(
    rule_arn: str, *, at: datetime | None = None, region: str = REGION, account: str = ACCOUNT_ID
) -> dict[str, Any]:
    """What EventBridge sends a function when a schedule rule (rate/cron) fires: the "Scheduled Event"."""
    when = at or datetime.now(UTC)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


def rule_arn(rule_name: str, *, region: str = REGION, account: str = ACCOUNT_ID) -> str:
    return f"arn:aws:events:{region}:{account}:rule/{rule_name}"


@dataclass
class LocalLambdaContext:
    """What Lambda passes as ``context``: names, request id, and a deadline that really runs out."""

    function_name: str = "local-function"
    timeout_seconds: float = 30.0
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
