"""An SQS poller that feeds a function the way Lambda's event source mapping does.

- Long-polls the queue and gathers up to the mapping's batch size, waiting at most its batching
  window once the first message is in (window 0: invoke with what one receive returned).
- Builds the SQS event from the real messages: messageId, receiptHandle, the real system
  attributes (ApproximateReceiveCount counts real deliveries) and message attributes.
- After the invocation deletes what succeeded. With ReportBatchItemFailures, the records named in
  ``batchItemFailures`` are left on the queue (an invalid answer fails the whole batch); without
  it, or when the function raises or times out, the whole batch is left. Left messages come back
  when their visibility timeout ends (or when the function changed it); SQS itself moves a message
  to the dead-letter queue after maxReceiveCount receives (RedrivePolicy).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from local.events import sqs_event, sqs_record
from local.functions import Invocation
from local.template import SqsEventSource

log = logging.getLogger("local.poller")

_SQS_MAX_MESSAGES_PER_RECEIVE = 10
# Short long-polls, so that a stop request is noticed within a second (the mapping uses 20 s).
_LONG_POLL_SECONDS = 1
_BACKOFF_AFTER_ERROR_SECONDS = 1.0
_STOP_GRACE_SECONDS = 5
# moto's ReceiveMessage is not atomic: two long polls woken together can both take one message, a
# double delivery real SQS makes rare. The pollers of one queue therefore receive one at a time.
_receive_locks: dict[str, threading.Lock] = {}
_receive_locks_guard = threading.Lock()


def _receive_lock(queue_url: str) -> threading.Lock:
    with _receive_locks_guard:
        return _receive_locks.setdefault(queue_url, threading.Lock())


class SqsPoller:
    """One polling loop in a background thread; several pollers may share a queue, like the mapping's."""

    def __init__(
        self,
        sqs_client: Any,
        source: SqsEventSource,
        invoke: Callable[[dict[str, Any]], Invocation],
        *,
        name: str = "sqs-poller",
    ) -> None:
        self._sqs = sqs_client
        self._source = source
        self._invoke = invoke
        self._stop = threading.Event()
        self._receiving = _receive_lock(source.queue_url)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        self._stop.set()

    def join(self) -> None:
        """Wait for the batch in hand (bounded: the execution environments are stopped next anyway)."""
        self._thread.join(timeout=_LONG_POLL_SECONDS + _STOP_GRACE_SECONDS)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                messages = self._receive_batch()
                if messages:
                    self.process(messages)
            except Exception:
                log.exception("queue  polling %s failed; retrying", self._source.queue_logical_id)
                self._stop.wait(_BACKOFF_AFTER_ERROR_SECONDS)

    def _receive_batch(self) -> list[dict[str, Any]]:
        source = self._source
        messages: list[dict[str, Any]] = []
        deadline = None
        while len(messages) < source.batch_size and not self._stop.is_set():
            wait = _LONG_POLL_SECONDS
            if deadline is not None:
                wait = int(min(_LONG_POLL_SECONDS, max(0.0, deadline - time.monotonic())))
            with self._receiving:
                answer = self._sqs.receive_message(
                    QueueUrl=source.queue_url,
                    MaxNumberOfMessages=min(_SQS_MAX_MESSAGES_PER_RECEIVE, source.batch_size - len(messages)),
                    WaitTimeSeconds=wait,
                    MessageSystemAttributeNames=["All"],
                    MessageAttributeNames=["All"],
                )
            received = answer.get("Messages", [])
            messages.extend(received)
            if not messages:
                return []  # nothing yet: back to the loop, which checks for a stop request
            if deadline is None:
                deadline = time.monotonic() + source.batching_window_seconds
            if time.monotonic() >= deadline or (not received and wait == 0):
                break
        return messages

    def process(self, messages: list[dict[str, Any]]) -> None:
        """Invoke the function with one batch and settle it like the event source mapping."""
        source = self._source
        records = [
            sqs_record(
                message["Body"],
                queue_arn=source.queue_arn,
                message_id=message["MessageId"],
                receipt_handle=message["ReceiptHandle"],
                attributes=message.get("Attributes", {}),
                message_attributes=message.get("MessageAttributes", {}),
            )
            for message in messages
        ]
        invocation = self._invoke(sqs_event(records))
        failed = self._failed_ids(invocation, [record["messageId"] for record in records])
        done = [message for message in messages if message["MessageId"] not in failed]
        for start in range(0, len(done), _SQS_MAX_MESSAGES_PER_RECEIVE):
            chunk = done[start : start + _SQS_MAX_MESSAGES_PER_RECEIVE]
            answer = self._sqs.delete_message_batch(
                QueueUrl=source.queue_url,
                Entries=[{"Id": str(index), "ReceiptHandle": m["ReceiptHandle"]} for index, m in enumerate(chunk)],
            )
            for failure in answer.get("Failed", []):
                log.warning("queue  could not delete a message: %s", failure.get("Message") or failure.get("Code"))
        counts = [f"{len(done)} done"] + ([f"{len(failed)} left for retry"] if failed else [])
        receives = sorted({m.get("Attributes", {}).get("ApproximateReceiveCount", "?") for m in messages})
        log.info(
            "queue  %s: batch of %d to %s: %s (receive count %s) %.0f ms",
            source.queue_logical_id,
            len(messages),
            source.function_logical_id,
            ", ".join(counts),
            "/".join(receives),
            invocation.duration_ms,
        )

    def _failed_ids(self, invocation: Invocation, message_ids: list[str]) -> set[str]:
        if not invocation.ok:
            log.error("queue  function error, the whole batch stays on the queue: %s", invocation.error)
            return set(message_ids)
        if not self._source.report_batch_item_failures:
            return set()  # any successful return acknowledges the whole batch
        # Lambda's rules: no answer, or an empty or null list, is complete success; a malformed list or
        # an identifier that is empty, null or not in the batch is complete failure.
        answer = invocation.payload
        failures = answer.get("batchItemFailures") if isinstance(answer, dict) else None
        if not failures:
            return set()
        identifiers = [item.get("itemIdentifier") if isinstance(item, dict) else None for item in failures]
        if not isinstance(failures, list) or any(identifier not in message_ids for identifier in identifiers):
            log.error("queue  invalid batchItemFailures %r: the whole batch fails", failures)
            return set(message_ids)
        return {str(identifier) for identifier in identifiers}
