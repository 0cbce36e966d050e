"""The local stack as a subprocess (e2e tests and benchmarks): `python -m local` on free ports, talked to over
real sockets, and stopped with SIGTERM at the end, leaving no process and no open port behind."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

REPO_ROOT = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 30
_STACK_TOKEN = "<the stack's own token>"  # noqa: S105  (a marker, not a token)


@dataclass
class RunningStack:
    process: subprocess.Popen[bytes]
    info: dict[str, Any]
    log_path: Path

    # -- the run API, over HTTP, with the stack's bearer token ---------------------------------
    def api(self, method: str, path: str, *, token: str | None = _STACK_TOKEN, **kwargs: Any) -> requests.Response:
        """``token``: the stack's by default; None sends no Authorization header."""
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {self.info['api_token'] if token is _STACK_TOKEN else token}"
        url = path if "://" in path else self.info["api_url"] + path  # a URL the API answered, or a path
        return requests.request(method, url, headers=headers, timeout=30, **kwargs)

    # -- the Hilos sandbox's control endpoints ---------------------------------------------------
    def sandbox_stats(self) -> dict[str, Any]:
        return requests.get(f"{self.info['sandbox_url']}/_sandbox/stats", timeout=10).json()

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        answer = requests.post(f"{self.info['sandbox_url']}/_sandbox/faults", json=changes, timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def calls_for(self, flow_id: str) -> list[dict[str, Any]]:
        return [call for call in self.sandbox_stats()["recent"] if call.get("flow_id") == flow_id]

    # -- AWS, as a producer or an operator would see it ------------------------------------------
    def aws_client(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.info["aws_endpoint_url"],
            region_name=self.info["aws_region"],
            aws_access_key_id="local",
            aws_secret_access_key="local",  # noqa: S106  (moto's fake credentials)
        )

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_stack(state_dir: Path, *args: str, env: dict[str, str] | None = None) -> RunningStack:
    """Start `python -m local` on free ports and wait until it has written stack.json (it does so last)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / "stack.log"
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    environment.pop("HILOS_TOKEN", None)
    environment.update({"PYTHONUNBUFFERED": "1", **(env or {})})
    command = [
        sys.executable,
        "-m",
        "local",
        "--api-port=0",
        "--sandbox-port=0",
        "--moto-port=0",
        "--web-port=0",  # the example page; a later --web-port in args wins
        "--function-logs",  # every line: tests look for the token, tracebacks, ... in all of them
        f"--state-dir={state_dir}",
        *args,
    ]
    with log_path.open("wb") as log:
        # Its own session: the test can check that no process of the group outlives the stack.
        process = subprocess.Popen(  # our own module, fixed arguments
            command, cwd=REPO_ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    stack_file = state_dir / "stack.json"
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not stack_file.exists():
        if process.poll() is not None:
            raise AssertionError(f"the stack exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"the stack did not start in {STARTUP_TIMEOUT_SECONDS} s:\n{log_path.read_text()}")
        time.sleep(0.1)
    return RunningStack(process, json.loads(stack_file.read_text()), log_path)


def stop_stack(stack: RunningStack) -> None:
    """SIGTERM, then check: a clean exit, stack.json gone, every port closed, no process of the group left."""
    process = stack.process
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise AssertionError(
            f"the stack did not stop within {STOP_TIMEOUT_SECONDS} s:\n{stack.log_text()[-4000:]}"
        ) from None
    assert process.returncode == 0, f"the stack exited with {process.returncode}:\n{stack.log_text()[-4000:]}"
    own_urls = [stack.info["api_url"], stack.info["sandbox_url"]]
    if stack.info["moto"]:
        own_urls.append(stack.info["aws_endpoint_url"])
    for url in filter(None, own_urls):
        assert not port_is_open(url), f"{url} still accepts connections after the stack stopped"
    assert not (stack.log_path.parent / "stack.json").exists(), "stack.json outlived the stack"
    all_gone = wait_for(lambda: not _process_group_alive(process.pid), timeout=10, default=False)
    if not all_gone:
        os.killpg(process.pid, signal.SIGKILL)
        raise AssertionError("processes of the stack outlived it (killed now)")


def port_is_open(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=1):
            return True
    except OSError:
        return False


def _process_group_alive(group_id: int) -> bool:
    try:
        os.killpg(group_id, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for[T](
    condition: Callable[[], T], *, timeout: float, interval: float = 0.2, default: T | None = None
) -> T | None:
    """Poll ``condition`` until it returns something truthy (returned) or ``timeout`` passes (``default``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            return default
        time.sleep(interval)
