"""A lease: one holder at a time for a named job, for a bounded time, kept as an item of the executions table.

The status sync takes the lease ``status-sync`` for the rest of its invocation before a pass and gives it
back after, so two overlapping ticks never read the same runs from Hilos twice. This replaces reserved
concurrency (`ReservedConcurrentExecutions: 1`), which fails the deploy in accounts whose concurrency quota
leaves less than the 10 unreserved executions Lambda insists on.

Taking it is one conditional PutItem (the item is absent, or its ``lease_until`` has passed); giving it back
is one UpdateItem conditional on still being its holder. A holder that crashes or times out keeps the lease
only until ``lease_until``, its invocation's deadline, so the next tick after that takes it over.
The item's key is ``lease#<name>``: not a run id (those are UUIDs), in no index (it has none of their keys),
and removed by the table's TTL a day after it was last taken.
"""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import ClientError

KEY_PREFIX = "lease#"
STATUS_SYNC_LEASE = "status-sync"
_KEEP_ITEM_SECONDS = 86_400


class Lease:
    def __init__(self, dynamodb: Any, table_name: str, name: str, clock: Callable[[], float] = time.time) -> None:
        self._dynamodb = dynamodb
        self._table = table_name
        self._key = {"run_id": {"S": KEY_PREFIX + name}}
        self._clock = clock

    def acquire(self, holder: str, seconds: float) -> bool:
        """Take the lease for ``seconds`` unless someone else holds it; True if ``holder`` now holds it."""
        now = self._clock()
        until = now + seconds
        item = {
            **self._key,
            "lease_holder": {"S": holder},
            "lease_until": {"N": f"{until:.3f}"},
            "expires_at": {"N": str(int(until) + _KEEP_ITEM_SECONDS)},
        }
        try:
            self._dynamodb.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression="attribute_not_exists(run_id) OR lease_until < :now",
                ExpressionAttributeValues={":now": {"N": f"{now:.3f}"}},
            )
        except ClientError as error:
            if _condition_failed(error):
                return False
            raise
        return True

    def release(self, holder: str) -> None:
        """Give the lease back at once, if ``holder`` still holds it (after expiry another one may)."""
        try:
            self._dynamodb.update_item(
                TableName=self._table,
                Key=self._key,
                UpdateExpression="SET lease_until = :released",
                ConditionExpression="lease_holder = :holder",
                ExpressionAttributeValues={":released": {"N": "0"}, ":holder": {"S": holder}},
            )
        except ClientError as error:
            if not _condition_failed(error):
                raise

    @contextmanager
    def held(self, holder: str, seconds: float) -> Iterator[bool]:
        """``with lease.held(request_id, seconds) as acquired:`` the body runs either way; released after."""
        acquired = self.acquire(holder, seconds)
        try:
            yield acquired
        finally:
            if acquired:
                self.release(holder)


def _condition_failed(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def status_sync_lease() -> Lease:
    """The status sync's lease, on the process's DynamoDB client (cheap: nothing is created here)."""
    from hilos_runner.factories import aws_client
    from hilos_runner.settings import get_settings

    return Lease(aws_client("dynamodb"), get_settings().executions_table_name, STATUS_SYNC_LEASE)
