"""Shared fixtures: an isolated fake AWS account, the stack's resources from template.yaml, a function's
environment on top of it, its runs queue, a fake Hilos, and a guard that fails any test whose logs contain the
Hilos token."""

import io
import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest

# Before anything creates a boto3 client: fake credentials, a fixed region, no real endpoint.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "hilos-runner-test",
        "POWERTOOLS_METRICS_NAMESPACE": "HilosRunnerTest",
        "POWERTOOLS_LOG_LEVEL": "DEBUG",
    }
)
for _variable in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "HILOS_API_URL"):
    os.environ.pop(_variable, None)

# The functions' Logger takes its name from POWERTOOLS_SERVICE_NAME when hilos_runner.observability is
# first imported. Import it now, under the test service name the token guard below watches: imported
# later, inside a test that applied a function's environment from template.yaml, it would be named after
# the stack, and its lines would slip past the guard.
import hilos_runner.observability  # noqa: E402, F401
from tests.helpers import TEST_TOKEN, RunsQueue, use_function_environment  # noqa: E402


@pytest.fixture(autouse=True)
def logs_never_show_the_token() -> Iterator[io.StringIO]:
    """Capture every log line written during the test; fail the test if the token is in any."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setLevel(logging.DEBUG)
    watched = [logging.getLogger(), logging.getLogger(os.environ["POWERTOOLS_SERVICE_NAME"])]
    for logger in watched:
        logger.addHandler(handler)
    yield buffer
    for logger in watched:
        logger.removeHandler(handler)
    assert TEST_TOKEN not in buffer.getvalue(), "the Hilos token appeared in a log line"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator["StackResources"]:  # noqa: F821
    """moto's in-process AWS with the stack's tables, queues and secret created from template.yaml,
    and the function environment template.yaml gives the functions."""
    import boto3
    from moto import mock_aws

    from hilos_runner import factories
    from local.stack_resources import create_stack_resources

    with mock_aws():
        stack = create_stack_resources(boto3.Session(), hilos_token=TEST_TOKEN)
        use_function_environment(stack, "RunApiFunction", monkeypatch.setenv)
        yield stack
        factories.reset()


@pytest.fixture
def worker(aws: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The `aws` stack with bulk_worker's environment from template.yaml (Globals + its own variables)."""
    from hilos_runner import factories

    use_function_environment(aws, "BulkWorkerFunction", monkeypatch.setenv)
    yield aws
    factories.reset()


@pytest.fixture
def runs_queue(aws: Any) -> RunsQueue:
    """The stack's runs queue (and its dead-letter queue) in moto."""
    import boto3

    return RunsQueue(
        sqs=boto3.client("sqs"),
        url=aws.physical_ids["RunsQueue"],
        arn=aws.attributes[("RunsQueue", "Arn")],
        dlq_url=aws.physical_ids["RunsDeadLetterQueue"],
    )


@pytest.fixture
def hilos() -> Iterator["FakeHilos"]:  # noqa: F821
    """The fake Hilos (tests/fake_hilos.py) on the `requests` session: no network."""
    import responses

    from tests.fake_hilos import FakeHilos

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeHilos(mock)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """A skipped browser test must not pass unnoticed: say it loudly at the end of the run."""
    from tests.browser.conftest import NOT_RUN

    skipped = [report for report in terminalreporter.stats.get("skipped", []) if NOT_RUN in str(report.longrepr)]
    if skipped:
        terminalreporter.write_sep("!", f"{NOT_RUN} ({len(skipped)} skipped)", red=True, bold=True)
        terminalreporter.write_line("No Chromium on this machine: run tools/install-browser as root, then make test.")
