"""Execution records in DynamoDB: what happened to every run, looked up by id or by flow.

Table layout (template.yaml ``ExecutionsTable``):
- key ``run_id``;
- sparse GSI ``by-flow`` (``listed_flow_id`` + ``created_at``): only top-level runs carry
  ``listed_flow_id``, so "runs of flow X, newest first" lists what callers started, not the
  chunks of a bulk run (those hang off their parent via ``parent_id``);
- TTL attribute ``expires_at`` (epoch seconds).
"""

import base64
import binascii
import json
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4

from pydantic import BaseModel, Field

from hilos_runner.errors import DependencyUnavailableError, InvalidRequestError

FLOW_INDEX_NAME = "by-flow"


class RunStatus(StrEnum):
    QUEUED = "QUEUED"  # accepted, waiting on the queue
    SENDING = "SENDING"  # a Hilos call is in flight; if it stays here the outcome is unknown
    SUBMITTED = "SUBMITTED"  # Hilos accepted the run (201)
    REJECTED = "REJECTED"  # the input is wrong (our validation or Hilos 400): never retried
    FAILED = "FAILED"  # could not be started (flow not found, token refused, Hilos down)
    UNKNOWN = "UNKNOWN"  # sent, no answer: may have started; never resent automatically


class RunSource(StrEnum):
    API = "API"
    QUEUE = "QUEUE"


def utc_now() -> datetime:
    return datetime.now(UTC)


class ExecutionRecord(BaseModel):
    """One run as stored and as shown to callers (the Hilos token is never part of it)."""

    run_id: UUID = Field(default_factory=uuid4)
    flow_id: UUID
    source: RunSource
    status: RunStatus
    num_contacts: int
    idempotency_key: str | None = None
    hilos_execution_id: UUID | None = None
    hilos_status: str | None = None
    attempts: int = 0
    last_error: str | None = None
    parent_id: UUID | None = None
    chunk_index: int | None = None
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)


class RunPage(BaseModel):
    items: list[ExecutionRecord]
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` to get the next page.")


class ExecutionStore:
    """Small data-access class over the executions table (low-level client: cheaper cold start)."""

    def __init__(self, client: Any, table_name: str, ttl_days: int) -> None:
        self._client = client
        self._table = table_name
        self._ttl = timedelta(days=ttl_days)

    def put(self, record: ExecutionRecord) -> None:
        item = _to_item(record)
        item["expires_at"] = {"N": str(int((record.created_at + self._ttl).timestamp()))}
        if record.parent_id is None:
            item["listed_flow_id"] = item["flow_id"]
        self._call("put_item", TableName=self._table, Item=item)

    def get(self, run_id: UUID) -> ExecutionRecord | None:
        answer = self._call("get_item", TableName=self._table, Key={"run_id": {"S": str(run_id)}}, ConsistentRead=True)
        return _from_item(answer["Item"]) if "Item" in answer else None

    def list_for_flow(self, flow_id: UUID, *, limit: int, cursor: str | None) -> RunPage:
        query: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": FLOW_INDEX_NAME,
            "KeyConditionExpression": "listed_flow_id = :flow",
            "ExpressionAttributeValues": {":flow": {"S": str(flow_id)}},
            "ScanIndexForward": False,  # newest first
            "Limit": limit,
        }
        if cursor:
            query["ExclusiveStartKey"] = _decode_cursor(cursor, flow_id)
        answer = self._call("query", **query)
        last_key = answer.get("LastEvaluatedKey")
        return RunPage(
            items=[_from_item(item) for item in answer.get("Items", [])],
            next_cursor=_encode_cursor(last_key) if last_key else None,
        )

    def _call(self, operation: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._client, operation)(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ValidationException" and "ExclusiveStartKey" in kwargs:
                raise InvalidRequestError(
                    "cursor is not valid", details=[{"field": "query.cursor", "reason": "unknown cursor"}]
                ) from None
            raise DependencyUnavailableError(f"DynamoDB {operation} failed ({code})") from exc
        except BotoCoreError as exc:
            raise DependencyUnavailableError(f"DynamoDB {operation} failed ({type(exc).__name__})") from exc


# Items are flat maps of strings and numbers: mapping them by hand is a few lines and keeps
# boto3's resource layer (and its cold-start cost) out of the functions.
def _to_item(record: ExecutionRecord) -> dict[str, dict[str, str]]:
    item: dict[str, dict[str, str]] = {}
    for name, value in record.model_dump(mode="json", exclude_none=True).items():
        item[name] = {"N": str(value)} if isinstance(value, int) else {"S": str(value)}
    return item


def _from_item(item: dict[str, dict[str, str]]) -> ExecutionRecord:
    return ExecutionRecord.model_validate(
        {name: next(iter(value.values())) for name, value in item.items() if name in ExecutionRecord.model_fields}
    )


def _encode_cursor(key: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, flow_id: UUID) -> dict[str, Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        valid = isinstance(key, dict) and key.get("listed_flow_id") == {"S": str(flow_id)}
    except (ValueError, binascii.Error, UnicodeDecodeError):
        valid = False
    if not valid:
        raise InvalidRequestError(
            "cursor is not valid for this flow",
            details=[{"field": "query.cursor", "reason": "not a cursor returned by this listing"}],
        )
    return key
