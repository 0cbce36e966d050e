"""Real services by environment: HILOS_API_URL (+ HILOS_TOKEN) replaces the sandbox, AWS_ENDPOINT_URL replaces
the stack's own moto. Here "real" is a recording HTTP server and a moto server the test owns."""

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from local.running_stack import RunningStack, start_stack, stop_stack
from tests.helpers import TEST_TOKEN, contact, hilos_execution, run_body
from tests.hilos_schema import assert_matches_hilos_run_request

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]


class RecordingHilos(ThreadingHTTPServer):
    """Any HTTP server that records requests: answers every POST 201 with a FlowExecutionEdit."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Recorder)
        self.requests: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Recorder(BaseHTTPRequestHandler):
    server: RecordingHilos

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        answer = json.dumps(hilos_execution(id=str(uuid.uuid4()))).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


@pytest.fixture(scope="module")
def recording_hilos() -> Iterator[RecordingHilos]:
    server = RecordingHilos()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def own_moto() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def stack_on_real_services(
    tmp_path_factory: pytest.TempPathFactory, recording_hilos: RecordingHilos, own_moto: str
) -> Iterator[RunningStack]:
    environment = {
        "HILOS_API_URL": f"{recording_hilos.url}/api",
        "HILOS_TOKEN": TEST_TOKEN,
        "AWS_ENDPOINT_URL": own_moto,
    }
    stack = start_stack(tmp_path_factory.mktemp("real-services"), env=environment)
    try:
        yield stack
    finally:
        stop_stack(stack)
    assert TEST_TOKEN not in stack.log_text(), "the Hilos token appeared in the stack's output"


def test_no_sandbox_and_no_moto_start_when_real_services_are_given(
    stack_on_real_services: RunningStack, recording_hilos: RecordingHilos, own_moto: str
):
    info = stack_on_real_services.info
    assert info["sandbox_url"] is None
    assert info["hilos_url"] == f"{recording_hilos.url}/api"
    assert info["aws_endpoint_url"] == own_moto
    assert info["moto"] is False
    tables = stack_on_real_services.aws_client("dynamodb").list_tables()["TableNames"]
    assert {info["executions_table"], info["idempotency_table"]} <= set(tables)  # created there
    assert TEST_TOKEN not in json.dumps(info)


def test_the_run_goes_to_hilos_api_url_with_the_configured_token_and_the_documented_body(
    stack_on_real_services: RunningStack, recording_hilos: RecordingHilos
):
    flow_id = str(uuid.uuid4())
    body = run_body(contacts=2, has_priority=True)
    body["contact_list"][1] = contact(phone="+5215500000002", email="ana@example.com", tags=[{"name": "vip"}])
    already = len(recording_hilos.requests)

    answer = stack_on_real_services.api("POST", f"/flows/{flow_id}/runs", json=body)

    assert answer.status_code == 201, answer.text
    [sent] = recording_hilos.requests[already:]
    assert sent["path"] == f"/api/flow/{flow_id}/run"
    assert sent["headers"]["Authorization"] == f"Token {TEST_TOKEN}"
    assert sent["headers"]["Content-Type"] == "application/json"
    sent_body = json.loads(sent["body"])
    assert_matches_hilos_run_request(sent_body)
    assert sent_body == {"execute_for": "LIST", **body}
    run = stack_on_real_services.api("GET", f"/runs/{answer.json()['run']['run_id']}").json()
    assert run["status"] == "SUBMITTED"
    assert TEST_TOKEN not in json.dumps(run)


def test_hilos_api_url_without_hilos_token_refuses_to_start(tmp_path: Path):
    environment = {"HILOS_API_URL": "http://127.0.0.1:9/api"}
    finished = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "local", f"--state-dir={tmp_path}"],
        cwd=REPO_ROOT,
        env={**{key: value for key, value in os.environ.items() if key != "HILOS_TOKEN"}, **environment},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 2
    assert "HILOS_TOKEN" in finished.stdout + finished.stderr
    assert not (tmp_path / "stack.json").exists()
