"""The traps a newcomer met in the first ten minutes, each through real processes and sockets: a second `make dev`
on the same ports (refused at once, naming the port, the first stack untouched), and `hilos-runner enqueue
--queue-url <the local queue>` on a machine with no AWS configuration at all."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from local.running_stack import REPO_ROOT, RunningStack, wait_for
from tests.e2e.conftest import stack_of_tests

pytestmark = pytest.mark.e2e

FLOW_ID = "7f1c3a52-9e0b-4d6a-8c21-3b5e7d9a0f14"  # this module's own flow
REFUSAL_SECONDS = 5  # issue 13: a second make dev exits within 5 s


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder as a newcomer's checkout looks to the tools: the stack writes .local/stack.json in it."""
    return tmp_path_factory.mktemp("checkout")


@pytest.fixture(scope="module")
def stack(workdir: Path) -> Iterator[RunningStack]:
    with stack_of_tests(workdir / ".local", "--sync-interval=3600") as running:
        yield running


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def environment_without_aws(home: Path) -> dict[str, str]:
    """This process's environment less every AWS variable, with a home that has no ~/.aws either."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "PYTEST_"))}
    environment.update(
        HOME=str(home), AWS_CONFIG_FILE=str(home / "none"), AWS_SHARED_CREDENTIALS_FILE=str(home / "none")
    )
    return environment


def run_without_aws(command: list[str], *, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """Run one of the project's own commands (fixed arguments) as on a machine without any AWS configuration."""
    return subprocess.run(  # noqa: S603  (the project's own commands)
        command, check=False, cwd=cwd, capture_output=True, text=True, timeout=60, env=environment_without_aws(home)
    )


def test_a_second_stack_on_the_same_ports_is_refused_at_once_and_leaves_the_first_alone(
    stack: RunningStack, workdir: Path
):
    stack_file = workdir / ".local" / "stack.json"
    before = stack_file.read_bytes()
    api_port = port_of(stack.info["api_url"])
    command = [
        sys.executable,
        "-m",
        "local",
        f"--api-port={api_port}",
        f"--sandbox-port={port_of(stack.info['sandbox_url'])}",
        f"--moto-port={port_of(stack.info['aws_endpoint_url'])}",
        f"--web-port={port_of(stack.info['web_url'])}",
        f"--state-dir={workdir / '.local'}",
    ]
    started = time.monotonic()
    second = run_without_aws(command, cwd=REPO_ROOT, home=workdir)
    elapsed = time.monotonic() - started

    output = second.stdout + second.stderr
    assert second.returncode != 0, output
    assert elapsed < REFUSAL_SECONDS, f"refused only after {elapsed:.1f} s"
    assert f"port {api_port} (the HTTP front, --api-port) is in use" in output
    assert 'make dev ARGS="--api-port ' in output
    assert "--state-dir" in output
    assert "Traceback" not in output
    assert stack_file.read_bytes() == before, "the second make dev changed the first one's stack.json"
    assert stack.api("GET", f"/flows/{FLOW_ID}/runs").status_code == 200, "the first stack stopped answering"


def test_enqueue_to_the_local_queue_url_needs_no_aws_configuration(stack: RunningStack, workdir: Path):
    contacts = workdir / "contacts.csv"
    contacts.write_text("phone,first_name\n+5215512349001,Ana\n")
    cli = Path(sys.prefix) / "bin" / "hilos-runner"
    enqueued = run_without_aws(
        [str(cli), "enqueue", "--flow-id", FLOW_ID, "--queue-url", stack.info["queue_url"], str(contacts)],
        cwd=workdir,
        home=workdir,
    )

    assert enqueued.returncode == 0, enqueued.stdout + enqueued.stderr
    (run_line,) = [line for line in enqueued.stdout.splitlines() if line.startswith("run:")]
    run_id = run_line.split()[1]
    record = wait_for(lambda: _record(stack, run_id), timeout=60)
    assert record is not None, f"run {run_id} was never recorded"
    assert record["source"] == "QUEUE"
    assert record["flow_id"] == FLOW_ID
    assert record["num_contacts"] == 1


def _record(stack: RunningStack, run_id: str) -> dict | None:
    answer = stack.api("GET", f"/runs/{run_id}")
    if answer.status_code == 404:
        return None
    assert answer.status_code == 200, answer.text
    return answer.json() if answer.json().get("status") not in ("QUEUED", None) else None


def test_the_stack_file_names_what_a_tool_needs_to_reach_the_local_aws(stack: RunningStack):
    assert stack.info["aws_credentials"] == {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
    assert requests.get(stack.info["aws_endpoint_url"], timeout=10).status_code < 500
