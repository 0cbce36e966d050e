"""The Hilos token from Secrets Manager (moto): accepted shapes, errors that never quote the secret,
throttling as a transient failure, and the in-process cache with its max age and forced refresh."""

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from unittest.mock import Mock

import boto3
import pytest
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from botocore.config import Config
from botocore.stub import Stubber
from moto import mock_aws

from hilos_runner.credentials import HilosTokenSource
from hilos_runner.errors import ConfigurationError, DependencyUnavailableError, HilosRunnerError
from tests.helpers import TEST_TOKEN, closed_port

SECRET_NAME = "hilos-runner-test/hilos-token"
MAX_AGE_SECONDS = 300


@pytest.fixture
def secrets() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")


def token_source(client: Any, secret_id: str = SECRET_NAME, max_age: int = MAX_AGE_SECONDS) -> HilosTokenSource:
    return HilosTokenSource(SecretsProvider(boto3_client=client), secret_id, max_age)


def traceback_chain(error: BaseException) -> list[BaseException]:
    """The exceptions a logged traceback of ``error`` would show."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None:
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return chain


def count_reads(client: Any) -> list[str]:
    reads: list[str] = []
    client.meta.events.register("before-call.secrets-manager.GetSecretValue", lambda **_: reads.append("read"))
    return reads


@pytest.mark.parametrize(
    "stored",
    [
        TEST_TOKEN,
        f"  {TEST_TOKEN}\n",
        json.dumps({"token": TEST_TOKEN}),
        json.dumps({"token": f" {TEST_TOKEN} ", "note": "rotated by ops"}),
        f"Token {TEST_TOKEN}",
        f"token   {TEST_TOKEN}",
        json.dumps({"token": f"Token {TEST_TOKEN}"}),
    ],
    ids=[
        "bare",
        "whitespace",
        "json",
        "json with whitespace and extras",
        "header pasted",
        "lower-case header",
        "json header",
    ],
)
def test_accepted_secret_shapes_give_the_bare_token(secrets: Any, stored: str):
    secrets.create_secret(Name=SECRET_NAME, SecretString=stored)
    assert token_source(secrets).get() == TEST_TOKEN


def test_a_binary_secret_is_read_as_text(secrets: Any):
    secrets.create_secret(Name=SECRET_NAME, SecretBinary=TEST_TOKEN.encode())
    assert token_source(secrets).get() == TEST_TOKEN


BAD_SECRETS = {
    "empty": "   ",
    "invalid json": '{"token": "' + TEST_TOKEN,
    "json without token": json.dumps({"key": TEST_TOKEN}),
    "json with empty token": json.dumps({"token": "  "}),
    "json with null token": json.dumps({"token": None}),
    "json array in braces": "{" + TEST_TOKEN + "}",
}


@pytest.mark.parametrize("stored", BAD_SECRETS.values(), ids=BAD_SECRETS.keys())
def test_a_secret_without_a_usable_token_is_a_configuration_error_that_does_not_quote_it(secrets: Any, stored: str):
    secrets.create_secret(Name=SECRET_NAME, SecretString=stored)

    with pytest.raises(ConfigurationError) as info:
        token_source(secrets).get()

    assert SECRET_NAME in info.value.message
    assert TEST_TOKEN not in f"{info.value} {info.value!r}"
    assert TEST_TOKEN not in " ".join(map(repr, traceback_chain(info.value)))  # nor in a chained parser error


def test_a_missing_secret_is_a_configuration_error(secrets: Any):
    with pytest.raises(ConfigurationError) as info:
        token_source(secrets, secret_id="no-such-secret").get()
    assert "ResourceNotFoundException" in info.value.message
    assert not info.value.retryable


def test_a_secret_with_no_value_yet_is_a_configuration_error(secrets: Any):
    secrets.create_secret(Name=SECRET_NAME)  # created by the stack, not filled by the operator yet
    with pytest.raises(ConfigurationError):
        token_source(secrets).get()


def test_no_secret_id_is_a_configuration_error_naming_the_variable(secrets: Any):
    with pytest.raises(ConfigurationError, match="HILOS_TOKEN_SECRET_ID"):
        token_source(secrets, secret_id="")


@pytest.mark.parametrize(
    ("code", "error_type"),
    [
        ("ThrottlingException", DependencyUnavailableError),
        ("InternalServiceError", DependencyUnavailableError),
        ("AccessDeniedException", ConfigurationError),
        ("DecryptionFailure", ConfigurationError),
    ],
)
def test_secrets_manager_errors_are_mapped_by_code(secrets: Any, code: str, error_type: type[HilosRunnerError]):
    stubber = Stubber(secrets)
    stubber.add_client_error("get_secret_value", service_error_code=code, service_message=f"denied {TEST_TOKEN}")

    with stubber, pytest.raises(error_type) as info:
        token_source(secrets).get()

    assert code in str(info.value)
    assert TEST_TOKEN not in str(info.value)
    assert info.value.retryable is (error_type is DependencyUnavailableError)


def test_an_unreachable_endpoint_is_a_transient_dependency_failure():
    client = boto3.client(
        "secretsmanager",
        region_name="us-east-1",
        endpoint_url=f"http://127.0.0.1:{closed_port()}",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=1),
    )
    with pytest.raises(DependencyUnavailableError, match="EndpointConnectionError"):
        token_source(client).get()


# --- caching ---------------------------------------------------------------------------------------


def test_the_token_is_cached_and_a_forced_refresh_reads_the_secret_again(secrets: Any):
    secrets.create_secret(Name=SECRET_NAME, SecretString=TEST_TOKEN)
    source = token_source(secrets)
    reads = count_reads(secrets)

    assert source.get() == TEST_TOKEN
    secrets.put_secret_value(SecretId=SECRET_NAME, SecretString="rotated-token-1")
    assert source.get() == TEST_TOKEN  # from the cache
    assert len(reads) == 1

    assert source.get(force_refresh=True) == "rotated-token-1"
    assert len(reads) == 2
    assert source.get() == "rotated-token-1"  # the refreshed value is what is cached now
    assert len(reads) == 2


def test_the_cached_token_expires_after_max_age(secrets: Any, monkeypatch: pytest.MonkeyPatch):
    from aws_lambda_powertools.utilities.parameters import base

    secrets.create_secret(Name=SECRET_NAME, SecretString=TEST_TOKEN)
    source = token_source(secrets, max_age=60)
    reads = count_reads(secrets)
    assert source.get() == TEST_TOKEN

    class SixtyOneSecondsLater(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return datetime.now(tz) + timedelta(seconds=61)

    monkeypatch.setattr(base, "datetime", SixtyOneSecondsLater)
    secrets.put_secret_value(SecretId=SECRET_NAME, SecretString="rotated-token-2")

    assert source.get() == "rotated-token-2"
    assert len(reads) == 2


def test_max_age_and_refresh_are_passed_to_the_provider():
    provider = Mock()
    provider.get.return_value = TEST_TOKEN
    source = HilosTokenSource(provider, SECRET_NAME, 123)

    source.get()
    source.get(force_refresh=True)

    assert [c.kwargs for c in provider.get.call_args_list] == [
        {"max_age": 123, "force_fetch": False},
        {"max_age": 123, "force_fetch": True},
    ]


def test_repr_names_the_secret_but_never_shows_the_token(secrets: Any):
    secrets.create_secret(Name=SECRET_NAME, SecretString=TEST_TOKEN)
    source = token_source(secrets)
    source.get()

    assert SECRET_NAME in repr(source)
    assert TEST_TOKEN not in repr(source)
    assert TEST_TOKEN not in str(source)
