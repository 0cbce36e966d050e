"""Splitting a contact list into queued messages, and messages into SQS send batches.

One greedy packer serves every split: contacts into chunks (at most ``chunk_size`` contacts and
one SQS message's bytes), messages into SendMessageBatch calls (at most 10 entries and the batch's
bytes), and a large queued message into Hilos calls (at most ``chunk_size`` contacts). The bulk API
and the CLI build their messages with ``chunk_messages``, the worker splits with ``chunk_contacts``.
"""

from collections.abc import Sequence
from typing import Any
from uuid import UUID, uuid5

from hilos_runner.messages import BulkRunRequest, QueuedRun
from hilos_runner.models import Contact

# SQS accepts up to 256 KiB per message and per SendMessageBatch call on every queue (newer queues may
# be raised to 1 MiB). Keeping to 256 KiB also keeps a batch of 10 within Lambda's 6 MB invoke payload.
SQS_MAX_MESSAGE_BYTES = 262_144
SQS_MAX_BATCH_BYTES = 262_144
SQS_MAX_BATCH_ENTRIES = 10
# Room for the fields that differ between chunks of one bulk run (chunk index, ids, key).
_ENVELOPE_SLACK_BYTES = 256


def pack(
    sizes: Sequence[int], *, max_items: int, max_bytes: int | None = None, separator_bytes: int = 0
) -> list[range]:
    """Consecutive index ranges of ``sizes``, each with at most ``max_items`` items whose sizes (plus a
    separator between two items) add up to at most ``max_bytes``. Order is kept."""
    if max_items < 1:
        raise ValueError("max_items must be at least 1")
    ranges: list[range] = []
    start, used = 0, 0
    for index, size in enumerate(sizes):
        if max_bytes is not None and size > max_bytes:
            raise ValueError(f"item {index} alone is {size} bytes, more than {max_bytes}")
        count = index - start
        grown = used + size + (separator_bytes if count else 0)
        if count and (count == max_items or (max_bytes is not None and grown > max_bytes)):
            ranges.append(range(start, index))
            start, grown = index, size
        used = grown
    if start < len(sizes):
        ranges.append(range(start, len(sizes)))
    return ranges


def chunk_contacts(contacts: Sequence[Contact], chunk_size: int) -> list[list[Contact]]:
    """``contacts`` in runs of at most ``chunk_size`` (one Hilos call each)."""
    return [list(contacts[part.start : part.stop]) for part in pack([0] * len(contacts), max_items=chunk_size)]


def chunk_run_id(bulk_id: UUID, index: int) -> UUID:
    """The execution record id of a bulk run's chunk: derived, so the parent finds its chunks."""
    return uuid5(bulk_id, f"chunk-{index}")


def chunk_messages(
    flow_id: UUID,
    request: BulkRunRequest,
    *,
    chunk_size: int,
    bulk_id: UUID | None = None,
    idempotency_key_prefix: str | None = None,
    max_message_bytes: int = SQS_MAX_MESSAGE_BYTES,
) -> list[QueuedRun]:
    """The queued messages for ``request``'s contacts: at most ``chunk_size`` contacts and
    ``max_message_bytes`` each. With ``bulk_id`` they reference the bulk run (chunk index and derived
    record id) and carry the key ``bulk-<bulk_id>-<index>``; otherwise ``<prefix>-<index>`` when a
    prefix is given, or no key (the worker then uses the SQS message id)."""
    contacts = request.contact_list
    options: dict[str, Any] = {"flow_id": flow_id, "has_priority": request.has_priority}
    if "flow_execution_variables" in request.model_fields_set:
        options["flow_execution_variables"] = request.flow_execution_variables
    if request.start_at is not None:
        options["start_at"] = request.start_at
    contact_sizes = [len(contact.model_dump_json(exclude_unset=True).encode()) for contact in contacts]
    # The message around its contact list: one contact's message minus that contact's JSON.
    one = QueuedRun(contact_list=[contacts[0]], **options, **_references(bulk_id, idempotency_key_prefix, 0))
    envelope = len(one.body().encode()) - contact_sizes[0] + _ENVELOPE_SLACK_BYTES
    parts = pack(contact_sizes, max_items=chunk_size, max_bytes=max_message_bytes - envelope, separator_bytes=1)
    return [
        QueuedRun(
            contact_list=list(contacts[part.start : part.stop]),
            **options,
            **_references(bulk_id, idempotency_key_prefix, index),
        )
        for index, part in enumerate(parts)
    ]


def _references(bulk_id: UUID | None, key_prefix: str | None, index: int) -> dict[str, Any]:
    if bulk_id is not None:
        return {
            "bulk_id": bulk_id,
            "chunk_index": index,
            "run_id": chunk_run_id(bulk_id, index),
            "idempotency_key": f"bulk-{bulk_id}-{index}",
        }
    if key_prefix is not None:
        return {"idempotency_key": f"{key_prefix}-{index}"}
    return {}
