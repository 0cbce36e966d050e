"""Fixtures for the queued-run tests: the worker's environment on top of the `aws` stack, and the
stack's runs queue."""

from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import RunsQueue, use_function_environment


@pytest.fixture
def worker(aws: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The `aws` stack with bulk_worker's environment from template.yaml (Globals + its own variables)."""
    from hilos_runner import factories

    use_function_environment(aws, "BulkWorkerFunction", monkeypatch.setenv)
    yield aws
    factories.reset()


@pytest.fixture
def runs_queue(aws: Any) -> RunsQueue:
    import boto3

    return RunsQueue(
        sqs=boto3.client("sqs"),
        url=aws.physical_ids["RunsQueue"],
        arn=aws.attributes[("RunsQueue", "Arn")],
        dlq_url=aws.physical_ids["RunsDeadLetterQueue"],
    )
