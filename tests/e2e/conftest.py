"""Fixtures of the end-to-end tests: the local stack in a subprocess, shared by the modules of one test process.

Tests that share it keep out of each other's way by using their own flow ids (sandbox faults and stats
are per flow) and by restoring any global sandbox setting they change.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from local.running_stack import RunningStack, start_stack, stop_stack

# Fast retries locally: the worker's retry delays are capped at 1 s (RetryAfterMaxSeconds), batches are
# invoked as soon as messages arrive, and a bulk run of a few contacts still makes several chunks. The
# visibility timeout only matters after a worker crash; the template's 31 minutes would stall a test.
# No status sync tick within a test session (the first comes an hour after the start): these tests look
# at runs as the API and the worker leave them; test_status_sync.py runs its own stack with a fast tick.
E2E_STACK_ARGS = (
    "--sync-interval=3600",
    "--visibility-timeout=10",
    "--parameter-overrides",
    "RetryAfterMaxSeconds=1",
    "WorkerBatchingWindowSeconds=0",
    "BulkChunkSize=2",
)


# A stack whose status sync runs every second and whose sandbox moves a run one stage per status read, so a run
# finishes within a few ticks; its completion events reach a queue through its own bus and rule.
COMPLETION_BUS = "hilos-runner-e2e-completions"  # not "default": the stack creates the bus and the rule on it
SYNC_STACK_ARGS = (
    "--sync-interval=1",
    "--progression=per_read",
    "--visibility-timeout=10",
    "--parameter-overrides",
    f"CompletionEventBusName={COMPLETION_BUS}",
    "WorkerBatchingWindowSeconds=0",
)


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with stack_of_tests(tmp_path_factory.mktemp("local-stack"), *E2E_STACK_ARGS) as stack:
        yield stack


@contextmanager
def stack_of_tests(state_dir: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[RunningStack]:
    """A local stack for tests: stopped at the end (stop_stack checks that nothing is left behind), and its
    whole output checked for the Hilos token afterwards."""
    stack = start_stack(state_dir, *args, env=env)
    try:
        hilos_token = sandbox_token(stack)
        yield stack
    finally:
        stop_stack(stack)
    assert hilos_token not in stack.log_text(), "the (sandbox) Hilos token appeared in the stack's output"


def sandbox_token(stack: RunningStack) -> str:
    """The token the functions send to Hilos: only the stack's secret holds it."""
    secrets = stack.aws_client("secretsmanager")
    [secret] = secrets.list_secrets()["SecretList"]
    token = secrets.get_secret_value(SecretId=secret["ARN"])["SecretString"]
    assert token.startswith("sandbox-")
    assert len(token) > 20
    return token
