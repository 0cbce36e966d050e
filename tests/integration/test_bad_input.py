"""Every bad input gets a clear 4xx and starts nothing (issue 12's table and tests/bad_inputs.py), in-process:

- through the API (runs and bulk runs): the status and error code, the field named, 0 Hilos calls, nothing
  recorded or queued, no traceback in the logs;
- through the queue: every message recorded REJECTED with the field in its reason, acknowledged on its first
  delivery (never redelivered, never in the DLQ), 0 Hilos calls, no traceback in the logs;
- duplicates dropped (and said so) or refused; ``?dry_run=true`` answers what would be sent and sends nothing;
  the size limit applies to the decoded body.
"""

import base64
import io
import json
import uuid
from typing import Any

import pytest

from local.events import LocalLambdaContext, http_api_event, sqs_record
from tests.bad_inputs import CASES, PHONE, QUEUE_ONLY, BadInput
from tests.fake_hilos import FakeHilos
from tests.helpers import (
    FLOW_ID,
    ApiAnswer,
    RunsQueue,
    call_bulk_worker,
    call_run_api,
    deliver,
    failed_ids,
    use_function_environment,
)

PATHS = {"runs": f"/flows/{FLOW_ID}/runs", "bulk": f"/flows/{FLOW_ID}/bulk-runs"}
API_CASES = [(case, route) for case in CASES for route in case.routes if route != "queue"]
QUEUE_CASES = [
    (case.name, case.message(), case.field.removeprefix("body.")) for case in CASES if "queue" in case.routes
]
QUEUE_CASES += [(name, text, field) for name, (text, field) in QUEUE_ONLY.items()]
NIL_FLOW = uuid.UUID(int=0)


def call_with(case: BadInput, route: str) -> ApiAnswer:
    if not case.base64:
        return call_run_api("POST", PATHS[route], case.body, headers=case.headers(), query=case.query)
    import run_api

    raw = case.body if isinstance(case.body, bytes) else case.body.encode()
    event = http_api_event("POST", PATHS[route], headers=case.headers(), query=case.query)
    event.update(body=base64.b64encode(raw).decode(), isBase64Encoded=True)
    answer = run_api.lambda_handler(event, LocalLambdaContext(function_name="run-api"))
    return ApiAnswer(answer["statusCode"], json.loads(answer["body"]), answer.get("headers", {}))


def stored_runs() -> list[Any]:
    from hilos_runner import factories

    store = factories.execution_store()
    return [
        run
        for flow in (uuid.UUID(FLOW_ID), NIL_FLOW)
        for run in store.list_for_flow(flow, limit=100, cursor=None).items
    ]


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize(("case", "route"), API_CASES, ids=[f"{route}: {case.name}" for case, route in API_CASES])
def test_the_api_answers_a_clear_4xx_and_starts_nothing(
    case: BadInput,
    route: str,
    hilos: FakeHilos,
    logs_never_show_the_token: io.StringIO,
    runs_queue: RunsQueue,
):
    answer = call_with(case, route)

    assert answer.status == case.status, answer.body
    assert answer.body["code"] == case.code
    fields = [detail["field"] for detail in answer.body["details"]]
    assert any(field.startswith(case.field) for field in fields), fields
    assert all(detail["reason"] and not detail["reason"].startswith("Value error") for detail in answer.body["details"])
    assert len(hilos.calls) == 0
    assert stored_runs() == []
    assert runs_queue.take_bodies() == []
    assert "Traceback" not in logs_never_show_the_token.getvalue()


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize(("name", "message", "field"), QUEUE_CASES, ids=[name for name, _, _ in QUEUE_CASES])
def test_a_queued_message_is_recorded_rejected_and_acknowledged_at_once(
    name: str, message: str, field: str, hilos: FakeHilos, logs_never_show_the_token: io.StringIO
):
    record = sqs_record(message, receive_count=1)

    answer = call_bulk_worker([record])

    assert failed_ids(answer) == []  # acknowledged: deleted on this first delivery
    (run,) = [run for run in stored_runs() if run.idempotency_key == f"sqs-{record['messageId']}"]
    assert run.status == "REJECTED"
    assert run.attempts == 1
    assert f": {field or 'body'}" in (run.last_error or ""), run.last_error
    assert len(hilos.calls) == 0
    assert "Traceback" not in logs_never_show_the_token.getvalue()


def test_every_bad_message_on_a_real_queue_is_gone_after_one_delivery(
    aws: Any, runs_queue: RunsQueue, hilos: FakeHilos, monkeypatch: pytest.MonkeyPatch
):
    sent = [
        runs_queue.sqs.send_message(QueueUrl=runs_queue.url, MessageBody=text)["MessageId"]
        for _, text, _ in QUEUE_CASES
    ]
    use_function_environment(aws, "BulkWorkerFunction", monkeypatch.setenv)

    delivered: list[str] = []
    while messages := deliver(runs_queue.sqs, runs_queue.url, runs_queue.arn)[0]:
        delivered += [message["MessageId"] for message in messages]

    assert sorted(delivered) == sorted(sent)  # each once: none came back
    assert runs_queue.take_bodies() == []
    assert runs_queue.take_bodies(dead=True) == []
    keys = {run.idempotency_key: run.status for run in stored_runs()}
    assert {keys.get(f"sqs-{message_id}") for message_id in sent} == {"REJECTED"}
    assert len(hilos.calls) == 0


# --- duplicates ------------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("aws")
class TestDuplicates:
    def test_the_same_phone_1000_times_reaches_hilos_once_and_the_answer_and_record_say_so(self, hilos: FakeHilos):
        spellings = [PHONE, "+52 1 55 1234 5678", "+52 (1) 55-1234-5678"]
        body = {"contact_list": [{"phone": spellings[i % 3], "first_name": f"n{i}"} for i in range(1000)]}

        answer = call_run_api("POST", PATHS["runs"], body)

        assert answer.status == 201
        assert json.loads(hilos.calls[0].request.body)["contact_list"] == [{"phone": PHONE, "first_name": "n0"}]
        removed = answer.body["run"]["duplicates_removed"]
        assert removed["count"] == 999
        assert removed["rows"][:2] == [
            {"field": "body.contact_list.1", "same_as": "body.contact_list.0"},
            {"field": "body.contact_list.2", "same_as": "body.contact_list.0"},
        ]
        record = call_run_api("GET", f"/runs/{answer.body['run']['run_id']}").body
        assert record["num_contacts"] == 1
        assert record["duplicates_removed"]["count"] == 999
        assert len(record["duplicates_removed"]["rows"]) == 100
        assert PHONE not in json.dumps(record["duplicates_removed"])

    def test_reject_lists_every_repeat(self, hilos: FakeHilos):
        body = {"contact_list": [{"phone": PHONE}, {"phone": "+5215500000001"}, {"phone": PHONE}, {"phone": PHONE}]}

        answer = call_run_api("POST", PATHS["runs"], body, query={"on_duplicate": "reject"})

        assert answer.status == 422
        assert [detail["field"] for detail in answer.body["details"]] == ["body.contact_list.2", "body.contact_list.3"]
        assert "body.contact_list.0" in answer.body["details"][0]["reason"]
        assert len(hilos.calls) == 0

    def test_a_bulk_submit_drops_repeats_across_chunks(self, runs_queue: RunsQueue):
        rows = ["phone"] + [f"+52155000{i % 400:05d}" for i in range(600)]  # 200 repeats, in the second and third chunk

        answer = call_run_api("POST", PATHS["bulk"], "\n".join(rows) + "\n", headers={"content-type": "text/csv"})

        assert answer.status == 202
        assert answer.body["num_contacts"] == 400
        assert answer.body["duplicates_removed"]["count"] == 200
        assert answer.body["duplicates_removed"]["rows"][0] == {"field": "body.row.402", "same_as": "body.row.2"}
        phones = [c["phone"] for body in runs_queue.take_bodies() for c in body["contact_list"]]
        assert sorted(phones) == sorted(set(rows[1:]))
        parent = call_run_api("GET", f"/runs/{answer.body['id']}").body
        assert parent["duplicates_removed"]["count"] == 200

    @pytest.mark.usefixtures("worker")
    def test_a_queued_message_drops_repeats_and_its_record_says_so(self, hilos: FakeHilos):
        message = {"flow_id": FLOW_ID, "contact_list": [{"phone": PHONE}, {"phone": "+52 1 55 1234 5678"}]}

        assert failed_ids(call_bulk_worker([sqs_record(message)])) == []

        assert json.loads(hilos.calls[0].request.body)["contact_list"] == [{"phone": PHONE}]
        (run,) = stored_runs()
        assert run.status == "SUBMITTED"
        assert run.duplicates_removed is not None
        assert run.duplicates_removed.model_dump() == {
            "count": 1,
            "rows": [{"field": "contact_list.1", "same_as": "contact_list.0"}],
        }


# --- dry runs, body size ---------------------------------------------------------------------------------------


def dry_run(num_contacts: int, contacts_to_send: int, **would: Any) -> dict[str, Any]:
    """A dry run's answer: what the request holds and what would be sent (``hilos_calls``, ``duplicates_removed``)."""
    return {"dry_run": True, "num_contacts": num_contacts, "contacts_to_send": contacts_to_send, **would}


@pytest.mark.usefixtures("aws")
class TestDryRun:
    def test_a_run_dry_run_answers_what_would_be_sent_and_sends_nothing(self, hilos: FakeHilos):
        body = {"contact_list": [{"phone": PHONE}, {"phone": "+52 1 55 1234 5678"}, {"phone": "+5215500000001"}]}

        answer = call_run_api("POST", PATHS["runs"], body, query={"dry_run": "true"})

        assert answer.status == 200
        duplicate = {"field": "body.contact_list.1", "same_as": "body.contact_list.0"}
        assert answer.body == dry_run(3, 2, hilos_calls=1, duplicates_removed={"count": 1, "rows": [duplicate]})
        assert len(hilos.calls) == 0
        assert stored_runs() == []

    def test_a_bulk_dry_run_counts_chunks_and_queues_nothing(self, runs_queue: RunsQueue):
        body = "phone\n" + "".join(f"+52155000{i:05d}\n" for i in range(600))

        answer = call_run_api(
            "POST", PATHS["bulk"], body, headers={"content-type": "text/csv"}, query={"dry_run": "true"}
        )

        assert answer.status == 200
        assert answer.body == dry_run(600, 600, hilos_calls=3, duplicates_removed=None)
        assert runs_queue.take_bodies() == []
        assert stored_runs() == []

    def test_a_dry_run_of_bad_input_is_the_same_422(self, hilos: FakeHilos):
        answer = call_run_api("POST", PATHS["runs"], {"contact_list": [{"phone": "abc"}]}, query={"dry_run": "true"})

        assert answer.status == 422
        assert [detail["field"] for detail in answer.body["details"]] == ["body.contact_list.0.phone"]


@pytest.mark.usefixtures("aws")
def test_the_size_limit_is_on_the_decoded_body_not_its_base64(hilos: FakeHilos):
    from hilos_runner.settings import get_settings

    limit = get_settings().max_body_bytes
    body = json.dumps({"contact_list": [{"phone": PHONE}], "flow_execution_variables": {"p": "x" * (limit - 200)}})
    fits = BadInput("fits", body, 201, "", "", base64=True)  # its base64 is ~4/3 of the limit
    too_large = BadInput("too large", body + " " * 300, 413, "body_too_large", "body", base64=True)

    assert call_with(fits, "runs").status == 201
    answer = call_with(too_large, "runs")
    assert answer.status == 413
    assert answer.body["code"] == "body_too_large"
