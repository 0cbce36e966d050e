"""Where every client, session and service is built: once per process, on first use.

Nothing here runs at import time, so tests can start their mocks before any client exists, and a
warm Lambda invocation constructs nothing. Every cached factory is made with ``cached``, which
registers it, so ``reset()`` (tests, the local stack's reload) drops them all and cannot miss one.
"""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import TYPE_CHECKING, Any

from hilos_runner.settings import get_settings

if TYPE_CHECKING:
    from functools import _lru_cache_wrapper

    from hilos_runner.bulk import BulkRunService
    from hilos_runner.completion_events import CompletionEventPublisher
    from hilos_runner.contact_outcomes import ContactOutcomes
    from hilos_runner.credentials import HilosTokenSource
    from hilos_runner.execution_store import ExecutionStore
    from hilos_runner.hilos import HilosClient
    from hilos_runner.queue_sender import QueueSender
    from hilos_runner.reconcile import Reconciler
    from hilos_runner.retries import RetryService
    from hilos_runner.runs import RunService
    from hilos_runner.scheduling import RunScheduler
    from hilos_runner.sync import StatusSync
    from hilos_runner.worker import QueuedRunWorker

# Every cached factory of the layer (settings.get_settings too): what reset() clears.
CACHED_FACTORIES: "list[_lru_cache_wrapper[Any]]" = [get_settings]


def cached[T](factory: Callable[..., T]) -> "_lru_cache_wrapper[T]":
    """``functools.cache``, registered so that ``reset()`` clears it."""
    wrapped = cache(factory)
    CACHED_FACTORIES.append(wrapped)
    return wrapped


@cached
def boto3_session() -> Any:
    import boto3

    return boto3.session.Session()


@cached
def aws_client(service_name: str) -> Any:
    """The boto3 client of ``service_name`` ("dynamodb", "sqs", "secretsmanager", "events")."""
    from botocore.config import Config

    # Standard retry mode backs off on throttling; short timeouts keep a stuck dependency from
    # eating the whole Lambda budget.
    config = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=2, read_timeout=5)
    return boto3_session().client(service_name, config=config)


@cached
def token_source() -> "HilosTokenSource":
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    from hilos_runner.credentials import HilosTokenSource

    settings = get_settings()
    provider = SecretsProvider(boto3_client=aws_client("secretsmanager"))
    return HilosTokenSource(provider, settings.hilos_token_secret_id, settings.hilos_token_max_age_seconds)


@cached
def hilos_client() -> "HilosClient":
    from hilos_runner.hilos import HilosClient, build_session

    settings = get_settings()
    # One pooled connection per concurrently processed record of a worker batch.
    pool_size = max(10, settings.worker_concurrency)
    return HilosClient(settings, token_source().get, build_session(settings.hilos_connect_retries, pool_size))


@cached
def execution_store() -> "ExecutionStore":
    from hilos_runner.execution_store import ExecutionStore

    settings = get_settings()
    return ExecutionStore(aws_client("dynamodb"), settings.executions_table_name, settings.record_ttl_days)


@cached
def run_service() -> "RunService":
    from hilos_runner.runs import RunService

    return RunService(hilos_client(), execution_store(), get_settings())


@cached
def queue_sender() -> "QueueSender":
    from hilos_runner.queue_sender import QueueSender

    return QueueSender(aws_client("sqs"), get_settings().runs_queue_url)


@cached
def bulk_service() -> "BulkRunService":
    from hilos_runner.bulk import BulkRunService

    return BulkRunService(execution_store(), queue_sender(), get_settings().bulk_chunk_size, run_scheduler)


@cached
def queued_run_worker() -> "QueuedRunWorker":
    from hilos_runner.idempotency import start_run
    from hilos_runner.worker import QueuedRunWorker

    return QueuedRunWorker(get_settings(), execution_store(), queue_sender(), start_run, run_scheduler)


@cached
def run_scheduler() -> "RunScheduler":
    from hilos_runner.scheduling import RunScheduler, ScheduleClient

    settings = get_settings()
    schedules = ScheduleClient(aws_client("scheduler"), settings)
    return RunScheduler(settings, execution_store(), run_service(), schedules, queue_sender())


@cached
def record_executor() -> ThreadPoolExecutor:
    """Threads for the records one invocation works on at once (an SQS batch, a status sync pass); its
    size, WORKER_CONCURRENCY, bounds the Hilos calls one invocation makes at the same time."""
    return ThreadPoolExecutor(max_workers=get_settings().worker_concurrency, thread_name_prefix="record")


@cached
def completion_publisher() -> "CompletionEventPublisher":
    from hilos_runner.completion_events import CompletionEventPublisher

    return CompletionEventPublisher(aws_client("events"), get_settings().completion_event_bus_name)


@cached
def reconciler() -> "Reconciler":
    from hilos_runner.reconcile import Reconciler

    return Reconciler(get_settings(), hilos_client(), execution_store(), run_service())


@cached
def contact_outcomes() -> "ContactOutcomes":
    from hilos_runner.contact_outcomes import ContactOutcomes

    return ContactOutcomes(hilos_client(), execution_store())


@cached
def retry_service() -> "RetryService":
    from hilos_runner.idempotency import start_run, submit_bulk
    from hilos_runner.retries import RetryService

    return RetryService(execution_store(), contact_outcomes(), start_run, submit_bulk)


@cached
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


def reset() -> None:
    """Forget every cached client, service and setting (tests and the local stack's reload)."""
    if record_executor.cache_info().currsize:
        record_executor().shutdown(wait=False)
    for factory in CACHED_FACTORIES:
        factory.cache_clear()
