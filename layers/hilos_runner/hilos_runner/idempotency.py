"""The idempotency policy: a run, or a bulk submit, with an idempotency key happens at most once per key.

Powertools' idempotency (on DynamoDB) keys each call on a ``Fingerprint`` of its command; a keyed run's
execution record is the lasting memory of the key beyond Powertools' TTL (``start_run``). Powertools'
errors become domain errors here, so the API and the worker answer them as any other.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from pydantic import BaseModel

from hilos_runner import factories
from hilos_runner.errors import DependencyUnavailableError, IdempotencyInProgressError, IdempotencyKeyReusedError
from hilos_runner.factories import cached
from hilos_runner.observability import logger
from hilos_runner.settings import get_settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig

    from hilos_runner.bulk import BulkAccepted, BulkCommand
    from hilos_runner.runs import RunCommand, RunResult


class Fingerprint(BaseModel):
    """The idempotency payload of a run or a bulk submit (key + [flow_id, request]): the digest of the body
    instead of the contacts, so Powertools copies and hashes a few bytes, not the whole request (it
    deep-copies its payload: ~70 ms for 250 contacts)."""

    flow_id: UUID
    request: str
    idempotency_key: str | None = None


class _Keyed(Protocol):
    flow_id: UUID
    idempotency_key: str | None

    def digest(self) -> str: ...


def fingerprint(command: _Keyed) -> Fingerprint:
    return Fingerprint(flow_id=command.flow_id, request=command.digest(), idempotency_key=command.idempotency_key)


@cached
def idempotency_config() -> "IdempotencyConfig":
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig

    return IdempotencyConfig(
        event_key_jmespath="idempotency_key",
        # The same key with another flow or body is a caller bug, not a repeat: refuse it.
        payload_validation_jmespath="[flow_id, request]",
        expires_after_seconds=get_settings().idempotency_ttl_seconds,
    )


def _persistence() -> "DynamoDBPersistenceLayer":
    # One per idempotent function: Powertools keeps the function's key prefix on the persistence object.
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

    return DynamoDBPersistenceLayer(
        table_name=get_settings().idempotency_table_name, boto3_client=factories.aws_client("dynamodb")
    )


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


@cached
def _idempotent_start() -> "Callable[..., RunResult]":
    from hilos_runner.runs import RunResult

    def start(command: Fingerprint, run: "RunCommand", started: "list[RunResult]") -> RunResult:
        result = _start_or_schedule(run)
        started.append(result)  # Hilos was called: if storing the result fails, this is still the answer
        return result

    return _idempotent(start, RunResult, "run")


@cached
def _idempotent_bulk_submit() -> "Callable[..., BulkAccepted]":
    from hilos_runner.bulk import BulkAccepted

    def submit(command: Fingerprint, bulk: "BulkCommand") -> BulkAccepted:
        return factories.bulk_service().submit(bulk)

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


def _start_or_schedule(command: "RunCommand") -> "RunResult":
    """Start the run now, or, with a start_at, record it SCHEDULED and start it then (hilos_runner.scheduling)."""
    if command.start_at is not None:
        return factories.run_scheduler().schedule_run(command)
    return factories.run_service().start(command)


def start_run(command: "RunCommand") -> "RunResult":
    """Start a run; with an idempotency key, at most once per key (Powertools idempotency).

    A keyed run's id is derived from its flow, key and body, so its execution record is the lasting memory
    of the key: once Powertools' record has expired, or if storing the answer failed after Hilos was
    called, a repeat finds the run's record and is never sent again. A stored answer whose run was
    resolved since (reconciliation) is replaced by the record as it is now."""
    from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyPersistenceLayerError

    from hilos_runner.execution_records import RunStatus
    from hilos_runner.runs import RunResult

    if command.idempotency_key is None:
        return _start_or_schedule(command)
    if command.run_id is None:
        command = command.model_copy(update={"run_id": command.keyed_run_id()})
    started: list[RunResult] = []
    try:
        with _idempotency_errors_as_domain_errors():
            result: RunResult = _idempotent_start()(command=fingerprint(command), run=command, started=started)
    except DependencyUnavailableError as error:
        if not started or not isinstance(error.__cause__, IdempotencyPersistenceLayerError):
            raise
        # Hilos has been called: never answer "nothing started" now. The record holds the outcome.
        logger.warning("the idempotency store did not keep a run's answer", extra={"run_id": str(command.run_id)})
        return started[0]
    if result.run.awaits_reconcile or result.run.status is RunStatus.SCHEDULED:  # settled or started since
        current = factories.execution_store().get(result.run.run_id)
        if current is not None and current.updated_at > result.run.updated_at:
            return RunResult(run=current)
    return result


def submit_bulk(command: "BulkCommand") -> "BulkAccepted":
    """Queue a bulk run; with an idempotency key, a repeat gets the first answer without re-queuing."""
    if command.idempotency_key is None:
        return factories.bulk_service().submit(command)
    with _idempotency_errors_as_domain_errors():
        return _idempotent_bulk_submit()(command=fingerprint(command), bulk=command)
