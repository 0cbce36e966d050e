"""Settings from the environment: documented defaults, parsing, and bad values refused at cold start
with the variable named (never a confusing failure on the first request)."""

import pytest
from pydantic import ValidationError

from hilos_runner.errors import ConfigurationError
from hilos_runner.settings import Settings, get_settings
from tests.helpers import FLOW_ID, RUN_URL


def test_defaults_point_at_the_real_hilos_api_with_safe_timeouts():
    settings = Settings.from_env({})

    assert settings.hilos_api_url == "https://api.hilos.io/api"
    assert settings.hilos_run_path == "/flow/{flow_id}/run"
    assert settings.run_url(FLOW_ID) == RUN_URL
    # The read timeout stays below API Gateway's 30 s integration limit.
    assert 0 < settings.hilos_connect_timeout_seconds < settings.hilos_read_timeout_seconds < 30
    assert settings.hilos_connect_retries >= 1
    assert settings.hilos_token_max_age_seconds == 300
    assert settings.record_ttl_days == 90
    assert settings.hilos_token_secret_id == settings.executions_table_name == settings.idempotency_table_name == ""


def test_values_are_read_from_upper_case_variables_and_parsed():
    settings = Settings.from_env(
        {
            "HILOS_API_URL": "http://127.0.0.1:8080/api/",
            "HILOS_RUN_PATH": "/channel/whatsapp/flow/{flow_id}/run",
            "HILOS_CONNECT_TIMEOUT_SECONDS": "1.5",
            "HILOS_READ_TIMEOUT_SECONDS": "12",
            "HILOS_CONNECT_RETRIES": "0",
            "HILOS_TOKEN_SECRET_ID": "arn:aws:secretsmanager:us-east-1:123456789012:secret:hilos-token-AbCdEf",
            "HILOS_TOKEN_MAX_AGE_SECONDS": "60",
            "EXECUTIONS_TABLE_NAME": "executions",
            "IDEMPOTENCY_TABLE_NAME": "idempotency",
            "RECORD_TTL_DAYS": "30",
            "hilos_read_timeout_seconds": "99",  # lower case: not ours, ignored
            "PATH": "/usr/bin",  # the rest of the environment is ignored
        }
    )

    assert settings.hilos_api_url == "http://127.0.0.1:8080/api"  # trailing slash dropped
    assert settings.run_url(FLOW_ID) == f"http://127.0.0.1:8080/api/channel/whatsapp/flow/{FLOW_ID}/run"
    assert settings.hilos_connect_timeout_seconds == 1.5
    assert settings.hilos_read_timeout_seconds == 12.0
    assert settings.hilos_connect_retries == 0
    assert settings.hilos_token_secret_id.endswith("hilos-token-AbCdEf")
    assert settings.hilos_token_max_age_seconds == 60
    assert (settings.executions_table_name, settings.idempotency_table_name) == ("executions", "idempotency")
    assert settings.record_ttl_days == 30


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HILOS_API_URL", "not a url"),
        ("HILOS_API_URL", "api.hilos.io/api"),
        ("HILOS_API_URL", "ftp://api.hilos.io/api"),
        ("HILOS_RUN_PATH", "/flow/run"),
        ("HILOS_RUN_PATH", "flow/{flow_id}/run"),
        ("HILOS_CONNECT_TIMEOUT_SECONDS", "-1"),
        ("HILOS_CONNECT_TIMEOUT_SECONDS", "0"),
        ("HILOS_CONNECT_TIMEOUT_SECONDS", "soon"),
        ("HILOS_READ_TIMEOUT_SECONDS", "-0.5"),
        ("HILOS_READ_TIMEOUT_SECONDS", "601"),
        ("HILOS_CONNECT_RETRIES", "-1"),
        ("HILOS_CONNECT_RETRIES", "1.5"),
        ("HILOS_CONNECT_RETRIES", "6"),
        ("HILOS_TOKEN_MAX_AGE_SECONDS", "-1"),
        ("IDEMPOTENCY_TTL_SECONDS", "59"),
        ("RECORD_TTL_DAYS", "0"),
        ("RECORD_TTL_DAYS", "ninety"),
        ("MAX_BODY_BYTES", "100"),
    ],
)
def test_an_invalid_value_is_a_configuration_error_naming_the_variable(variable: str, value: str):
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({variable: value})

    assert variable in info.value.message
    assert not info.value.retryable


def test_every_invalid_variable_is_named_at_once():
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({"HILOS_API_URL": "nope", "RECORD_TTL_DAYS": "0", "HILOS_CONNECT_RETRIES": "x"})
    assert all(name in info.value.message for name in ("HILOS_API_URL", "RECORD_TTL_DAYS", "HILOS_CONNECT_RETRIES"))


def test_the_error_does_not_chain_pydantic_internals():
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({"HILOS_API_URL": "nope"})
    assert info.value.__suppress_context__
    assert info.value.__cause__ is None


def test_run_url_puts_the_flow_id_in_the_path():
    settings = Settings.from_env({"HILOS_API_URL": "https://hilos.example.com/api"})
    assert settings.run_url("a3ff7ee5-0c11-49e2-a0d6-7e316626f7b1") == (
        "https://hilos.example.com/api/flow/a3ff7ee5-0c11-49e2-a0d6-7e316626f7b1/run"
    )


def test_settings_are_immutable():
    settings = Settings.from_env({})
    with pytest.raises(ValidationError):
        settings.hilos_api_url = "https://elsewhere.example.com"  # type: ignore[misc]


def test_get_settings_reads_the_environment_once(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RECORD_TTL_DAYS", "7")
    get_settings.cache_clear()
    try:
        first = get_settings()
        monkeypatch.setenv("RECORD_TTL_DAYS", "8")
        assert get_settings() is first
        assert first.record_ttl_days == 7
    finally:
        get_settings.cache_clear()


def test_get_settings_fails_loudly_on_a_bad_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HILOS_RUN_PATH", "/no-flow-id")
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigurationError, match="HILOS_RUN_PATH"):
            get_settings()
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize("path", ["/flow/{flow_id}/{channel}", "/flow/{flow_id}/run{", "/flow/{flow_id}/{0}"])
def test_a_run_path_that_cannot_be_formatted_is_refused_at_start(path: str):
    with pytest.raises(ConfigurationError, match="HILOS_RUN_PATH"):
        Settings.from_env({"HILOS_RUN_PATH": path})
