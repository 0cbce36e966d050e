"""The commands that talk to the run API: ``contacts`` and ``retry`` (a run or a bulk run alike).

The API is ``--api-url``, or the ApiUrl output of the stack ``--stack-name``, or the local stack's; the bearer
token comes from ``HILOS_RUNNER_API_TOKEN`` (a JWT of the stack's user pool or your OIDC provider), or the local
stack's. ``contacts`` writes every page as one CSV in the bulk API's columns; ``retry`` uses the key
``retry-<run id>-<statuses>`` unless given one, so running the same command twice starts one run.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any, TextIO
from uuid import UUID

from hilos_runner_cli import targets
from hilos_runner_cli.targets import CliError

API_TOKEN_VARIABLE = "HILOS_RUNNER_API_TOKEN"  # noqa: S105 - the name of a variable, not a value
_API_TIMEOUT_SECONDS = (5, 35)  # the API answers within API Gateway's 29 s
_MAX_RETRY_REQUESTS = 20


class Api:
    """The run API as the CLI reaches it: a base URL and a bearer token."""

    def __init__(self, args: argparse.Namespace) -> None:
        import requests

        token = os.environ.get(API_TOKEN_VARIABLE)
        if args.api_url:
            self.url = args.api_url
        elif args.stack_name:
            self.url = targets.stack_output(args.stack_name, args.region, "ApiUrl")
        else:
            local = targets.require_local_stack(args.stack_file, "api_url", "--api-url or --stack-name")
            self.url, token = local["api_url"], token or local.get("api_token")
        if not token:
            raise CliError(f"set {API_TOKEN_VARIABLE} to a bearer token (JWT) for the API")
        self.url = self.url.rstrip("/")
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests

        try:
            return self._session.request(method, self.url + path, timeout=_API_TIMEOUT_SECONDS, **kwargs)
        except requests.RequestException as exc:
            raise CliError(f"cannot reach the API at {self.url}: {type(exc).__name__}") from None

    def run(self, run_id: UUID) -> dict[str, Any]:
        """The run's (or bulk run's parent) record."""
        return dict(self.ok(self.call("GET", f"/runs/{run_id}"), 200).json())

    @staticmethod
    def ok(response: Any, *statuses: int) -> Any:
        if response.status_code in statuses:
            return response
        try:
            problem = response.json()
            message = f"{problem.get('code')}: {problem.get('message')}"
            details = "; ".join(f"{d['field']}: {d['reason']}" for d in problem.get("details") or [])
        except ValueError:
            message, details = response.text[:200], ""
        raise CliError(f"the API answered {response.status_code} ({message}{'; ' + details if details else ''})")


def contacts(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    api = Api(args)
    path = api.run(args.run_id)["contacts_url"]
    query = {"status": args.status} if args.status else {}
    if args.page_size:
        query["limit"] = str(args.page_size)
    written = 0
    cursor = None
    while True:
        page = {**query, **({"cursor": cursor} if cursor else {})}
        response = api.ok(api.call("GET", path, params=page, headers={"Accept": "text/csv"}), 200)
        lines = response.content.decode("utf-8").splitlines(keepends=True)
        out.writelines(lines if written == 0 else lines[1:])  # one header row for the whole file
        written += len(lines) - 1
        cursor = response.headers.get("X-Next-Cursor")
        if not cursor:
            break
    print(f"{written} contacts", file=err)
    return 0


def _code(response: Any) -> str | None:
    try:
        return str(response.json().get("code"))
    except (ValueError, AttributeError):
        return None


def retry(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    api = Api(args)
    statuses = [name.strip().upper() for name in args.status.split(",") if name.strip()]
    record = api.run(args.run_id)
    bulk = record.get("num_chunks") is not None
    key = args.idempotency_key or f"retry-{args.run_id}-{'-'.join(sorted(statuses))}"
    path = f"/{'bulk-runs' if bulk else 'runs'}/{args.run_id}/retries"
    for _ in range(_MAX_RETRY_REQUESTS):  # a large bulk run's contacts may take several requests to gather
        response = api.call("POST", path, json={"statuses": statuses}, headers={"Idempotency-Key": key})
        if response.status_code != 503 or _code(response) != "contacts_not_read_yet":
            break
        time.sleep(float(response.headers.get("Retry-After") or 1))
    answer = api.ok(response, 201, 202).json()
    if bulk:
        print(f"bulk run:  {answer['id']} ({answer['num_contacts']} contacts, {answer['chunks']} chunks)", file=out)
        print(f"follow:    {answer['status_url']}", file=out)
    else:
        run = answer["run"]
        print(f"run:       {run['run_id']} ({run['num_contacts']} contacts, {run['status']})", file=out)
        print(f"follow:    /runs/{run['run_id']}", file=out)
    print(f"retry of:  {args.run_id} (contacts {', '.join(statuses)}; key {key})", file=err)
    return 0
