"""Putting queued runs on the runs queue (bulk API and CLI) and delaying a record's redelivery (worker).

``QueueSender.send`` uses SendMessageBatch with at most 10 entries and 256 KiB per call, and resends
the entries SQS reports as failed, a bounded number of times. Entries failing for the sender's own
fault (a message too large, ...) are not resent. A message may reach the queue twice (an ambiguous
network failure, a repeated bulk submit): the worker's idempotency key makes that harmless.
"""

import time
from collections.abc import Callable, Sequence
from typing import Any

from hilos_runner.chunking import SQS_MAX_BATCH_BYTES, SQS_MAX_BATCH_ENTRIES, pack
from hilos_runner.observability import logger

SEND_ATTEMPTS = 3
_BACKOFF_SECONDS = 0.2


class QueueSender:
    def __init__(self, client: Any, queue_url: str, *, attempts: int = SEND_ATTEMPTS) -> None:
        self._client = client
        self._queue_url = queue_url
        self._attempts = attempts
        # The SQS message id of every body sent, by its index: a queued run's id derives from it (the CLI says
        # which runs to follow).
        self.message_ids: dict[int, str] = {}

    def send(
        self, bodies: Sequence[str], on_sent: Callable[[int], None] | None = None, *, delay_seconds: int = 0
    ) -> dict[int, str]:
        """Send every body (held back ``delay_seconds`` by SQS, at most 900); returns ``{index: reason}`` for those
        that could not be queued.

        ``on_sent(n)`` is called as messages are accepted (progress bars)."""
        sizes = [len(body.encode()) for body in bodies]
        failed: dict[int, str] = {}
        for batch in pack(sizes, max_items=SQS_MAX_BATCH_ENTRIES, max_bytes=SQS_MAX_BATCH_BYTES):
            failed.update(self._send_batch({index: bodies[index] for index in batch}, on_sent, delay_seconds))
        return failed

    def _send_batch(
        self, pending: dict[int, str], on_sent: Callable[[int], None] | None, delay_seconds: int
    ) -> dict[int, str]:
        from botocore.exceptions import BotoCoreError, ClientError

        permanent: dict[int, str] = {}  # SQS blamed the message itself: resending cannot help
        transient: dict[int, str] = {}
        for attempt in range(self._attempts):
            if attempt:
                time.sleep(_BACKOFF_SECONDS * 2 ** (attempt - 1))
            entries = [
                {"Id": str(index), "MessageBody": body, **({"DelaySeconds": delay_seconds} if delay_seconds else {})}
                for index, body in pending.items()
            ]
            try:
                answer = self._client.send_message_batch(QueueUrl=self._queue_url, Entries=entries)
            except (ClientError, BotoCoreError) as exc:
                # botocore already retried throttling and connection errors; try the batch again.
                reason = _client_error_reason(exc)
                transient = dict.fromkeys(pending, reason)
                logger.warning("SendMessageBatch failed", extra={"reason": reason, "attempt": attempt + 1})
                continue
            for entry in answer.get("Successful", []):
                if "MessageId" in entry:  # SQS always names it; some fakes in tests do not
                    self.message_ids[int(entry["Id"])] = entry["MessageId"]
            if on_sent and answer.get("Successful"):
                on_sent(len(answer["Successful"]))
            transient = {}
            for entry in answer.get("Failed", []):
                index = int(entry["Id"])
                reason = f"{entry.get('Code', 'error')}: {entry.get('Message', '')}".strip()
                (permanent if entry.get("SenderFault") else transient)[index] = reason
            if not transient:
                break
            pending = {index: pending[index] for index in transient}
        return {**permanent, **transient}

    def delay(self, receipt_handle: str, seconds: int, queue_url: str | None = None) -> bool:
        """Make a received message visible again in ``seconds`` (ChangeMessageVisibility). Best effort:
        when it fails, the message still comes back after the queue's visibility timeout."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.change_message_visibility(
                QueueUrl=queue_url or self._queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=seconds
            )
        except (ClientError, BotoCoreError) as exc:
            logger.warning("could not change the message's visibility", extra={"reason": _client_error_reason(exc)})
            return False
        return True


def _client_error_reason(exc: Exception) -> str:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code")
    return code or type(exc).__name__
