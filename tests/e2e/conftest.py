"""Fixtures of the end-to-end tests: the local stack in a subprocess, one per test module."""

from collections.abc import Iterator

import pytest

from tests.e2e.local_stack import RunningStack, start_stack, stop_stack

# Fast retries locally: failed messages come back after 2 s instead of the deployed minutes.
E2E_STACK_ARGS = ("--visibility-timeout=2",)


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    stack = start_stack(tmp_path_factory.mktemp("local-stack"), *E2E_STACK_ARGS)
    try:
        yield stack
    finally:
        stop_stack(stack)
