"""Cached factories: every client, session and service is built once per process, on first use.

Nothing here runs at import time, so tests can start their mocks before any client exists, and a
warm Lambda invocation constructs nothing. ``reset()`` drops the cache (tests, local stack reloads).
"""

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any

from hilos_runner.errors import (
    DependencyUnavailableError,
    IdempotencyInProgressError,
    IdempotencyKeyReusedError,
)
from hilos_runner.observability import logger
from hilos_runner.settings import get_settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig

    from hilos_runner.bulk import BulkAccepted, BulkCommand, BulkFingerprint, BulkRunService
    from hilos_runner.completion_events import CompletionEventPublisher
    from hilos_runner.contact_outcomes import ContactOutcomes
    from hilos_runner.credentials import HilosTokenSource
    from hilos_runner.executions import ExecutionStore
    from hilos_runner.hilos import HilosClient
    from hilos_runner.queue import QueueSender
    from hilos_runner.reconcile import Reconciler
    from hilos_runner.retries import RetryService
    from hilos_runner.runs import RunCommand, RunFingerprint, RunResult, RunService
    from hilos_runner.sync import StatusSync
    from hilos_runner.worker import QueuedRunWorker


@cache
def boto3_session() -> Any:
    import boto3

    return boto3.session.Session()


def _boto_config() -> Any:
    from botocore.config import Config

    # Standard retry mode backs off on throttling; short timeouts keep a stuck dependency from
    # eating the whole Lambda budget.
    return Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=2, read_timeout=5)


@cache
def dynamodb_client() -> Any:
    return boto3_session().client("dynamodb", config=_boto_config())


@cache
def sqs_client() -> Any:
    return boto3_session().client("sqs", config=_boto_config())


@cache
def secrets_client() -> Any:
    return boto3_session().client("secretsmanager", config=_boto_config())


@cache
def events_client() -> Any:
    return boto3_session().client("events", config=_boto_config())


@cache
def token_source() -> "HilosTokenSource":
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    from hilos_runner.credentials import HilosTokenSource

    settings = get_settings()
    provider = SecretsProvider(boto3_client=secrets_client())
    return HilosTokenSource(provider, settings.hilos_token_secret_id, settings.hilos_token_max_age_seconds)


@cache
def hilos_client() -> "HilosClient":
    from hilos_runner.hilos import HilosClient, build_session

    settings = get_settings()
    # One pooled connection per concurrently processed record of a worker batch.
    pool_size = max(10, settings.worker_concurrency)
    return HilosClient(settings, token_source().get, build_session(settings.hilos_connect_retries, pool_size))


@cache
def execution_store() -> "ExecutionStore":
    from hilos_runner.executions import ExecutionStore

    settings = get_settings()
    return ExecutionStore(dynamodb_client(), settings.executions_table_name, settings.record_ttl_days)


@cache
def run_service() -> "RunService":
    from hilos_runner.runs import RunService

    return RunService(hilos_client(), execution_store(), get_settings())


@cache
def idempotency_config() -> "IdempotencyConfig":
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig

    return IdempotencyConfig(
        event_key_jmespath="idempotency_key",
        # The same key with another flow or body is a caller bug, not a repeat: refuse it.
        payload_validation_jmespath="[flow_id, request]",
        expires_after_seconds=get_settings().idempotency_ttl_seconds,
    )


@cache
def queue_sender() -> "QueueSender":
    from hilos_runner.queue import QueueSender

    return QueueSender(sqs_client(), get_settings().runs_queue_url)


@cache
def bulk_service() -> "BulkRunService":
    from hilos_runner.bulk import BulkRunService

    return BulkRunService(execution_store(), queue_sender(), get_settings().bulk_chunk_size)


@cache
def queued_run_worker() -> "QueuedRunWorker":
    from hilos_runner.worker import QueuedRunWorker

    return QueuedRunWorker(get_settings(), execution_store(), queue_sender(), start_run)


@cache
def record_executor() -> ThreadPoolExecutor:
    """Threads for the records one invocation works on at once (an SQS batch, a status sync pass); its
    size, WORKER_CONCURRENCY, bounds the Hilos calls one invocation makes at the same time."""
    return ThreadPoolExecutor(max_workers=get_settings().worker_concurrency, thread_name_prefix="record")


@cache
def completion_publisher() -> "CompletionEventPublisher":
    from hilos_runner.completion_events import CompletionEventPublisher

    return CompletionEventPublisher(events_client(), get_settings().completion_event_bus_name)


@cache
def reconciler() -> "Reconciler":
    from hilos_runner.reconcile import Reconciler

    return Reconciler(get_settings(), hilos_client(), execution_store(), run_service())


@cache
def contact_outcomes() -> "ContactOutcomes":
    from hilos_runner.contact_outcomes import ContactOutcomes

    return ContactOutcomes(hilos_client(), execution_store())


@cache
def retry_service() -> "RetryService":
    from hilos_runner.retries import RetryService

    return RetryService(execution_store(), contact_outcomes(), start_run, submit_bulk)


@cache
def status_sync() -> "StatusSync":
    from hilos_runner.sync import StatusSync

    return StatusSync(
        get_settings(),
        hilos_client(),
        execution_store(),
        completion_publisher(),
        reconciler=reconciler(),
        executor=record_executor(),
    )


def _persistence() -> "DynamoDBPersistenceLayer":
    # One per idempotent function: Powertools keeps the function's key prefix on the persistence object.
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

    return DynamoDBPersistenceLayer(table_name=get_settings().idempotency_table_name, boto3_client=dynamodb_client())


def _idempotent(function: "Callable[..., Any]", result_model: type, key_prefix: str) -> "Callable[..., Any]":
    """``function`` made idempotent on its ``command`` fingerprint (Powertools), its result stored as
    ``result_model``. Runs and bulk submits share the store and config; the prefix keeps them apart."""
    from aws_lambda_powertools.utilities.idempotency import idempotent_function
    from aws_lambda_powertools.utilities.idempotency.serialization.pydantic import PydanticSerializer

    return idempotent_function(
        function,
        data_keyword_argument="command",
        persistence_store=_persistence(),
        config=idempotency_config(),
        output_serializer=PydanticSerializer(result_model),
        key_prefix=key_prefix,
    )


@cache
def _idempotent_start() -> "Callable[..., RunResult]":
    from hilos_runner.runs import RunResult

    def start(command: "RunFingerprint", run: "RunCommand", started: "list[RunResult]") -> RunResult:
        result = run_service().start(run)
        started.append(result)  # Hilos was called: if storing the result fails, this is still the answer
        return result

    return _idempotent(start, RunResult, "run")


@cache
def _idempotent_bulk_submit() -> "Callable[..., BulkAccepted]":
    from hilos_runner.bulk import BulkAccepted

    def submit(command: "BulkFingerprint", bulk: "BulkCommand") -> BulkAccepted:
        return bulk_service().submit(bulk)

    return _idempotent(submit, BulkAccepted, "bulk")


@contextmanager
def _idempotency_errors_as_domain_errors() -> Iterator[None]:
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyAlreadyInProgressError,
        IdempotencyPersistenceLayerError,
        IdempotencyValidationError,
    )

    try:
        yield
    except IdempotencyValidationError:
        raise IdempotencyKeyReusedError(
            "this idempotency key was already used with a different flow or body",
            details=[{"field": "header.idempotency-key", "reason": "already used with another request"}],
        ) from None
    except IdempotencyAlreadyInProgressError:
        raise IdempotencyInProgressError("a request with this idempotency key is still in progress") from None
    except IdempotencyPersistenceLayerError as exc:
        raise DependencyUnavailableError("the idempotency store is unavailable") from exc


def start_run(command: "RunCommand") -> "RunResult":
    """Start a run; with an idempotency key, at most once per key (Powertools idempotency).

    A keyed run's id is derived from its flow, key and body, so its execution record is the lasting memory
    of the key: once Powertools' record has expired, or if storing the answer failed after Hilos was
    called, a repeat finds the run's record and is never sent again. A stored answer whose run was
    resolved since (reconciliation) is replaced by the record as it is now."""
    from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyPersistenceLayerError

    from hilos_runner.runs import RunResult

    if command.idempotency_key is None:
        return run_service().start(command)
    if command.run_id is None:
        command = command.model_copy(update={"run_id": command.keyed_run_id()})
    started: list[RunResult] = []
    try:
        with _idempotency_errors_as_domain_errors():
            result: RunResult = _idempotent_start()(command=command.fingerprint(), run=command, started=started)
    except DependencyUnavailableError as error:
        if not started or not isinstance(error.__cause__, IdempotencyPersistenceLayerError):
            raise
        # Hilos has been called: never answer "nothing started" now. The record holds the outcome.
        logger.warning("the idempotency store did not keep a run's answer", extra={"run_id": str(command.run_id)})
        return started[0]
    if result.run.awaits_reconcile:
        current = execution_store().get(result.run.run_id)
        if current is not None and current.updated_at > result.run.updated_at:
            return RunResult(run=current)
    return result


def submit_bulk(command: "BulkCommand") -> "BulkAccepted":
    """Queue a bulk run; with an idempotency key, a repeat gets the first answer without re-queuing."""
    if command.idempotency_key is None:
        return bulk_service().submit(command)
    with _idempotency_errors_as_domain_errors():
        return _idempotent_bulk_submit()(command=command.fingerprint(), bulk=command)


def reset() -> None:
    """Forget every cached client and setting (tests and the local stack's reload)."""
    for factory in (
        get_settings,
        boto3_session,
        dynamodb_client,
        secrets_client,
        sqs_client,
        token_source,
        hilos_client,
        execution_store,
        run_service,
        idempotency_config,
        _idempotent_start,
        queue_sender,
        bulk_service,
        queued_run_worker,
        _idempotent_bulk_submit,
        events_client,
        completion_publisher,
        reconciler,
        status_sync,
        contact_outcomes,
        retry_service,
    ):
        factory.cache_clear()
    if record_executor.cache_info().currsize:
        record_executor().shutdown(wait=False)
    record_executor.cache_clear()
