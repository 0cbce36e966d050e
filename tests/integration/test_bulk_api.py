"""POST /flows/{flow_id}/bulk-runs and GET /bulk-runs/{id} in-process: moto for DynamoDB and the runs
queue (from template.yaml), and, end to end, bulk_worker draining the queue against a fake Hilos."""

import csv
import io
import json
import uuid
from typing import Any

import pytest

from tests.fake_hilos import FakeHilos, reply
from tests.helpers import (
    FLOW_ID,
    HILOS_EXECUTION_ID,
    RunsQueue,
    call_run_api,
    contact,
    drain,
    hilos_execution,
    run_body,
)

BULK_PATH = f"/flows/{FLOW_ID}/bulk-runs"
SQS_MAX_BYTES = 262_144

pytestmark = pytest.mark.usefixtures("aws")


def contacts(n: int) -> list[dict[str, Any]]:
    return run_body(n)["contact_list"]


def as_csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def send_batch_calls() -> list[dict[str, Any]]:
    """Every SendMessageBatch request the API makes from now on."""
    from hilos_runner import factories

    calls: list[dict[str, Any]] = []
    factories.aws_client("sqs").meta.events.register(
        "provide-client-params.sqs.SendMessageBatch", lambda params, **_: calls.append(dict(params))
    )
    return calls


def stored(run_id: str | uuid.UUID) -> dict[str, Any] | None:
    from hilos_runner import factories

    record = factories.execution_store().get(uuid.UUID(str(run_id)))
    return record.model_dump(mode="json") if record else None


class FlakySqs:
    """SendMessageBatch of the real (moto) client, except that the entries of some chunks are reported
    failed (server fault) a given number of times, without being sent."""

    def __init__(self, send: Any, failures: dict[int, int]) -> None:
        self._send = send
        self.failures = failures
        self.batches = 0

    def send_message_batch(self, **request: Any) -> dict[str, Any]:
        self.batches += 1
        sent, failed = [], []
        for entry in request["Entries"]:
            index = json.loads(entry["MessageBody"])["chunk_index"]
            if self.failures.get(index, 0) > 0:
                self.failures[index] -= 1
                failed.append({"Id": entry["Id"], "SenderFault": False, "Code": "InternalError", "Message": "retry"})
            else:
                sent.append(entry)
        answer = self._send(**{**request, "Entries": sent}) if sent else {"Successful": []}
        return {**answer, "Failed": answer.get("Failed", []) + failed}


def flaky_sqs(monkeypatch: pytest.MonkeyPatch, failures: dict[int, int]) -> FlakySqs:
    from hilos_runner import factories

    client = factories.aws_client("sqs")
    flaky = FlakySqs(client.send_message_batch, failures)
    monkeypatch.setattr(client, "send_message_batch", flaky.send_message_batch)
    return flaky


class TestSubmit:
    def test_2500_contacts_become_ten_chunk_messages_and_records(self, runs_queue: RunsQueue):
        body = {"contact_list": contacts(2500), "has_priority": True, "flow_execution_variables": {"wave": 1}}
        batches = send_batch_calls()

        answer = call_run_api("POST", BULK_PATH, body)

        assert answer.status == 202
        bulk_id = answer.body["id"]
        assert answer.body == {
            "id": bulk_id,
            "num_contacts": 2500,
            "chunks": 10,
            "status_url": f"https://localhost/bulk-runs/{bulk_id}",  # absolute: a caller follows it as it is
            "duplicates_removed": None,
        }
        assert answer.headers["Location"] == f"/bulk-runs/{bulk_id}"

        messages = sorted(runs_queue.take_bodies(), key=lambda m: m["chunk_index"])
        assert [m["chunk_index"] for m in messages] == list(range(10))
        assert [len(m["contact_list"]) for m in messages] == [250] * 10
        assert [c for m in messages for c in m["contact_list"]] == body["contact_list"]  # all, once, in order
        for m in messages:
            assert m["bulk_id"] == bulk_id
            assert m["flow_id"] == FLOW_ID
            assert (m["has_priority"], m["flow_execution_variables"]) == (True, {"wave": 1})
            assert m["idempotency_key"] == f"bulk-{bulk_id}-{m['chunk_index']}"
        for batch in batches:
            assert len(batch["Entries"]) <= 10
            assert sum(len(e["MessageBody"].encode()) for e in batch["Entries"]) <= SQS_MAX_BYTES

        parent = stored(bulk_id)
        assert parent is not None
        assert (parent["status"], parent["num_contacts"], parent["num_chunks"], parent["source"]) == (
            "QUEUED",
            2500,
            10,
            "API",
        )
        for m in messages:
            chunk = stored(m["run_id"])
            assert chunk is not None
            assert (chunk["status"], chunk["parent_id"], chunk["chunk_index"], chunk["num_contacts"]) == (
                "QUEUED",
                bulk_id,
                m["chunk_index"],
                250,
            )

        progress = call_run_api("GET", f"/bulk-runs/{bulk_id}")
        assert progress.status == 200
        assert progress.body["status"] == "QUEUED"  # no chunk sent yet
        assert progress.body["chunks_by_status"] == {"QUEUED": 10}
        assert progress.body["contacts_by_status"] == {"QUEUED": 2500}
        assert [c["chunk_index"] for c in progress.body["chunks"]] == list(range(10))

    def test_large_contacts_make_smaller_chunks_so_every_message_fits_sqs(self, runs_queue: RunsQueue):
        # ~4 KB of meta per contact: 250 of them would be a 1 MB message.
        body = {"contact_list": [contact(phone=f"+5215500{i:06d}", meta={"notes": "x" * 4000}) for i in range(300)]}
        batches = send_batch_calls()

        answer = call_run_api("POST", BULK_PATH, body)

        assert answer.status == 202
        messages = runs_queue.take_bodies()
        assert len(messages) == answer.body["chunks"] > 2
        assert sum(len(m["contact_list"]) for m in messages) == 300
        assert all(len(json.dumps(m, separators=(",", ":")).encode()) <= SQS_MAX_BYTES for m in messages)
        assert len(batches) == answer.body["chunks"]  # one 256 KiB batch holds one such message

    def test_csv_with_typed_columns_and_options_in_the_query(self, runs_queue: RunsQueue):
        text = (
            "phone,first_name,email,tags,meta,default_assignees,overwrite_tags,default_channel\n"
            '+5215500000001,Ana,ana@example.com,vip;spring,"{""plan"": ""gold""}",7;9,true,3\n'
            "+5215500000002,,,,,,,\n"
        )

        answer = call_run_api(
            "POST",
            BULK_PATH,
            text,
            headers={"content-type": "text/csv; charset=utf-8"},
            query={"has_priority": "true", "flow_execution_variables": '{"campaign": "spring"}'},
        )

        assert answer.status == 202
        (message,) = runs_queue.take_bodies()
        assert message["has_priority"] is True
        assert message["flow_execution_variables"] == {"campaign": "spring"}
        assert message["contact_list"] == [
            {
                "phone": "+5215500000001",
                "first_name": "Ana",
                "email": "ana@example.com",
                "tags": [{"name": "vip"}, {"name": "spring"}],
                "meta": {"plan": "gold"},
                "default_assignees": [7, 9],
                "overwrite_tags": True,
                "default_channel": 3,
            },
            {"phone": "+5215500000002"},  # empty cells are absent fields, not nulls or ""
        ]

    @pytest.mark.parametrize("media", ["json", "csv"])
    def test_a_file_with_three_bad_rows_is_rejected_whole_listing_all_three(self, runs_queue: RunsQueue, media: str):
        rows = contacts(40)
        rows[3]["email"] = "not-an-email"
        rows[17]["phone"] = ""  # no phone, no id
        rows[38]["tags"] = "x" * 101 if media == "csv" else [{"name": "x" * 101}]
        if media == "json":
            rows[17].pop("phone")
            request: dict[str, Any] = {"body": {"contact_list": rows}}
        else:
            request = {
                "body": as_csv(rows, ["phone", "first_name", "email", "tags"]),
                "headers": {"content-type": "text/csv"},
            }
        batches = send_batch_calls()

        answer = call_run_api("POST", BULK_PATH, **request)

        assert answer.status == 422
        assert answer.body["code"] == "validation_error"
        assert answer.body["message"].startswith("3 of 40 ")
        fields = [d["field"] for d in answer.body["details"]]
        if media == "json":
            assert fields == ["body.contact_list.3.email", "body.contact_list.17", "body.contact_list.38.tags.0.name"]
        else:  # spreadsheet rows: the header is row 1
            assert fields == ["body.row.5.email", "body.row.19", "body.row.40.tags.0.name"]
        assert batches == []
        assert runs_queue.take_bodies() == []
        assert call_run_api("GET", f"/flows/{FLOW_ID}/runs").body["items"] == []

    @pytest.mark.parametrize(
        ("body", "headers", "query", "field"),
        [
            ("phone,phone_number\n+5215500000001,+522\n", {"content-type": "text/csv"}, {}, "body.row.1.column.2"),
            ("", {"content-type": "text/csv"}, {}, "body.row.1"),
            ('{"contact_list": [', {"content-type": "application/json"}, {}, "body.contact_list.0"),
            ({"contact_list": contacts(1), "has_priority": False}, {}, {"has_priority": "true"}, "body.has_priority"),
            ("phone\n+5215500000001\n", {"content-type": "text/csv"}, {"flow_execution_variables": "[1]"}, None),
        ],
    )
    def test_unreadable_input_is_422_naming_where(self, body: Any, headers: dict, query: dict, field: str | None):
        answer = call_run_api("POST", BULK_PATH, body, headers=headers, query=query)
        assert answer.status == 422
        fields = [d["field"] for d in answer.body["details"]]
        assert fields == [field or "query.flow_execution_variables"]

    def test_a_submit_is_bounded_in_contacts_before_any_is_validated(self, monkeypatch: pytest.MonkeyPatch):
        from hilos_runner import factories

        monkeypatch.setenv("BULK_MAX_CONTACTS", "5")
        factories.reset()
        rows = contacts(6)
        rows[0]["email"] = "not-checked"

        answer = call_run_api("POST", BULK_PATH, {"contact_list": rows})

        assert answer.status == 422
        assert answer.body["details"] == [{"field": "body.contact_list", "reason": "at most 5 contacts"}]
        assert "hilos-runner CLI" in answer.body["message"]
        assert call_run_api("POST", BULK_PATH, {"contact_list": contacts(5)}).status == 202

    def test_other_media_types_are_415(self):
        answer = call_run_api("POST", BULK_PATH, "<contacts/>", headers={"content-type": "application/xml"})
        assert answer.status == 415
        assert answer.body["code"] == "unsupported_media_type"

    def test_bulk_bodies_may_be_larger_than_run_bodies_but_are_bounded(self):
        padded = {"contact_list": [contact(phone=f"+52155{i:08d}", meta={"pad": "x" * 12_000}) for i in range(100)]}
        assert call_run_api("POST", f"/flows/{FLOW_ID}/runs", padded).status == 413  # > 1 MB
        assert call_run_api("POST", BULK_PATH, padded).status == 202

        huge = call_run_api("POST", BULK_PATH, "x" * 5_000_001, headers={"content-type": "text/csv"})
        assert huge.status == 413
        assert huge.body["code"] == "body_too_large"


class TestIdempotentSubmit:
    def test_a_repeated_key_returns_the_first_202_without_queuing_again(self, runs_queue: RunsQueue):
        headers = {"Idempotency-Key": "campaign-7"}
        first = call_run_api("POST", BULK_PATH, {"contact_list": contacts(600)}, headers=headers)
        batches = send_batch_calls()
        second = call_run_api("POST", BULK_PATH, {"contact_list": contacts(600)}, headers=headers)

        assert first.status == second.status == 202
        assert second.body == first.body
        assert batches == []
        assert len(runs_queue.take_bodies()) == 3

    def test_a_key_reused_with_another_list_is_422(self):
        headers = {"Idempotency-Key": "campaign-8"}
        assert call_run_api("POST", BULK_PATH, {"contact_list": contacts(2)}, headers=headers).status == 202
        reused = call_run_api("POST", BULK_PATH, {"contact_list": contacts(3)}, headers=headers)
        assert reused.status == 422
        assert reused.body["code"] == "idempotency_key_reused"


class TestQueueFailures:
    def test_entries_sqs_fails_are_sent_again(self, runs_queue: RunsQueue, monkeypatch: pytest.MonkeyPatch):
        flaky = flaky_sqs(monkeypatch, {1: 1})  # chunk 1 fails once

        answer = call_run_api("POST", BULK_PATH, {"contact_list": contacts(600)})

        assert answer.status == 202
        assert flaky.batches == 2
        assert sorted(m["chunk_index"] for m in runs_queue.take_bodies()) == [0, 1, 2]

    def test_chunks_sqs_keeps_refusing_make_a_503_and_the_same_key_resumes_the_bulk_run(
        self,
        runs_queue: RunsQueue,
        monkeypatch: pytest.MonkeyPatch,
        hilos: FakeHilos,
        aws: Any,
    ):
        hilos.answer_runs(reply(201, hilos_execution()))
        headers = {"Idempotency-Key": "campaign-9"}
        body = {"contact_list": contacts(600)}
        with monkeypatch.context() as patch:
            flaky_sqs(patch, {1: 3})  # chunk 1 fails on every attempt
            failed = call_run_api("POST", BULK_PATH, body, headers=headers)

        assert failed.status == 503
        assert "1 of 3 chunks could not be queued" in failed.body["message"]
        bulk_id = failed.body["run_id"]
        chunks = call_run_api("GET", f"/bulk-runs/{bulk_id}").body["chunks"]
        assert [c["status"] for c in chunks] == ["QUEUED", "FAILED", "QUEUED"]
        assert chunks[1]["last_error"].startswith("not queued: InternalError")

        # SQS is fine again.
        resumed = call_run_api("POST", BULK_PATH, body, headers=headers)

        assert resumed.status == 202
        assert resumed.body["id"] == bulk_id
        assert drain(runs_queue, aws, monkeypatch, one_at_a_time=True) == 5  # chunks 0 and 2 were sent twice ...
        assert len(hilos.calls) == 3  # ... and started once each
        progress = call_run_api("GET", f"/bulk-runs/{bulk_id}").body
        assert progress["status"] == "IN_PROGRESS"  # every chunk started; none finished in Hilos yet
        assert progress["chunks_by_status"] == {"SUBMITTED": 3}


class TestProgress:
    def test_progress_follows_the_worker_chunk_by_chunk(
        self, runs_queue: RunsQueue, hilos: FakeHilos, aws: Any, monkeypatch: pytest.MonkeyPatch
    ):
        def by_chunk(request: Any) -> tuple[int, dict[str, str], str]:
            sent = json.loads(request.body)["contact_list"]
            if sent[0]["phone"] == contacts(501)[500]["phone"]:  # the third chunk's first contact
                return 400, {}, json.dumps({"contact_list": [{"phone": ["Enter a valid phone."]}]})
            return 201, {}, json.dumps(hilos_execution(num_contacts=len(sent)))

        hilos.answer_runs(by_chunk)
        bulk_id = call_run_api("POST", BULK_PATH, {"contact_list": contacts(600)}).body["id"]

        assert drain(runs_queue, aws, monkeypatch) == 3
        progress = call_run_api("GET", f"/bulk-runs/{bulk_id}").body

        # One chunk will never start, but the other two have not finished in Hilos: still going.
        assert progress["status"] == "IN_PROGRESS"
        assert progress["chunks_by_status"] == {"SUBMITTED": 2, "REJECTED": 1}
        assert progress["contacts_by_status"] == {"SUBMITTED": 500, "REJECTED": 100}
        assert [(c["status"], c["hilos_execution_id"]) for c in progress["chunks"]] == [
            ("SUBMITTED", HILOS_EXECUTION_ID),
            ("SUBMITTED", HILOS_EXECUTION_ID),
            ("REJECTED", None),
        ]
        assert "Enter a valid phone." in progress["chunks"][2]["last_error"]

    def test_unknown_bulk_runs_and_plain_runs_are_404(self, hilos: FakeHilos):
        assert call_run_api("GET", f"/bulk-runs/{uuid.uuid4()}").status == 404
        hilos.answer_runs(reply(201, hilos_execution()))
        run_id = call_run_api("POST", f"/flows/{FLOW_ID}/runs", run_body()).body["run"]["run_id"]
        assert call_run_api("GET", f"/bulk-runs/{run_id}").status == 404

    def test_the_openapi_document_lists_the_bulk_routes(self):
        paths = call_run_api("GET", "/openapi.json").body["paths"]
        assert "post" in paths["/flows/{flow_id}/bulk-runs"]
        assert "get" in paths["/bulk-runs/{bulk_id}"]
        assert "get" in paths["/bulk-runs/{bulk_id}/contacts"]
        assert "post" in paths["/bulk-runs/{bulk_id}/retries"]
        assert "get" in paths["/runs/{run_id}/contacts"]
        assert "post" in paths["/runs/{run_id}/retries"]
        csv = paths["/runs/{run_id}/contacts"]["get"]["responses"]["200"]["content"]
        assert set(csv) == {"application/json", "text/csv"}
