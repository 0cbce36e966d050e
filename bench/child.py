"""What the benchmarks run in fresh processes: `python bench/child.py MODE JOB_FILE`.

Run as a script, not as ``-m bench...``, so that a cold process imports only what its mode imports:
the standard library modules below, then the function (or, for the baselines, boto3 and requests).
The job file (JSON) holds the mode's inputs; the child writes its results (JSON) to ``job["result"]``.
The function's environment comes from the parent (template.yaml's, via bench.environment).
"""

import json
import os
import resource
import statistics
import sys
import time
import uuid
from typing import Any


class Context:
    """The few LambdaContext attributes the functions read (kept here: no import of local.events)."""

    function_name = "bench"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    function_version = "$LATEST"

    def __init__(self, timeout_seconds: float = 60.0) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _peak_rss_mb() -> float:
    # VmHWM is this process image's own peak; ru_maxrss would also carry the (large) benchmark parent's
    # peak, which Linux keeps across fork + exec.
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _import_function(job: dict[str, Any]) -> Any:
    sys.path[:0] = job["code_paths"]
    return __import__(job["module"])


# -- cold starts: the function vs the same calls made bare ----------------------------------------


def cold_function(job: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    function = _import_function(job)
    imported = time.perf_counter()
    answer = function.lambda_handler(job["event"], Context())
    phases = {"import_ms": (imported - started) * 1000, "first_call_ms": (time.perf_counter() - imported) * 1000}
    if job["module"] == "run_api":
        assert answer["statusCode"] == 201, answer
    else:
        assert answer == {"batchItemFailures": []}, answer
    # Where the dependencies came from: the built layer for the as-deployed rows, the venv otherwise.
    return {"peak_rss_mb": _peak_rss_mb(), "pydantic_file": sys.modules["pydantic"].__file__, **phases}


def cold_baseline(job: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    import importlib

    import boto3
    import requests

    for module in job.get("floor_imports", []):  # the dependency floor: the libraries the design calls for
        importlib.import_module(module)

    imported = time.perf_counter()
    secret = boto3.client("secretsmanager").get_secret_value(SecretId=os.environ["HILOS_TOKEN_SECRET_ID"])
    token = secret["SecretString"]
    if token.startswith("{"):
        token = json.loads(token)["token"]
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    answer = requests.post(job["hilos_url"], data=job["hilos_body"], headers=headers, timeout=10)
    assert answer.status_code == 201, answer.text
    if job.get("put_item"):
        boto3.client("dynamodb").put_item(
            TableName=os.environ["EXECUTIONS_TABLE_NAME"], Item={"run_id": {"S": str(uuid.uuid4())}}
        )
    phases = {"import_ms": (imported - started) * 1000, "first_call_ms": (time.perf_counter() - imported) * 1000}
    return {"peak_rss_mb": _peak_rss_mb(), **phases}


# -- warm overhead: AWS and Hilos answered instantly -----------------------------------------------


class _InstantDynamoDB:
    """put_item/get_item/batch_write_item answered at once: the store's own work (item building) still runs."""

    def put_item(self, **_: Any) -> dict[str, Any]:
        return {}

    def get_item(self, **_: Any) -> dict[str, Any]:
        return {}

    def update_item(self, **_: Any) -> dict[str, Any]:
        return {}

    def batch_write_item(self, **_: Any) -> dict[str, Any]:
        return {"UnprocessedItems": {}}


class _InstantSecrets:
    def get_secret_value(self, **_: Any) -> dict[str, Any]:
        return {"SecretString": "bench-token", "Name": "bench"}


def _answer_at_once(**instant: Any) -> None:
    """The factories' AWS clients of the services named (e.g. ``dynamodb=``) swapped for instant ones."""
    from hilos_runner import factories

    real = factories.aws_client
    factories.aws_client = lambda service_name: (
        instant[service_name]() if service_name in instant else real(service_name)
    )  # type: ignore[assignment]


def warm_overhead(job: dict[str, Any]) -> dict[str, Any]:
    import requests
    from requests.adapters import BaseAdapter

    function = _import_function(job)
    from hilos_runner import factories

    execution = json.dumps({"id": str(uuid.uuid4()), "status": "PROCESSING", "execute_for": "LIST"}).encode()

    class InstantHilos(BaseAdapter):
        def send(self, request: Any, **_: Any) -> requests.Response:
            response = requests.Response()
            response.status_code = 201
            response._content = execution
            response.request = request
            return response

        def close(self) -> None:
            pass

    # The project's factories, with their AWS clients swapped for instant ones: everything else
    # (settings, token source, store, run service, Hilos client and session) is the real code path.
    _answer_at_once(dynamodb=_InstantDynamoDB, secretsmanager=_InstantSecrets)
    session = factories.hilos_client()._session
    session.mount("https://", InstantHilos())
    session.mount("http://", InstantHilos())

    results = {}
    for size, calls in job["sizes"]:
        event = job["events"][str(size)]
        body = event["body"]
        function.lambda_handler(event, Context())  # the first call pays one-time costs; not counted
        ours, bare = [], []
        for _ in range(calls):  # alternate subject and baseline so noise hits both alike
            started = time.perf_counter()
            answer = function.lambda_handler(event, Context())
            ours.append(time.perf_counter() - started)
            started = time.perf_counter()
            json.loads(body)
            bare.append(time.perf_counter() - started)
            assert answer["statusCode"] == 201, answer
        results[str(size)] = {
            "median_ms": statistics.median(ours) * 1000,
            "baseline_median_ms": statistics.median(bare) * 1000,
        }
    return results


# -- no waste per warm call: counted, against moto and the sandbox ---------------------------------


def no_waste(job: dict[str, Any]) -> dict[str, Any]:
    import boto3.session
    import botocore.client
    import botocore.session
    import urllib3.connectionpool

    counts = {"boto3_sessions": 0, "botocore_clients": 0, "get_secret_value": 0, "hilos_connections": 0, "aws_calls": 0}

    def counting(cls: Any, name: str, what: str, when: Any = None) -> None:
        original = getattr(cls, name)

        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            if when is None or when(self, *args, **kwargs):
                counts[what] += 1
            return original(self, *args, **kwargs)

        setattr(cls, name, wrapper)

    counting(boto3.session.Session, "__init__", "boto3_sessions")
    counting(botocore.session.Session, "create_client", "botocore_clients")
    counting(
        botocore.client.BaseClient,
        "_make_api_call",
        "get_secret_value",
        lambda self, operation, *_a, **_k: operation == "GetSecretValue",
    )
    counting(botocore.client.BaseClient, "_make_api_call", "aws_calls")
    hilos_port = job["hilos_port"]
    counting(
        urllib3.connectionpool.HTTPConnectionPool,
        "_new_conn",
        "hilos_connections",
        lambda self: self.port == hilos_port,
    )

    function = _import_function(job)
    events = job["events"]
    answers = [function.lambda_handler(events[0], Context())]
    cold = dict(counts)
    counts.update(dict.fromkeys(counts, 0))
    answers += [function.lambda_handler(event, Context()) for event in events[1:]]
    for answer in answers:
        assert answer.get("statusCode", 201) == 201, answer
        assert not answer.get("batchItemFailures"), answer
    return {"cold": cold, "warm": counts, "warm_calls": len(events) - 1}


# -- batch concurrency: one batch of n records against a slow sandbox ------------------------------


def batch_timing(job: dict[str, Any]) -> dict[str, Any]:
    function = _import_function(job)
    if job["instant_aws"]:
        # DynamoDB answered at once; the token is still read (once, in the warm-up) from moto.
        _answer_at_once(dynamodb=_InstantDynamoDB)
    function.lambda_handler(job["warmup"], Context())  # secret, clients, connections: not counted
    single, batch = [], []
    for one, ten in zip(job["singles"], job["batches"], strict=True):
        for event, times in ((one, single), (ten, batch)):
            started = time.perf_counter()
            answer = function.lambda_handler(event, Context())
            times.append(time.perf_counter() - started)
            assert answer == {"batchItemFailures": []}, answer
    return {"single_ms": statistics.median(single) * 1000, "batch_ms": statistics.median(batch) * 1000}


# -- SnapStart: the first request of a restored environment vs warm ones -----------------------------


def restored_first_request(job: dict[str, Any]) -> dict[str, Any]:
    """Init, then (``prime``) the before-snapshot hooks, [the snapshot would be taken here], the after-restore
    hooks, then the first request and warm ones. Without ``prime``: init only, as a snapshot without hooks."""
    function = _import_function(job)
    from snapshot_restore_py import get_after_restore, get_before_snapshot

    hooks_before, hooks_after = (get_before_snapshot(), get_after_restore()) if job["prime"] else ([], [])
    for hook, args, kwargs in hooks_before:
        hook(*args, **kwargs)
    started = time.perf_counter()
    for hook, args, kwargs in hooks_after:
        hook(*args, **kwargs)
    restored = time.perf_counter()
    events = job["events"]
    times = []
    for event in events:
        began = time.perf_counter()
        answer = function.lambda_handler(event, Context())
        times.append(time.perf_counter() - began)
        assert answer["statusCode"] == 201, answer
    return {
        "after_restore_ms": (restored - started) * 1000,
        "first_ms": times[0] * 1000,
        "warm_median_ms": statistics.median(times[1:]) * 1000,
    }


MODES = {
    "cold_function": cold_function,
    "cold_baseline": cold_baseline,
    "warm_overhead": warm_overhead,
    "no_waste": no_waste,
    "batch_timing": batch_timing,
    "restored_first_request": restored_first_request,
}

if __name__ == "__main__":
    with open(sys.argv[2]) as job_file:
        job = json.load(job_file)
    result = MODES[sys.argv[1]](job)
    with open(job["result"], "w") as result_file:
        json.dump(result, result_file)
