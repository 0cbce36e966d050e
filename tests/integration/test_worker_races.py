"""Races between two deliveries of the same message (SQS delivers at least once)."""

from typing import Any

import pytest

from local.events import sqs_record
from tests.fake_hilos import FakeHilos, reply
from tests.helpers import call_bulk_worker, queued_run


@pytest.mark.usefixtures("worker")
def test_a_late_retry_note_never_overwrites_a_run_another_delivery_submitted(
    hilos: FakeHilos, monkeypatch: pytest.MonkeyPatch
):
    from hilos_runner import factories
    from hilos_runner.execution_records import RunStatus

    hilos.answer_runs(reply(503))
    store = factories.execution_store()
    read_record = store.get

    def read_then_lose_the_race(run_id: Any) -> Any:
        stale = read_record(run_id)  # this delivery's view: FAILED after its 503
        if stale is not None:
            # Meanwhile the other delivery of the same message started the flow and recorded it.
            store.put(stale.model_copy(update={"status": RunStatus.SUBMITTED, "last_error": None}))
        return stale

    monkeypatch.setattr(store, "get", read_then_lose_the_race)
    record = sqs_record(queued_run())

    answer = call_bulk_worker([record])

    assert [failure["itemIdentifier"] for failure in answer["batchItemFailures"]] == [record["messageId"]]
    monkeypatch.setattr(store, "get", read_record)
    (run,) = [r for r in _all_records() if r["status"]["S"] != "QUEUED"] or [None]
    assert run is not None, "the retry note overwrote the SUBMITTED run"
    assert run["status"]["S"] == "SUBMITTED"


def _all_records() -> list[dict[str, Any]]:
    from hilos_runner import factories
    from hilos_runner.settings import get_settings

    items = factories.aws_client("dynamodb").scan(TableName=get_settings().executions_table_name)["Items"]
    return [item for item in items if "status" in item]  # records, not the request bodies kept beside them
