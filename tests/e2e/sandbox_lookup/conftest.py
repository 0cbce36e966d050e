"""A Hilos sandbox for the lookup tests: one per module, reset before each test, or one of the test's own."""

from collections.abc import Iterator

import pytest
import requests

from local.sandbox import HilosSandbox
from tests.e2e.sandbox_lookup.lookups import started_sandbox


@pytest.fixture(scope="module")
def shared_sandbox() -> Iterator[HilosSandbox]:
    yield from started_sandbox()


@pytest.fixture
def sandbox(shared_sandbox: HilosSandbox) -> HilosSandbox:
    """Settings and stats back to the start; the executions of earlier tests stay (each test has its own flows)."""
    requests.post(f"{shared_sandbox.url}/_sandbox/reset", timeout=5).raise_for_status()
    return shared_sandbox


@pytest.fixture
def own_sandbox() -> Iterator[HilosSandbox]:
    """A sandbox of the test's own, for lists of every execution."""
    yield from started_sandbox()
