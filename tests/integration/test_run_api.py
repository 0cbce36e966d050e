"""run_api in-process: API Gateway events in, moto for AWS (resources from template.yaml), a fake Hilos."""

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fake_hilos import FakeHilos, reply
from tests.helpers import (
    FLOW_ID,
    HILOS_EXECUTION_ID,
    RUN_URL,
    TEST_TOKEN,
    call_run_api,
    contact,
    hilos_execution,
    run_body,
)
from tests.hilos_schema import assert_matches_hilos_run_request

RUNS_PATH = f"/flows/{FLOW_ID}/runs"
OPENAPI_COPY = Path(__file__).resolve().parents[2] / "schemas" / "openapi.json"  # tools/export_openapi.py


def count_secret_reads() -> list[str]:
    """Record every GetSecretValue the process makes from now on."""
    from hilos_runner import factories

    calls: list[str] = []
    factories.aws_client("secretsmanager").meta.events.register(
        "before-call.secrets-manager.GetSecretValue", lambda **_: calls.append("GetSecretValue")
    )
    return calls


@pytest.mark.usefixtures("aws")
class TestCreateRun:
    def test_forwards_exactly_the_documented_body_records_and_answers_201(self, hilos: FakeHilos):
        hilos.answer_runs(reply(201, hilos_execution()))
        body = run_body(
            contacts=2,
            has_priority=True,
            flow_execution_variables={"campaign": "spring"},
        )
        body["contact_list"][1] = contact(phone="+5215500000001", email="ana@example.com", last_name=None)

        answer = call_run_api("POST", RUNS_PATH, body)

        assert answer.status == 201
        assert len(hilos.calls) == 1
        sent = hilos.calls[0].request
        assert sent.url == RUN_URL
        assert sent.headers["Authorization"] == f"Token {TEST_TOKEN}"
        sent_body = json.loads(sent.body)
        assert sent_body == {"execute_for": "LIST", **body}  # what the caller sent, explicit null kept
        assert_matches_hilos_run_request(sent_body)

        run = answer.body["run"]
        assert run["status"] == "SUBMITTED"
        assert run["flow_id"] == FLOW_ID
        assert run["hilos_execution_id"] == HILOS_EXECUTION_ID
        assert run["num_contacts"] == 2
        assert answer.body["hilos"]["id"] == HILOS_EXECUTION_ID
        assert answer.headers["Location"] == f"/runs/{run['run_id']}"
        assert TEST_TOKEN not in json.dumps(answer.body)

        stored = call_run_api("GET", f"/runs/{run['run_id']}")
        assert stored.status == 200
        assert stored.body["status"] == "SUBMITTED"
        assert stored.body["source"] == "API"
        assert TEST_TOKEN not in json.dumps(stored.body)

    def test_unknown_upstream_fields_are_kept(self, hilos: FakeHilos):
        hilos.answer_runs(reply(201, hilos_execution(brand_new_field={"x": 1})))
        answer = call_run_api("POST", RUNS_PATH, run_body())
        assert answer.body["hilos"]["brand_new_field"] == {"x": 1}

    def test_invalid_body_is_422_naming_each_bad_field_and_hilos_is_not_called(self, hilos: FakeHilos):
        body = {
            "execute_for": "ALL",
            "contact_list": [
                {"phone": "+52" + "1" * 40, "email": "not-an-email", "phone_number": "+5215500000001"},
                {"first_name": "no phone"},
                {"phone": "+5215500000001", "notes": ["read-only"], "tags": [{"name": "x" * 101}]},
            ],
        }
        answer = call_run_api("POST", RUNS_PATH, body)

        assert answer.status == 422
        assert answer.body["code"] == "validation_error"
        fields = {detail["field"] for detail in answer.body["details"]}
        assert {
            "body.execute_for",
            "body.contact_list.0.phone",
            "body.contact_list.0.email",
            "body.contact_list.0.phone_number",
            "body.contact_list.1",
            "body.contact_list.2.notes",
            "body.contact_list.2.tags.0.name",
        } <= fields
        unknown = next(d for d in answer.body["details"] if d["field"] == "body.contact_list.0.phone_number")
        assert "unknown field" in unknown["reason"]
        assert len(hilos.calls) == 0

    def test_flow_id_must_be_a_uuid(self, hilos: FakeHilos):
        answer = call_run_api("POST", "/flows/not-a-flow/runs", run_body())
        assert answer.status == 422
        assert [d["field"] for d in answer.body["details"]] == ["path.flow_id"]
        assert len(hilos.calls) == 0

    def test_empty_contact_list_and_malformed_json_are_422(self, hilos: FakeHilos):
        assert call_run_api("POST", RUNS_PATH, {"contact_list": []}).status == 422
        malformed = call_run_api("POST", RUNS_PATH, '{"contact_list": [', headers={"content-type": "application/json"})
        assert malformed.status == 422
        assert malformed.body["code"] == "validation_error"
        assert len(hilos.calls) == 0

    def test_oversized_body_is_413_before_anything_else(self, hilos: FakeHilos):
        answer = call_run_api("POST", RUNS_PATH, {"contact_list": [contact(meta={"pad": "x" * 1_100_000})]})
        assert answer.status == 413
        assert answer.body["code"] == "body_too_large"
        assert len(hilos.calls) == 0


@pytest.mark.usefixtures("aws")
class TestIdempotency:
    def test_same_key_same_body_calls_hilos_once_and_returns_the_first_answer(self, hilos: FakeHilos):
        hilos.answer_runs(reply(201, hilos_execution()))
        headers = {"Idempotency-Key": "order-42"}

        first = call_run_api("POST", RUNS_PATH, run_body(), headers=headers)
        second = call_run_api("POST", RUNS_PATH, run_body(), headers=headers)

        assert first.status == second.status == 201
        assert len(hilos.calls) == 1
        assert second.body["run"]["run_id"] == first.body["run"]["run_id"]

    def test_same_key_with_another_body_is_a_clear_422(self, hilos: FakeHilos):
        hilos.answer_runs(reply(201, hilos_execution()))
        headers = {"Idempotency-Key": "order-43"}
        assert call_run_api("POST", RUNS_PATH, run_body(), headers=headers).status == 201

        reused = call_run_api("POST", RUNS_PATH, run_body(contacts=2), headers=headers)

        assert reused.status == 422
        assert reused.body["code"] == "idempotency_key_reused"
        assert len(hilos.calls) == 1

    def test_a_failed_attempt_does_not_burn_the_key(self, hilos: FakeHilos):
        hilos.answer_runs(reply(503))
        hilos.answer_runs(reply(201, hilos_execution()))
        headers = {"Idempotency-Key": "order-44"}

        assert call_run_api("POST", RUNS_PATH, run_body(), headers=headers).status == 503
        assert call_run_api("POST", RUNS_PATH, run_body(), headers=headers).status == 201
        assert len(hilos.calls) == 2

    def test_an_unknown_outcome_is_never_resent_for_the_same_key(self, hilos: FakeHilos):
        hilos.answer_runs(requests.ReadTimeout("slow"))
        headers = {"Idempotency-Key": "order-45"}

        first = call_run_api("POST", RUNS_PATH, run_body(), headers=headers)
        second = call_run_api("POST", RUNS_PATH, run_body(), headers=headers)

        assert first.status == second.status == 504
        assert second.body["run_id"] == first.body["run_id"]
        assert len(hilos.calls) == 1

    def test_malformed_key_is_422(self, hilos: FakeHilos):
        answer = call_run_api("POST", RUNS_PATH, run_body(), headers={"Idempotency-Key": "spaces are bad"})
        assert answer.status == 422
        assert answer.body["details"][0]["field"].lower() == "header.idempotency-key"


@pytest.mark.usefixtures("aws")
class TestUpstreamErrors:
    def test_401_refreshes_the_secret_once_then_answers_502(self, hilos: FakeHilos, aws: Any):
        import boto3

        secret_id = aws.physical_ids["HilosTokenSecret"]
        rotated = "rotated-token-value-1234"
        sent_tokens: list[str] = []

        def refuse(request: Any) -> tuple[int, dict[str, str], str]:
            sent_tokens.append(request.headers["Authorization"])
            # The operator rotates the token between the two attempts.
            boto3.client("secretsmanager").put_secret_value(SecretId=secret_id, SecretString=rotated)
            return 401, {}, json.dumps({"detail": "Invalid token."})

        hilos.answer_runs(refuse)
        secret_reads = count_secret_reads()

        answer = call_run_api("POST", RUNS_PATH, run_body())

        assert answer.status == 502
        assert answer.body["code"] == "hilos_auth_failed"
        assert "secret" in answer.body["message"]
        assert sent_tokens == [f"Token {TEST_TOKEN}", f"Token {rotated}"]
        assert len(secret_reads) == 2  # the first read, then exactly one forced refresh
        record = call_run_api("GET", f"/runs/{answer.body['run_id']}").body
        assert record["status"] == "FAILED"
        assert TEST_TOKEN not in json.dumps(answer.body)
        assert rotated not in json.dumps(answer.body) + json.dumps(record)

    def test_401_then_success_after_refresh_is_201(self, hilos: FakeHilos):
        hilos.answer_runs(reply(401, {"detail": "Invalid token."}))
        hilos.answer_runs(reply(201, hilos_execution()))
        assert call_run_api("POST", RUNS_PATH, run_body()).status == 201
        assert len(hilos.calls) == 2

    def test_the_token_is_read_once_per_process_not_per_request(self, hilos: FakeHilos):
        hilos.answer_runs(reply(201, hilos_execution()))
        assert call_run_api("POST", RUNS_PATH, run_body()).status == 201
        secret_reads = count_secret_reads()
        for _ in range(3):
            assert call_run_api("POST", RUNS_PATH, run_body()).status == 201
        assert secret_reads == []

    @pytest.mark.parametrize(
        ("hilos_status", "answer_status", "code", "record_status"),
        [
            (400, 422, "hilos_rejected", "REJECTED"),
            (404, 404, "flow_not_found", "FAILED"),
            (429, 503, "hilos_unavailable", "FAILED"),
            (500, 503, "hilos_unavailable", "FAILED"),
            (503, 503, "hilos_unavailable", "FAILED"),
        ],
    )
    def test_error_mapping(
        self, hilos: FakeHilos, hilos_status: int, answer_status: int, code: str, record_status: str
    ):
        hilos.answer_runs(reply(hilos_status, {"contact_list": [{"phone": ["Enter a valid phone."]}]}))

        answer = call_run_api("POST", RUNS_PATH, run_body())

        assert answer.status == answer_status
        assert set(answer.body) <= {"code", "message", "details", "run_id"}
        assert answer.body["code"] == code
        assert call_run_api("GET", f"/runs/{answer.body['run_id']}").body["status"] == record_status
        assert len(hilos.calls) == 1  # nothing is retried inside the request
        if answer_status == 503:
            assert int(answer.headers["Retry-After"]) >= 1

    def test_hilos_400_message_is_passed_on(self, hilos: FakeHilos):
        hilos.answer_runs(reply(400, {"contact_list": [{"phone": ["Enter a valid phone number."]}]}))
        answer = call_run_api("POST", RUNS_PATH, run_body())
        assert "Enter a valid phone number." in answer.body["message"]
        assert answer.body["details"] == [{"field": "contact_list.0.phone", "reason": "Enter a valid phone number."}]

    def test_429_retry_after_is_passed_on(self, hilos: FakeHilos):
        hilos.answer_runs(reply(429, headers={"Retry-After": "17"}))
        answer = call_run_api("POST", RUNS_PATH, run_body())
        assert answer.status == 503
        assert answer.headers["Retry-After"] == "17"

    def test_read_timeout_is_504_recorded_unknown_and_not_resent(self, hilos: FakeHilos):
        hilos.answer_runs(requests.ReadTimeout("slow"))

        answer = call_run_api("POST", RUNS_PATH, run_body())

        assert answer.status == 504
        assert answer.body["code"] == "hilos_outcome_unknown"
        assert len(hilos.calls) == 1
        assert call_run_api("GET", f"/runs/{answer.body['run_id']}").body["status"] == "UNKNOWN"

    def test_connection_refused_is_503_and_the_run_is_recorded_failed(self, hilos: FakeHilos):
        from urllib3.exceptions import MaxRetryError, NewConnectionError

        refused = MaxRetryError(None, RUN_URL, reason=NewConnectionError(None, "Connection refused"))  # type: ignore[arg-type]
        hilos.answer_runs(requests.ConnectionError(refused))

        answer = call_run_api("POST", RUNS_PATH, run_body())

        assert answer.status == 503
        assert call_run_api("GET", f"/runs/{answer.body['run_id']}").body["status"] == "FAILED"

    def test_connection_reset_after_sending_is_an_unknown_outcome(self, hilos: FakeHilos):
        from urllib3.exceptions import ProtocolError

        hilos.answer_runs(requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError())))

        answer = call_run_api("POST", RUNS_PATH, run_body())

        assert answer.status == 504
        assert call_run_api("GET", f"/runs/{answer.body['run_id']}").body["status"] == "UNKNOWN"


@pytest.mark.usefixtures("aws")
class TestReadingRuns:
    def test_unknown_run_is_404_in_the_error_shape(self):
        answer = call_run_api("GET", "/runs/00000000-0000-4000-8000-000000000000")
        assert answer.status == 404
        assert answer.body["code"] == "not_found"

    def test_unknown_route_is_404_in_the_error_shape(self):
        answer = call_run_api("GET", "/nope")
        assert answer.status == 404
        assert set(answer.body) == {"code", "message", "details"}

    def test_runs_of_a_flow_newest_first_paginated_with_an_opaque_cursor(self, hilos: FakeHilos):
        hilos.answer_runs(reply(201, hilos_execution()))
        created = [call_run_api("POST", RUNS_PATH, run_body(contacts=n + 1)).body["run"]["run_id"] for n in range(5)]

        first = call_run_api("GET", RUNS_PATH, query={"limit": "2"})
        assert first.status == 200
        assert [r["run_id"] for r in first.body["items"]] == created[::-1][:2]
        cursor = first.body["next_cursor"]
        assert cursor

        second = call_run_api("GET", RUNS_PATH, query={"limit": "2", "cursor": cursor})
        third = call_run_api("GET", RUNS_PATH, query={"limit": "2", "cursor": second.body["next_cursor"]})
        listed = [r["run_id"] for page in (first, second, third) for r in page.body["items"]]
        assert listed == created[::-1]

    def test_a_forged_cursor_is_422(self):
        answer = call_run_api("GET", RUNS_PATH, query={"cursor": "bm90LWEtY3Vyc29y"})
        assert answer.status == 422
        assert answer.body["details"][0]["field"] == "query.cursor"

    def test_limit_is_bounded(self):
        assert call_run_api("GET", RUNS_PATH, query={"limit": "1000"}).status == 422


@pytest.mark.usefixtures("aws")
class TestOpenApi:
    def test_openapi_document_describes_the_routes(self):
        answer = call_run_api("GET", "/openapi.json")
        assert answer.status == 200
        paths = answer.body["paths"]
        assert {"/flows/{flow_id}/runs", "/runs/{run_id}"} <= set(paths)
        assert "post" in paths["/flows/{flow_id}/runs"]
        assert "FlowRunRequest" in json.dumps(answer.body["components"])

    def test_swagger_ui_is_served(self):
        answer = call_run_api("GET", "/swagger")
        assert answer.status == 200
        assert "swagger" in str(answer.body).lower()

    def test_the_document_declares_the_bearer_jwt_every_operation_requires(self):
        # What Swagger UI's Authorize button reads; "Try it out" then sends Authorization: Bearer <token>.
        document = call_run_api("GET", "/openapi.json").body
        scheme = document["components"]["securitySchemes"]["bearer"]
        assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
        assert document["security"] == [{"bearer": []}]
        assert all("security" not in operation for item in document["paths"].values() for operation in item.values())

    def test_the_committed_document_is_the_served_one(self):
        committed = json.loads(OPENAPI_COPY.read_text())
        assert call_run_api("GET", "/openapi.json").body == committed, (
            "schemas/openapi.json is stale: run `make openapi`"
        )
