"""Execution records in DynamoDB: what happened to every run, looked up by id or by flow.

Table layout (template.yaml ``ExecutionsTable``):
- key ``run_id``;
- sparse GSI ``by-flow`` (``listed_flow_id`` + ``created_at``): only top-level runs carry
  ``listed_flow_id``, so "runs of flow X, newest first" lists what callers started, not the
  chunks of a bulk run (those hang off their parent via ``parent_id``);
- sparse GSI ``sync-pending`` (``sync_pending`` + ``next_sync_at``): only records the status sync still
  has to visit carry ``sync_pending`` (runs Hilos accepted and that have not finished, finished runs
  whose completion event is not yet published, and runs whose answer was lost, to reconcile), so the
  sync finds its work oldest-due first without a scan, and a record leaves the index by being written
  without the attribute. The key is spread over ``SYNC_SHARDS`` values (``PENDING#0``...), read in turn,
  so no one partition carries every pending run;
- TTL attribute ``expires_at`` (epoch seconds).

Beside each run's record, the body sent to Hilos is kept (items ``request#<run_id>#<part>``, zlib, in parts
under DynamoDB's item limit, a short TTL): a run whose answer was lost and that Hilos shows never started
can be sent again exactly as it was. Once a run has finished, its contacts' outcomes as Hilos listed them are
kept the same way (items ``contacts#<run_id>#<part>``, the record's TTL), so reading them again costs Hilos
nothing; and a run's ``has_priority`` and ``flow_execution_variables``, for a retry of its contacts (items
``options#<run_id>#<part>``, the record's TTL: they may be larger than an item). These items carry no index
attribute, so no listing ever sees them.
"""

import time
import zlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from hilos_runner.cursors import decode_cursor, encode_cursor
from hilos_runner.errors import DependencyUnavailableError, InvalidRequestError
from hilos_runner.execution_records import ExecutionRecord, RunPage, RunStatus, iso_utc, utc_now

FLOW_INDEX_NAME = "by-flow"
SYNC_INDEX_NAME = "sync-pending"
# Partition key values of the sync index: a record's shard is fixed by its run id. One partition takes
# ~1,000 writes/s; four keep every pending write and each pass's reads far from that at any rate Hilos
# accepts runs from one stack (README, "Scale").
SYNC_SHARDS = 4
_SYNC_PENDING = "PENDING#{shard}"
_REQUEST_KEY = "request#{run_id}#{part}"
_CONTACTS_KEY = "contacts#{run_id}#{part}"
_OPTIONS_KEY = "options#{run_id}#{part}"
# DynamoDB refuses items over 400 KB (names included): a kept body is stored in parts of this size.
_PART_BYTES = 350_000
_CURSOR_KEY_ATTRIBUTES = {"run_id", "listed_flow_id", "created_at"}
# DynamoDB's per-call limits for BatchWriteItem and BatchGetItem.
_BATCH_WRITE_ITEMS = 25
_BATCH_GET_KEYS = 100
_BATCH_ATTEMPTS = 5
_BATCH_BACKOFF_SECONDS = 0.05


class ExecutionStore:
    """Small data-access class over the executions table (low-level client: cheaper cold start)."""

    def __init__(self, client: Any, table_name: str, ttl_days: int) -> None:
        # The low-level client's attribute values, marshalled by boto3's own (de)serialiser.
        from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

        self._client = client
        self._table = table_name
        self._ttl = timedelta(days=ttl_days)
        self._attribute = TypeSerializer().serialize
        self._value = TypeDeserializer().deserialize

    def put(self, record: ExecutionRecord, *, options: bytes | None = None) -> None:
        """Write ``record``; with ``options`` (a run's has_priority and flow_execution_variables, JSON), those too,
        kept beside it for its lifetime so that a retry of its contacts runs as it did."""
        if options is None:
            self._call("put_item", TableName=self._table, Item=self._item(record))
            return
        self._write_batches([self._item(record), *self._options_items(record, options)])

    def put_with_request(
        self, record: ExecutionRecord, body: bytes, keep: timedelta, *, options: bytes | None = None
    ) -> None:
        """Write ``record`` and the body about to be sent to Hilos for it (kept for ``keep``), in one call; with
        ``options``, those too (see ``put``)."""
        items = _blob_items(_REQUEST_KEY, record.run_id, body, utc_now() + keep)
        kept = self._options_items(record, options) if options is not None else []
        self._write_batches([self._item(record), *items, *kept])

    def run_options(self, run_id: UUID) -> bytes | None:
        """The options kept with ``put(..., options=)``; None for a run recorded without them."""
        return self._blob(_OPTIONS_KEY, run_id)

    def _options_items(self, record: ExecutionRecord, options: bytes) -> list[dict[str, Any]]:
        # Beside the record, not in it: flow_execution_variables may be larger than a DynamoDB item.
        return _blob_items(_OPTIONS_KEY, record.run_id, options, record.created_at + self._ttl)

    def request_body(self, run_id: UUID) -> bytes | None:
        """The body last sent to Hilos for ``run_id``; None when it was never kept or has expired."""
        return self._blob(_REQUEST_KEY, run_id)

    def put_contact_outcomes(self, record: ExecutionRecord, data: bytes) -> None:
        """Keep a finished run's contact outcomes (``data``, JSON) beside its record, for the record's lifetime."""
        self._write_batches(_blob_items(_CONTACTS_KEY, record.run_id, data, record.created_at + self._ttl))

    def contact_outcomes(self, run_id: UUID) -> bytes | None:
        """A finished run's kept contact outcomes; None when they were not kept (yet) or have expired."""
        return self._blob(_CONTACTS_KEY, run_id)

    def _blob(self, key: str, run_id: UUID) -> bytes | None:
        parts: list[bytes] = []
        count = 1
        while len(parts) < count:  # one GetItem a part: nearly every body is one part
            item = self._call(
                "get_item",
                TableName=self._table,
                Key={"run_id": {"S": key.format(run_id=run_id, part=len(parts))}},
                ConsistentRead=True,
            ).get("Item")
            if item is None or int(item["expires_at"]["N"]) < time.time():
                return None  # TTL deletes expired items within days, not at once
            count = int(item["parts"]["N"])
            parts.append(item["body"]["B"])
        return zlib.decompress(b"".join(parts))

    def replace_if_status(self, record: ExecutionRecord, expected: RunStatus) -> bool:
        """Write ``record`` only if the stored one still has status ``expected`` (optimistic concurrency:
        a second delivery of the same message may have moved it on meanwhile). True if written."""
        return self._put_if(record, "#status = :status", {"#status": "status"}, {":status": {"S": expected.value}})

    def replace_if_unchanged(self, record: ExecutionRecord, seen: ExecutionRecord) -> bool:
        """Write ``record`` only if the stored one is still ``seen`` (same ``updated_at``: every writer
        sets it), so two status syncs of one run, or a sync and the worker, never undo each other's
        work and only one of them moves a run to a terminal state. True if written."""
        return self._put_if(record, "updated_at = :seen", {}, {":seen": {"S": iso_utc(seen.updated_at)}})

    def _put_if(self, record: ExecutionRecord, condition: str, names: dict[str, str], values: dict[str, Any]) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.put_item(
                TableName=self._table,
                Item=self._item(record),
                ConditionExpression=condition,
                **({"ExpressionAttributeNames": names} if names else {}),
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise DependencyUnavailableError(f"DynamoDB put_item failed ({exc.response['Error'].get('Code')})") from exc
        except BotoCoreError as exc:
            raise DependencyUnavailableError(f"DynamoDB put_item failed ({type(exc).__name__})") from exc
        return True

    def put_many(self, records: Sequence[ExecutionRecord]) -> None:
        """Write many records with BatchWriteItem (25 per call); unprocessed items are retried, bounded."""
        self._write_batches([self._item(record) for record in records])

    def _write_batches(self, items: Sequence[dict[str, Any]]) -> None:
        for start in range(0, len(items), _BATCH_WRITE_ITEMS):
            batch = items[start : start + _BATCH_WRITE_ITEMS]
            pending: dict[str, Any] = {self._table: [{"PutRequest": {"Item": item}} for item in batch]}
            for attempt in range(_BATCH_ATTEMPTS):
                pending = self._call("batch_write_item", RequestItems=pending).get("UnprocessedItems") or {}
                if not pending:
                    break
                time.sleep(_BATCH_BACKOFF_SECONDS * 2**attempt)  # DynamoDB throttled part of the batch
            if pending:
                raise DependencyUnavailableError("DynamoDB batch_write_item left items unprocessed (throttled)")

    def get(self, run_id: UUID) -> ExecutionRecord | None:
        answer = self._call("get_item", TableName=self._table, Key={"run_id": {"S": str(run_id)}}, ConsistentRead=True)
        return self._record(answer["Item"]) if "Item" in answer else None

    def get_many(self, run_ids: Sequence[UUID]) -> dict[UUID, ExecutionRecord]:
        """The records that exist among ``run_ids`` (BatchGetItem, 100 keys per call, consistent reads)."""
        items = self._get_items([str(run_id) for run_id in run_ids])
        return {UUID(key): self._record(item) for key, item in items.items()}

    def _get_items(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(keys), _BATCH_GET_KEYS):
            batch = [{"run_id": {"S": key}} for key in keys[start : start + _BATCH_GET_KEYS]]
            pending: dict[str, Any] = {self._table: {"Keys": batch, "ConsistentRead": True}}
            for attempt in range(_BATCH_ATTEMPTS):
                answer = self._call("batch_get_item", RequestItems=pending)
                for item in answer.get("Responses", {}).get(self._table, []):
                    found[item["run_id"]["S"]] = item
                pending = answer.get("UnprocessedKeys") or {}
                if not pending:
                    break
                time.sleep(_BATCH_BACKOFF_SECONDS * 2**attempt)
            if pending:
                raise DependencyUnavailableError("DynamoDB batch_get_item left keys unprocessed (throttled)")
        return found

    def _item(self, record: ExecutionRecord) -> dict[str, Any]:
        fields = record.model_dump(mode="json", exclude_none=True, exclude={"contacts_url"})
        item = {name: self._attribute(value) for name, value in fields.items()}
        item["expires_at"] = {"N": str(int((record.created_at + self._ttl).timestamp()))}
        if record.parent_id is None:
            item["listed_flow_id"] = item["flow_id"]
        if record.contacts_digest is not None:
            item["contacts_digest"] = {"S": record.contacts_digest}
        if record.contact_ids:
            item["contact_ids"] = {"SS": record.contact_ids}
        if record.awaits_sync:
            item["sync_pending"] = {"S": _SYNC_PENDING.format(shard=record.run_id.int % SYNC_SHARDS)}
            item["next_sync_at"] = {"S": iso_utc(record.next_sync_at or record.updated_at)}
        else:
            item.pop("next_sync_at", None)
        return item

    def _record(self, item: dict[str, Any]) -> ExecutionRecord:
        fields = {name: self._value(value) for name, value in item.items() if name in ExecutionRecord.model_fields}
        if "contact_ids" in fields:  # a string set: in a stable order
            fields["contact_ids"] = sorted(fields["contact_ids"])
        return ExecutionRecord.model_validate(fields)

    def due_for_sync(self, now: datetime, *, limit: int) -> list[ExecutionRecord]:
        """Up to ``limit`` records the status sync should visit by ``now``, longest overdue first (each shard
        read in turn, oldest due first, then merged)."""
        records: list[ExecutionRecord] = []
        for shard in range(SYNC_SHARDS):
            records += self._due_in_shard(shard, now, limit)
        records.sort(key=lambda record: record.next_sync_at or record.updated_at)
        return records[:limit]

    def _due_in_shard(self, shard: int, now: datetime, limit: int) -> list[ExecutionRecord]:
        records: list[ExecutionRecord] = []
        query: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": SYNC_INDEX_NAME,
            "KeyConditionExpression": "sync_pending = :pending AND next_sync_at <= :now",
            "ExpressionAttributeValues": {
                ":pending": {"S": _SYNC_PENDING.format(shard=shard)},
                ":now": {"S": iso_utc(now)},
            },
        }
        while len(records) < limit:
            answer = self._call("query", **query, Limit=limit - len(records))
            records.extend(self._record(item) for item in answer.get("Items", []))
            if "LastEvaluatedKey" not in answer:
                break
            query["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        return records

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
            items=[self._record(item) for item in answer.get("Items", [])],
            next_cursor=encode_cursor(last_key) if last_key else None,
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


def _blob_items(key: str, run_id: UUID, data: bytes, expires: datetime) -> list[dict[str, Any]]:
    """``data`` compressed, in items of at most _PART_BYTES keyed ``key`` (``#0``, ``#1``...), expiring then."""
    packed = zlib.compress(data)
    parts = [packed[start : start + _PART_BYTES] for start in range(0, len(packed), _PART_BYTES)] or [b""]
    expires_at = str(int(expires.timestamp()))
    return [
        {
            "run_id": {"S": key.format(run_id=run_id, part=index)},
            "body": {"B": part},
            "parts": {"N": str(len(parts))},
            "expires_at": {"N": expires_at},
        }
        for index, part in enumerate(parts)
    ]


def _decode_cursor(cursor: str, flow_id: UUID) -> dict[str, Any]:
    # Exactly the index's key, as this listing wrote it: anything else is forged or stale.
    return decode_cursor(
        cursor,
        lambda key: (
            set(key) == _CURSOR_KEY_ATTRIBUTES
            and all(isinstance(value, dict) and set(value) == {"S"} for value in key.values())
            and key["listed_flow_id"] == {"S": str(flow_id)}
        ),
        "this flow",
    )
