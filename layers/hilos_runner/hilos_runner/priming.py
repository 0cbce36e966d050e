"""SnapStart runtime hooks for run_api (``snapshot_restore_py``, part of Lambda's Python runtimes).

With SnapStart (template parameter ``SnapStart``) Lambda runs init and the before-snapshot hooks once, when a
version is published, and restores new environments from that snapshot. So:

- before the snapshot, ``prime_api`` builds what a first request would: the clients, the Hilos session, the
  services and the idempotency config (``hilos_runner.factories``), one request through the API
  resolver that validation refuses (the route's validators and the error answer), and the DynamoDB operations
  a run uses, each called once through botocore's Stubber (parameter validation, endpoint resolution and
  serialization are done and cached; the Stubber answers instead of sending). It reads no token and opens no
  connection, so the snapshot holds neither;
- after a restore, ``after_restore`` re-seeds ``random`` (every environment restored from one snapshot would
  otherwise draw the same retry jitter) and reads the Hilos token, now, fresh, off the first request's path. If
  that read fails, the first request reads it as in any cold start. Connections are opened by the first request.
"""

import json
import random
from typing import Any

# A run request for a valid flow with no contacts: refused by validation (422) before any service is called.
_REFUSED_RUN = {
    "version": "2.0",
    "routeKey": "$default",
    "rawPath": "/flows/00000000-0000-4000-8000-000000000000/runs",
    "rawQueryString": "",
    "headers": {"content-type": "application/json"},
    "requestContext": {
        "accountId": "000000000000",
        "apiId": "priming",
        "domainName": "priming.local",
        "domainPrefix": "priming",
        "http": {
            "method": "POST",
            "path": "/flows/00000000-0000-4000-8000-000000000000/runs",
            "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.1",
            "userAgent": "snapstart-priming",
        },
        "requestId": "snapstart-priming",
        "routeKey": "$default",
        "stage": "$default",
        "time": "01/Jan/2026:00:00:00 +0000",
        "timeEpoch": 0,
    },
    "body": json.dumps({"contact_list": []}),
    "isBase64Encoded": False,
}


def prime_api(app: Any) -> None:
    """Before the snapshot: everything a first request builds, except the token and the connections."""
    from hilos_runner import factories
    from hilos_runner.idempotency import idempotency_config

    factories.run_service()  # the DynamoDB client, the token source (unread), the Hilos client and session
    factories.bulk_service()  # the SQS client
    factories.completion_publisher()  # the EventBridge client (GET /runs/{id}?refresh=true)
    idempotency_config()
    answer = app.resolve(dict(_REFUSED_RUN), None)
    if answer["statusCode"] != 422:  # the hook must never have done real work
        raise RuntimeError(f"priming request answered {answer['statusCode']}, not 422")
    _prime_dynamodb_operations(factories.aws_client("dynamodb"))


# The operations of a run's path (and GET /runs/{id}), with the answers the Stubber gives instead of DynamoDB.
_KEY = {"run_id": {"S": "snapstart-priming"}}
_DYNAMODB_OPERATIONS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("put_item", {"Item": _KEY, "ConditionExpression": "attribute_not_exists(run_id)"}, {}),
    ("batch_write_item", {"RequestItems": {"t": [{"PutRequest": {"Item": _KEY}}]}}, {"UnprocessedItems": {}}),
    ("get_item", {"Key": _KEY, "ConsistentRead": True}, {}),
    (
        "update_item",
        {"Key": _KEY, "UpdateExpression": "SET a = :a", "ExpressionAttributeValues": {":a": {"N": "1"}}},
        {},
    ),
]


def _prime_dynamodb_operations(client: Any) -> None:
    from botocore.stub import Stubber

    with Stubber(client) as stubber:
        for operation, parameters, answer in _DYNAMODB_OPERATIONS:
            stubber.add_response(operation, answer)
            table = {} if operation == "batch_write_item" else {"TableName": "snapstart-priming"}
            getattr(client, operation)(**table, **parameters)


def after_restore() -> None:
    """After a restore: what must differ between environments restored from one snapshot, and the token."""
    from hilos_runner import factories
    from hilos_runner.errors import ConfigurationError, DependencyUnavailableError
    from hilos_runner.observability import logger

    random.seed()
    try:
        factories.token_source().get()
    except (ConfigurationError, DependencyUnavailableError) as error:  # the first request tries again
        logger.warning("Could not read the Hilos token after the restore", extra={"error": str(error)})
