"""A HilosClient as the tests build it (settings, a token source, the session), its run call, and the check that an
error carries no token."""

from typing import Any
from unittest.mock import Mock
from uuid import UUID

from hilos_runner.hilos import HilosClient, build_session
from hilos_runner.models import FlowRunRequest
from hilos_runner.settings import Settings
from tests.helpers import FLOW_ID, TEST_TOKEN, run_body

FRESH_TOKEN = "hilos-fresh-token-0a9b8c7d"


def make_client(get_token: Any = None, **settings: Any) -> HilosClient:
    config = Settings(**settings)
    return HilosClient(config, get_token or Mock(return_value=TEST_TOKEN), build_session(config.hilos_connect_retries))


def run_request(contacts: int = 1) -> FlowRunRequest:
    return FlowRunRequest.model_validate(run_body(contacts=contacts))


def start(client: HilosClient) -> Any:
    return client.create_flow_execution(UUID(FLOW_ID), run_request())


def assert_no_token(error: Exception) -> None:
    text = f"{error} {error!r} {getattr(error, 'details', '')}"
    assert TEST_TOKEN not in text
    assert FRESH_TOKEN not in text
