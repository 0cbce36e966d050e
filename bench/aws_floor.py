"""The AWS-inclusive floor of the 10,000-contact drain: a bare script doing only what a queued run minimally
needs, against the same local stack (its moto server and Hilos sandbox), at the same concurrency as the stack's
workers: receive a batch, then per message one conditional write before the Hilos call, the call, one write
after it, and the delete. No validation, records, idempotency or retries: what is left is AWS and Hilos."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from botocore.config import Config

FLOOR_FLOW_ID = "0f1c2d3e-4b5a-4697-8a1b-2c3d4e5f6a7b"  # not the measured flow: the sandbox counts them apart


def _client(stack: Any, service: str, calls: Counter[str], pool: int) -> Any:
    import boto3

    client = boto3.client(
        service,
        endpoint_url=stack.info["aws_endpoint_url"],
        region_name=stack.info["aws_region"],
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106  (moto's fake credentials)
        config=Config(max_pool_connections=pool),
    )
    client.meta.events.register("before-call", lambda model, **_: calls.update([model.name]))
    return client


def drain(stack: Any, hilos_bodies: list[bytes], pollers: int, per_poller: int) -> tuple[float, Counter[str]]:
    """Seconds to drain one message per Hilos run body the minimal way, and the AWS calls it made."""
    setup: Counter[str] = Counter()
    sqs_setup = _client(stack, "sqs", setup, 2)
    queue_url = sqs_setup.create_queue(QueueName=f"bench-floor-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    for start in range(0, len(hilos_bodies), 10):
        entries = [
            {"Id": str(index), "MessageBody": body.decode()}
            for index, body in enumerate(hilos_bodies[start : start + 10])
        ]
        assert not sqs_setup.send_message_batch(QueueUrl=queue_url, Entries=entries).get("Failed")
    secrets = _client(stack, "secretsmanager", setup, 2)
    (secret,) = secrets.list_secrets()["SecretList"]
    token = secrets.get_secret_value(SecretId=secret["ARN"])["SecretString"]  # held, as a warm function holds it
    run_url = f"{stack.info['hilos_url']}/flow/{FLOOR_FLOW_ID}/run"
    table = stack.info["executions_table"]

    calls: Counter[str] = Counter()
    concurrency = pollers * per_poller
    sqs, dynamodb = _client(stack, "sqs", calls, concurrency), _client(stack, "dynamodb", calls, concurrency)
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=concurrency))
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    remaining = len(hilos_bodies)
    lock = threading.Lock()
    failures: list[BaseException] = []
    finished: list[float] = []

    def one(message: dict[str, Any]) -> None:
        nonlocal remaining
        key = {"run_id": {"S": f"floor-{message['MessageId']}"}}
        dynamodb.put_item(TableName=table, Item=key, ConditionExpression="attribute_not_exists(run_id)")
        answer = session.post(run_url, data=message["Body"], headers=headers, timeout=30)
        assert answer.status_code == 201, answer.text
        dynamodb.put_item(TableName=table, Item={**key, "hilos_execution_id": {"S": answer.json()["id"]}})
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        with lock:
            remaining -= 1
            if remaining == 0:
                finished.append(time.perf_counter())  # not the join: a poller may still sit in a long poll

    def poll(executor: ThreadPoolExecutor) -> None:
        try:
            while remaining > 0 and not failures:
                batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
                for future in [executor.submit(one, message) for message in batch.get("Messages", [])]:
                    future.result()
        except Exception as error:  # reported by drain(), not lost in the thread
            failures.append(error)

    started = time.perf_counter()
    executors = [ThreadPoolExecutor(per_poller) for _ in range(pollers)]
    threads = [threading.Thread(target=poll, args=(executor,)) for executor in executors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    for executor in executors:
        executor.shutdown()
    if failures:
        raise failures[0]
    assert remaining == 0, f"{remaining} floor messages left"
    return finished[0] - started, calls
