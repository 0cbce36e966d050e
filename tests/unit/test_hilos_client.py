"""HilosClient: the request it sends, how Hilos' answers (a run, a refusal, a refused token) map to domain errors, and
status reads and contact lists. On the fake Hilos (tests/fake_hilos.py): no network."""

from typing import Any
from unittest.mock import Mock, call
from uuid import UUID

import pytest

from hilos_runner.errors import (
    ExecutionNotFoundError,
    FlowNotFoundError,
    HilosAuthError,
    HilosError,
    HilosRejectedError,
    HilosUnavailableError,
)
from tests.fake_hilos import FakeHilos, reply
from tests.helpers import FLOW_ID, HILOS_EXECUTION_ID, RUN_URL, TEST_TOKEN, hilos_execution
from tests.unit.hilos_client_calls import FRESH_TOKEN, assert_no_token, make_client, run_request, start

# --- the request ----------------------------------------------------------------------------------


def test_posts_the_exact_body_to_the_run_url_with_the_token_and_explicit_timeouts(hilos: FakeHilos):
    hilos.answer_runs(reply(201, hilos_execution(num_contacts=2)))
    client = make_client(hilos_connect_timeout_seconds=1.5, hilos_read_timeout_seconds=7)
    request = run_request(contacts=2)

    execution = client.create_flow_execution(UUID(FLOW_ID), request)

    assert execution.id == UUID(HILOS_EXECUTION_ID)
    assert execution.num_contacts == 2
    (sent,) = hilos.calls
    assert sent.request.method == "POST"
    assert sent.request.url == RUN_URL
    assert sent.request.headers["Authorization"] == f"Token {TEST_TOKEN}"
    assert sent.request.headers["Content-Type"] == "application/json"
    assert sent.request.body == request.hilos_body()
    assert sent.request.req_kwargs["timeout"] == (1.5, 7.0)  # type: ignore[attr-defined]  # set by responses


def test_the_activecampaign_style_run_path_is_a_setting(hilos: FakeHilos):
    url = f"https://hilos.example.com/api/channel/whatsapp/flow/{FLOW_ID}/run"
    hilos.answer_runs(reply(201, hilos_execution()))
    client = make_client(
        hilos_api_url="https://hilos.example.com/api/", hilos_run_path="/channel/whatsapp/flow/{flow_id}/run"
    )

    start(client)

    assert [c.request.url for c in hilos.calls] == [url]


@pytest.mark.parametrize("status", [200, 201])
def test_2xx_is_a_started_run(hilos: FakeHilos, status: int):
    hilos.answer_runs(reply(status, hilos_execution(status="READY")))
    assert start(make_client()).status == "READY"


@pytest.mark.parametrize("body", ["<html>created</html>", "", '{"id": "not-a-uuid"}', "[1, 2]"])
def test_an_unreadable_201_body_is_still_a_started_run(hilos: FakeHilos, body: str):
    hilos.answer_runs(reply(201, text=body, headers={"Content-Type": "application/json"}))
    execution = start(make_client())
    assert execution.id is None
    assert len(hilos.calls) == 1


# --- Hilos said no --------------------------------------------------------------------------------

DRF_PROBLEMS = {
    "detail": (
        {"detail": "Flow is not published."},
        "Flow is not published.",
        [{"field": "", "reason": "Flow is not published."}],
    ),
    "field lists": (
        {"contact_list": [{}, {"phone": ["Enter a valid phone number."], "email": ["Enter a valid email."]}]},
        "contact_list.1.phone: Enter a valid phone number.",
        [
            {"field": "contact_list.1.phone", "reason": "Enter a valid phone number."},
            {"field": "contact_list.1.email", "reason": "Enter a valid email."},
        ],
    ),
    "non_field_errors": (
        {"non_field_errors": ["The flow has no published version."]},
        "The flow has no published version.",
        [{"field": "", "reason": "The flow has no published version."}],
    ),
    "top-level list": (["Invalid input."], "Invalid input.", [{"field": "", "reason": "Invalid input."}]),
}


@pytest.mark.parametrize(("problem", "message", "details"), DRF_PROBLEMS.values(), ids=DRF_PROBLEMS.keys())
def test_400_is_rejected_with_hilos_message_and_flattened_details(
    hilos: FakeHilos, problem: Any, message: str, details: list[dict[str, str]]
):
    hilos.answer_runs(reply(400, problem))

    with pytest.raises(HilosRejectedError) as info:
        start(make_client())

    assert info.value.status == 400
    assert message in info.value.message
    assert info.value.details == details
    assert not info.value.retryable
    assert len(hilos.calls) == 1
    assert_no_token(info.value)


@pytest.mark.parametrize(("body", "message"), [("Bad things happened\n", "Bad things happened"), ("", "Bad Request")])
def test_400_with_a_non_json_body_uses_the_text_or_the_reason(hilos: FakeHilos, body: str, message: str):
    hilos.answer_runs(reply(400, text=body, headers={"Content-Type": "text/plain"}))

    with pytest.raises(HilosRejectedError) as info:
        start(make_client())

    assert info.value.message.endswith(message)
    assert info.value.details == []


@pytest.mark.parametrize(
    "echo",
    [
        {"detail": f"bad header Authorization: Token {TEST_TOKEN}"},
        {"headers": {"Authorization": [f"Token {TEST_TOKEN}"]}},
        f"<html>Authorization: Token {TEST_TOKEN}</html>",
    ],
)
def test_an_upstream_error_that_echoes_the_token_never_carries_it_further(hilos: FakeHilos, echo: Any):
    if isinstance(echo, str):
        hilos.answer_runs(reply(400, text=echo, headers={"Content-Type": "text/html"}))
    else:
        hilos.answer_runs(reply(400, echo))

    with pytest.raises(HilosRejectedError) as info:
        start(make_client())

    assert_no_token(info.value)
    assert "[redacted]" in f"{info.value.message} {info.value.details}"


def test_a_huge_upstream_message_is_cut(hilos: FakeHilos):
    hilos.answer_runs(reply(400, {"detail": "x" * 10_000}))
    with pytest.raises(HilosRejectedError) as info:
        start(make_client())
    assert len(info.value.message) < 700


@pytest.mark.parametrize("status", [402, 405, 409, 413, 422])
def test_other_4xx_are_rejected(hilos: FakeHilos, status: int):
    hilos.answer_runs(reply(status, {"detail": "no"}))
    with pytest.raises(HilosRejectedError) as info:
        start(make_client())
    assert info.value.status == status
    assert len(hilos.calls) == 1


def test_404_is_flow_not_found(hilos: FakeHilos):
    hilos.answer_runs(reply(404, {"detail": "Not found."}))
    with pytest.raises(FlowNotFoundError) as info:
        start(make_client())
    assert info.value.status == 404
    assert not info.value.retryable
    assert len(hilos.calls) == 1


# --- the token was refused ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_token_is_read_again_once_and_the_run_sent_again(hilos: FakeHilos, status: int):
    hilos.answer_runs(reply(status, {"detail": "Invalid token."}))
    hilos.answer_runs(reply(201, hilos_execution()))
    get_token = Mock(side_effect=[TEST_TOKEN, FRESH_TOKEN])

    execution = start(make_client(get_token))

    assert execution.id == UUID(HILOS_EXECUTION_ID)
    assert get_token.call_args_list == [call(force_refresh=False), call(force_refresh=True)]
    assert [c.request.headers["Authorization"] for c in hilos.calls] == [f"Token {TEST_TOKEN}", f"Token {FRESH_TOKEN}"]


@pytest.mark.parametrize("statuses", [(401, 401), (403, 403), (401, 403)])
def test_a_token_refused_twice_is_an_auth_error(hilos: FakeHilos, statuses: tuple[int, int]):
    for status in statuses:
        hilos.answer_runs(reply(status, {"detail": "Invalid token."}))
    get_token = Mock(side_effect=[TEST_TOKEN, FRESH_TOKEN])

    with pytest.raises(HilosAuthError) as info:
        start(make_client(get_token))

    assert get_token.call_args_list == [call(force_refresh=False), call(force_refresh=True)]
    assert len(hilos.calls) == 2
    assert info.value.status == statuses[1]
    assert "secret" in info.value.message
    assert not info.value.retryable
    assert_no_token(info.value)


# --- status reads (GET /flow-execution/{id}) -------------------------------------------------------------


def test_a_status_read_gets_the_execution_with_the_token_and_parses_status_and_counters(
    hilos: FakeHilos,
):
    hilos.answer_reads(reply(200, hilos_execution(status="RUNNING", running=3, completed=1, failed=1, expired=0)))

    execution = make_client().get_flow_execution(UUID(HILOS_EXECUTION_ID))

    sent = hilos.calls[0].request
    assert sent.headers["Authorization"] == f"Token {TEST_TOKEN}"
    assert "Content-Type" not in sent.headers
    assert sent.body is None
    assert (execution.status, execution.running, execution.completed, execution.failed) == ("RUNNING", 3, 1, 1)


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(404, ExecutionNotFoundError), (429, HilosUnavailableError), (400, HilosError), (504, HilosUnavailableError)],
)
def test_a_failed_status_read_is_never_an_unknown_run_outcome(
    hilos: FakeHilos, status: int, error_type: type[Exception]
):
    hilos.answer_reads(reply(status, {"detail": "no"}))

    with pytest.raises(error_type) as info:
        make_client().get_flow_execution(UUID(HILOS_EXECUTION_ID))

    assert type(info.value) is error_type
    assert not info.value.outcome_unknown  # type: ignore[attr-defined]


def test_a_status_read_refreshes_a_refused_token_once(hilos: FakeHilos):
    hilos.answer_reads(reply(401))
    hilos.answer_reads(reply(200, hilos_execution(status="COMPLETED")))
    get_token = Mock(side_effect=[TEST_TOKEN, FRESH_TOKEN])

    execution = make_client(get_token).get_flow_execution(UUID(HILOS_EXECUTION_ID))

    assert execution.status == "COMPLETED"
    assert get_token.call_args_list == [call(force_refresh=False), call(force_refresh=True)]
    assert hilos.calls[1].request.headers["Authorization"] == f"Token {FRESH_TOKEN}"


def test_a_contact_list_that_echoes_the_token_in_a_reason_never_carries_it_further(hilos: FakeHilos):
    execution_id = hilos.add_execution(["+5215500000007"])
    hilos.contacts[execution_id][0].update(status="FAILED", reason=f"request had Authorization: Token {TEST_TOKEN}")

    page = make_client().list_execution_contacts(UUID(execution_id), 1, 100)

    [contact] = page.results
    assert contact.reason == "request had Authorization: Token [redacted]"
