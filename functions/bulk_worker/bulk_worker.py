"""bulk_worker: the runs queue's consumer. Batch plumbing only; each record's work is in the layer
(``hilos_runner.worker``).

Records of a batch run concurrently: Powertools' AsyncBatchProcessor gathers one coroutine per
record, and each hands its (synchronous: requests, boto3) work to a thread pool whose size,
WORKER_CONCURRENCY, bounds how many Hilos calls one invocation makes at once. Powertools builds
``batchItemFailures`` from the records that raised, so SQS deletes exactly the others.
"""

import asyncio
from typing import Any

from aws_lambda_powertools.utilities.batch import AsyncBatchProcessor, EventType, async_process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from hilos_runner.factories import queued_run_worker, record_executor
from hilos_runner.idempotency import idempotency_config
from hilos_runner.observability import logger, metrics, tracer


async def record_handler(record: SQSRecord, lambda_context: LambdaContext) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(record_executor(), queued_run_worker().process, record, lambda_context)


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # In-progress idempotency records expire with this invocation, so a redelivery after a crash or
    # timeout is not blocked until the idempotency TTL.
    idempotency_config().register_lambda_context(context)
    # One processor per invocation: it holds the batch's results. When every record fails the answer
    # still lists them all (raise_on_entire_batch_failure=False): a Hilos outage is a retry, not a
    # function error, so the Errors alarm keeps meaning "the worker is broken".
    processor = AsyncBatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return dict(async_process_partial_response(event, record_handler, processor, context))
