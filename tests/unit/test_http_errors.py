"""The one error shape and the one table from domain errors to HTTP answers."""

import inspect
import json

import pytest
from pydantic import ValidationError

from hilos_runner import api, errors
from hilos_runner.models import FlowRunRequest

STATUS_OF = [
    (errors.InvalidRequestError("bad cursor"), 422),
    (errors.IdempotencyKeyReusedError("reused"), 422),
    (errors.IdempotencyInProgressError("in progress"), 409),
    (errors.RunNotFinishedError("still running"), 409),
    (errors.ContactsNotReadYetError("more to read", retry_after=1), 503),
    (errors.NotFoundError("no run"), 404),
    (errors.HilosRejectedError("400", status=400), 422),
    (errors.FlowNotFoundError("404", status=404), 404),
    (errors.HilosAuthError("401", status=401), 502),
    (errors.HilosUnavailableError("503", status=503), 503),
    (errors.HilosOutcomeUnknownError("timeout"), 504),
    (errors.ExecutionNotFoundError("404", status=404), 502),
    (errors.HilosError("status read refused", status=400), 502),
    (errors.DependencyUnavailableError("dynamodb"), 503),
    (errors.ConfigurationError("HILOS_TOKEN_SECRET_ID is not set"), 500),
    (errors.HilosRunnerError("unexpected"), 500),
]


@pytest.mark.parametrize(("error", "status"), STATUS_OF, ids=[type(e).__name__ for e, _ in STATUS_OF])
def test_status_for_every_domain_error(error: errors.HilosRunnerError, status: int):
    assert api.status_for(error) == status


def test_no_concrete_domain_error_falls_through_to_the_default_500():
    bases = {errors.HilosRunnerError, errors.HilosError}
    concrete = [
        error_type
        for _, error_type in inspect.getmembers(errors, inspect.isclass)
        if issubclass(error_type, errors.HilosRunnerError) and error_type not in bases
    ]
    assert len(concrete) >= 11
    for error_type in concrete:
        error = error_type("message")
        expected_500 = error_type is errors.ConfigurationError
        assert (api.status_for(error) == 500) is expected_500, error_type.__name__


def test_retryable_errors_carry_retry_after_rounded_up():
    error = errors.HilosUnavailableError("busy", status=429, retry_after=1.2)
    assert api.headers_for(error) == {"Retry-After": "2"}


@pytest.mark.parametrize(
    "error",
    [
        errors.HilosUnavailableError("down", status=503),
        errors.DependencyUnavailableError("throttled"),
        errors.IdempotencyInProgressError("in progress"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_retryable_errors_without_a_hint_get_the_default_retry_after(error: errors.HilosRunnerError):
    assert api.headers_for(error) == {"Retry-After": str(api.DEFAULT_RETRY_AFTER_SECONDS)}


@pytest.mark.parametrize(
    "error",
    [
        errors.HilosRejectedError("no", status=400),
        errors.HilosOutcomeUnknownError("maybe"),  # resending could start the flow twice
        errors.ConfigurationError("broken"),
        errors.NotFoundError("none"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_that_a_retry_cannot_fix_have_no_retry_after(error: errors.HilosRunnerError):
    assert api.headers_for(error) == {}


def test_a_configuration_error_is_told_to_the_operator_not_the_caller():
    error = errors.ConfigurationError("the Hilos token secret 'prod/hilos-token' holds no token")

    message = api.public_message(error)

    assert "prod/hilos-token" not in message
    assert "misconfigured" in message


def test_other_errors_keep_their_message():
    assert api.public_message(errors.NotFoundError("no run 42")) == "no run 42"


def test_error_body_has_the_one_shape():
    body = json.loads(
        api.error_body(
            "hilos_rejected", "Hilos said no", [{"field": "contact_list.0.phone", "reason": "bad"}], run_id="r1"
        )
    )
    assert body == {
        "code": "hilos_rejected",
        "message": "Hilos said no",
        "details": [{"field": "contact_list.0.phone", "reason": "bad"}],
        "run_id": "r1",
    }
    assert json.loads(api.error_body("not_found", "none")) == {"code": "not_found", "message": "none", "details": []}


def test_api_gateway_error_is_a_complete_proxy_answer():
    answer = api.api_gateway_error(413, "body_too_large", "too big", [{"field": "body", "reason": "too large"}])

    assert answer["statusCode"] == 413
    assert answer["headers"] == {"Content-Type": "application/json"}
    assert answer["isBase64Encoded"] is False
    assert json.loads(answer["body"])["details"] == [{"field": "body", "reason": "too large"}]


def pydantic_errors(body: object) -> list:
    with pytest.raises(ValidationError) as info:
        FlowRunRequest.model_validate(body)
    return [{**error, "loc": ("body", *error["loc"])} for error in info.value.errors()]


def test_validation_details_name_fields_and_never_echo_the_values():
    secret_ish = "+52-PRIVATE-PHONE-0000000000000000000"
    body = {
        "execute_for": "PRIVATE-EXECUTE-FOR",
        "has_priority": "PRIVATE-PRIORITY",
        "contact_list": [
            {
                "phone": secret_ish,
                "first_name": "PRIVATE-NAME-" + "x" * 100,
                "email": "PRIVATE-EMAIL-without-at",
                "external_url": "PRIVATE-URL",
                "id": "PRIVATE-ID",
                "default_assignees": ["PRIVATE-ASSIGNEE"],
                "phone_number": "PRIVATE-UNKNOWN-FIELD",
            }
        ],
    }

    details = api.validation_details(pydantic_errors(body))

    assert {d["field"] for d in details} == {
        "body.execute_for",
        "body.has_priority",
        "body.contact_list.0.phone",
        "body.contact_list.0.first_name",
        "body.contact_list.0.email",
        "body.contact_list.0.external_url",
        "body.contact_list.0.id",
        "body.contact_list.0.default_assignees.0",
        "body.contact_list.0.phone_number",
    }
    assert "PRIVATE" not in json.dumps(details)
    unknown = next(d for d in details if d["field"].endswith("phone_number"))
    assert unknown["reason"] == "unknown field (not accepted by Hilos)"


def test_validation_details_of_a_whole_object_have_the_object_path():
    details = api.validation_details(pydantic_errors({"contact_list": [{"first_name": "Ana"}]}))
    assert [d["field"] for d in details] == ["body.contact_list.0"]
    assert "phone" in details[0]["reason"]
