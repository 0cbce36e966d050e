"""Splitting contacts into chunks and messages, and messages into SQS batches: one packer for all."""

import json
import random
import uuid

import pytest

from hilos_runner.chunking import SQS_MAX_MESSAGE_BYTES, chunk_contacts, chunk_messages, chunk_run_id, pack
from hilos_runner.messages import BulkRunRequest
from hilos_runner.models import Contact
from tests.helpers import FLOW_ID, run_body


def request(n: int, **extra: object) -> BulkRunRequest:
    return BulkRunRequest.model_validate({"contact_list": run_body(n)["contact_list"], **extra})


class TestPack:
    def test_by_count_only(self):
        assert pack([0] * 7, max_items=3) == [range(0, 3), range(3, 6), range(6, 7)]

    def test_nothing_to_pack(self):
        assert pack([], max_items=3) == []

    def test_by_bytes_counting_separators(self):
        # 4 + 1 + 4 = 9 fits in 9; a third item would need 14.
        assert pack([4, 4, 4, 9], max_items=10, max_bytes=9, separator_bytes=1) == [
            range(0, 2),
            range(2, 3),
            range(3, 4),
        ]

    def test_an_item_larger_than_the_budget_is_an_error_not_a_silent_overflow(self):
        with pytest.raises(ValueError, match="item 1 alone is 11 bytes"):
            pack([1, 11], max_items=5, max_bytes=10)

    def test_random_sizes_are_partitioned_in_order_within_both_limits(self):
        rng = random.Random(7)
        sizes = [rng.randint(1, 300) for _ in range(2000)]
        parts = pack(sizes, max_items=17, max_bytes=1000, separator_bytes=1)
        assert [i for part in parts for i in part] == list(range(len(sizes)))
        for part in parts:
            assert 1 <= len(part) <= 17
            assert sum(sizes[i] for i in part) + len(part) - 1 <= 1000


class TestChunkContacts:
    def test_a_message_larger_than_the_chunk_size_becomes_several_calls(self):
        contacts = request(600).contact_list
        chunks = chunk_contacts(contacts, 250)
        assert [len(c) for c in chunks] == [250, 250, 100]
        assert [c for chunk in chunks for c in chunk] == contacts


class TestChunkMessages:
    def test_bulk_chunks_reference_their_bulk_run_and_carry_derived_ids_and_keys(self):
        bulk_id = uuid.uuid4()
        messages = chunk_messages(uuid.UUID(FLOW_ID), request(600), chunk_size=250, bulk_id=bulk_id)

        assert [len(m.contact_list) for m in messages] == [250, 250, 100]
        for index, message in enumerate(messages):
            assert message.bulk_id == bulk_id
            assert message.chunk_index == index
            assert message.run_id == chunk_run_id(bulk_id, index)
            assert message.idempotency_key == f"bulk-{bulk_id}-{index}"
        assert len({m.run_id for m in messages}) == 3
        assert chunk_run_id(bulk_id, 1) == chunk_run_id(bulk_id, 1)  # derivable by the status route

    def test_without_a_bulk_run_messages_carry_only_what_was_asked(self):
        plain = chunk_messages(uuid.UUID(FLOW_ID), request(3), chunk_size=2)
        keyed = chunk_messages(uuid.UUID(FLOW_ID), request(3), chunk_size=2, idempotency_key_prefix="crm-7")

        assert [json.loads(m.body()).keys() for m in plain] == [{"flow_id", "contact_list", "has_priority"}] * 2
        assert [m.idempotency_key for m in keyed] == ["crm-7-0", "crm-7-1"]

    def test_what_the_caller_sent_is_what_the_message_carries(self):
        contacts = [{"phone": "+5215500000001", "last_name": None}, {"phone": "+5215500000002", "source": "crm"}]
        bulk = BulkRunRequest.model_validate(
            {"contact_list": contacts, "has_priority": True, "flow_execution_variables": None}
        )

        (message,) = chunk_messages(uuid.UUID(FLOW_ID), bulk, chunk_size=10)

        body = json.loads(message.body())
        assert body["contact_list"] == contacts  # explicit null kept, defaults not added
        assert body["has_priority"] is True
        assert "flow_execution_variables" in body
        assert body["flow_execution_variables"] is None

    @pytest.mark.parametrize("limit", [SQS_MAX_MESSAGE_BYTES, 20_000, 6_000])
    def test_every_message_fits_the_byte_limit_and_none_is_lost(self, limit: int):
        rng = random.Random(limit)
        contacts = [
            Contact(phone=f"+52155{i:08d}", meta={"notes": "é" * rng.randint(0, 1200)}) for i in range(400)
        ]  # multi-byte text: the limit is in bytes, not characters
        bulk = BulkRunRequest(contact_list=contacts, flow_execution_variables={"v": "x" * 200})

        messages = chunk_messages(
            uuid.UUID(FLOW_ID), bulk, chunk_size=250, bulk_id=uuid.uuid4(), max_message_bytes=limit
        )

        assert [c for m in messages for c in m.contact_list] == contacts
        assert all(len(m.body().encode()) <= limit for m in messages)
        assert all(len(m.contact_list) <= 250 for m in messages)
