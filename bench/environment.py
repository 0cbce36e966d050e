"""The parts of the local stack the function benchmarks need, started in the benchmark's own process:
moto's server and the Hilos sandbox on free 127.0.0.1 ports, the template's resources created in moto,
and each function's environment as template.yaml gives it (plus the endpoints), for fresh child processes.
"""

from __future__ import annotations

import logging
import secrets
import socketserver
from pathlib import Path
from typing import Any

from local.events import REGION
from local.sandbox import HilosSandbox
from local.sandbox_settings import SandboxSettings
from local.stack import FAKE_CREDENTIALS
from local.stack_resources import create_stack_resources
from local.template import StackResources, function_specs, load_template

REPO_ROOT = Path(__file__).resolve().parent.parent


class _EndpointSession:
    """A boto3-session look-alike pointing every client at one endpoint (what create_stack_resources needs)."""

    def __init__(self, endpoint_url: str) -> None:
        import boto3

        self._session = boto3.session.Session(
            region_name=REGION,
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        self._endpoint_url = endpoint_url

    def client(self, service: str, **kwargs: Any) -> Any:
        return self._session.client(service, endpoint_url=self._endpoint_url, **kwargs)


class BenchEnvironment:
    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.token = f"sandbox-{secrets.token_urlsafe(18)}"
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.sandbox = HilosSandbox(self.token, SandboxSettings(latency_ms=0))
        self.aws_endpoint_url = ""
        self.session: _EndpointSession | None = None
        self.stack: StackResources | None = None
        self._environments: dict[str, dict[str, str]] = {}
        self._code_paths: dict[str, list[str]] = {}

    def start(self) -> BenchEnvironment:
        # moto's and the sandbox's HTTP servers (socketserver) send headers and body in separate writes: with
        # Nagle on, a reused keep-alive connection waits ~40 ms for the client's delayed ACK on every answer,
        # which made "warm" requests slower than first ones. Lambda's AWS endpoints do not behave so.
        socketserver.StreamRequestHandler.disable_nagle_algorithm = True
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self.aws_endpoint_url = f"http://{host}:{port}"
        self.sandbox.start()
        self.session = _EndpointSession(self.aws_endpoint_url)
        self.stack = create_stack_resources(
            self.session,
            hilos_token=self.token,
            parameters={"HilosApiUrl": self.sandbox.api_url},
            template=load_template(),
        )
        common = {
            "AWS_ENDPOINT_URL": self.aws_endpoint_url,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            **FAKE_CREDENTIALS,
            "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon here (as in the local stack)
        }
        for logical_id, spec in function_specs(self.stack, common).items():
            self._environments[logical_id] = dict(spec.environment)
            # What Lambda puts on sys.path: the function's code (task root), then the layers (/opt/python).
            self._code_paths[logical_id] = [str(spec.code_dir), *map(str, spec.layer_dirs)]
        return self

    def set_latency(self, milliseconds: int) -> None:
        self.sandbox.state.update_settings({"latency_ms": milliseconds})

    def function_environment(self, logical_id: str, **overrides: str) -> dict[str, str]:
        return {**self._environments[logical_id], **overrides}

    def code_paths(self, logical_id: str) -> list[str]:
        return list(self._code_paths[logical_id])

    def physical_id(self, logical_id: str) -> str:
        assert self.stack is not None
        return self.stack.physical_ids[logical_id]

    def stop(self) -> None:
        self.sandbox.stop()
        self._moto.stop()
