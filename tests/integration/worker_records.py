"""What the bulk_worker tests read and arrange: a run's record, the run id of a queued message, the check that a message
was acknowledged and recorded REJECTED, Hilos answers by status, and the visibility changes the worker makes."""

import uuid
from typing import Any

from tests.fake_hilos import Answer, reply
from tests.helpers import FLOW_ID, contact


def record_of(run_id: str | uuid.UUID) -> dict[str, Any] | None:
    from hilos_runner import factories

    record = factories.execution_store().get(uuid.UUID(str(run_id)))
    return record.model_dump(mode="json") if record else None


def message_run_id(message_id: str, part: int | None = None) -> uuid.UUID:
    """The record id the worker gives a queued message (or part of a split one)."""
    from hilos_runner.worker import message_run_id

    return message_run_id(message_id, part)


def acknowledged_and_rejected(answer: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    """The record of ``message``, which the worker's ``answer`` acknowledged (no batch item failure) and which is
    recorded REJECTED."""
    assert answer == {"batchItemFailures": []}
    record = record_of(message_run_id(message["messageId"]))
    assert record is not None
    assert record["status"] == "REJECTED"
    return record


def status(code: int, headers: dict[str, str] | None = None) -> Answer:
    return reply(code, {"detail": f"HTTP {code}"}, headers=headers)


def one_contact_run(phone: str, **overrides: Any) -> dict[str, Any]:
    return {"flow_id": FLOW_ID, "contact_list": [contact(phone=phone)], **overrides}


def visibility_changes() -> list[dict[str, Any]]:
    """Every ChangeMessageVisibility the worker makes from now on."""
    from hilos_runner import factories

    calls: list[dict[str, Any]] = []
    factories.aws_client("sqs").meta.events.register(
        "provide-client-params.sqs.ChangeMessageVisibility", lambda params, **_: calls.append(dict(params))
    )
    return calls
