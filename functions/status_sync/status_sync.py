"""status_sync: on a schedule, brings the records of runs Hilos is still working on up to date with
Hilos' execution status, and announces finished runs on EventBridge. The work is in the layer
(``hilos_runner.sync``)."""

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from hilos_runner.observability import logger, metrics, tracer
from hilos_runner.wiring import status_sync


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # A failed Hilos read or write is counted and tried again at a later pass; only a failure to read
    # the index (DynamoDB down) fails the invocation, which the Errors alarm reports.
    return status_sync().sync_due(context).model_dump(mode="json")
