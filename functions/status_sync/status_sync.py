"""status_sync: on a schedule, brings the records of runs Hilos is still working on up to date with
Hilos' execution status, and announces finished runs on EventBridge. The work is in the layer
(``hilos_runner.sync``); one pass at a time (``hilos_runner.lease``)."""

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from hilos_runner.factories import status_sync
from hilos_runner.lease import status_sync_lease
from hilos_runner.observability import logger, metrics, tracer


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # Held for the rest of this invocation at most: a pass that dies keeps the next ticks out until its timeout.
    with status_sync_lease().held(context.aws_request_id, context.get_remaining_time_in_millis() / 1000) as held:
        if not held:
            logger.info("Another status sync pass is still running; this tick is skipped")
            return {"skipped": "another pass holds the status-sync lease"}
        # A failed Hilos read or write is counted and tried again at a later pass; only a failure to read
        # the index (DynamoDB down) fails the invocation, which the Errors alarm reports.
        return status_sync().sync_due(context).model_dump(mode="json")
