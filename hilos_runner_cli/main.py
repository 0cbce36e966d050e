"""``hilos-runner``: the command line for people holding a contact file, and for maintainers.

    hilos-runner enqueue --flow-id UUID [--queue-url URL | --stack-name NAME] [--chunk-size N]
                         [--has-priority] [--variables JSON] [--idempotency-key KEY]
                         [--on-duplicate drop|reject] [--dry-run] contacts.csv|.json
    hilos-runner contacts RUN_ID [--status FAILED[,EXPIRED]] [--api-url URL | --stack-name NAME] > contacts.csv
    hilos-runner retry RUN_ID [--status FAILED,EXPIRED] [--idempotency-key KEY] [--api-url URL | --stack-name NAME]
    hilos-runner schema [--event | --bulk-event] [--output schemas/queued-run.schema.json]

``enqueue`` validates the whole file first with the bulk API's own reader (hilos_runner.contacts_input)
and stops, sending nothing, if any row is bad (or, with ``--dry-run``, after saying what it would send);
otherwise it splits the contacts with the bulk API's chunking and sends the messages with SendMessageBatch,
with a progress bar on large files.

The queue is ``--queue-url``, or the RunsQueueUrl output of the CloudFormation stack ``--stack-name``,
or the local stack's (``make dev`` writes .local/stack.json).

``contacts`` and ``retry`` talk to the run API (a run or a bulk run alike): ``--api-url``, or the ApiUrl output of
the stack ``--stack-name``, or the local stack's; the bearer token comes from ``HILOS_RUNNER_API_TOKEN`` (a JWT of
the stack's user pool or your OIDC provider), or the local stack's. ``contacts`` writes every page as one CSV in
the bulk API's columns; ``retry`` uses the key ``retry-<run id>-<statuses>`` unless given one, so running the
same command twice starts one run. This module lives in the layer package so
that the CLI and the functions share one installable; Lambda never imports it, and it imports tqdm
and boto3 only when a command runs.
"""

import argparse
import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, TextIO
from uuid import UUID

from hilos_runner.contacts_input import MediaType, parse_contacts, variables_from_json
from hilos_runner.duplicates import OnDuplicate
from hilos_runner.errors import InvalidRequestError
from hilos_runner.runs import IDEMPOTENCY_KEY_PATTERN

DEFAULT_STACK_FILE = Path(".local/stack.json")
# Files with at least this many contacts get a progress bar (on a terminal).
PROGRESS_BAR_MIN_CONTACTS = 1000
_MEDIA_TYPES: dict[str, MediaType] = {".csv": "csv", ".json": "json"}
_KEY_PREFIX_MAX = 120  # room for "-<chunk index>" within the 128 characters of a key


class CliError(Exception):
    """A problem to tell the user in one line (exit status 2)."""


def main(argv: list[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    args = _parser().parse_args(argv)
    from hilos_runner.observability import logger

    level = logger.log_level
    logger.setLevel(logging.ERROR)  # the CLI reports problems itself, in plain text
    try:
        if args.command == "schema":
            return _schema(args, out)
        if args.command == "contacts":
            return _contacts(args, out, err)
        if args.command == "retry":
            return _retry(args, out, err)
        return _enqueue(args, out, err)
    except CliError as exc:
        print(f"hilos-runner: {exc}", file=err)
        return 2
    finally:
        logger.setLevel(level)  # as it was: main() may run inside another program (tests)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hilos-runner", description="Queue Hilos flow runs from contact files.")
    commands = parser.add_subparsers(dest="command", required=True)

    enqueue = commands.add_parser("enqueue", help="validate a CSV/JSON contact file and put it on the runs queue")
    enqueue.add_argument("file", type=Path, help="contacts.csv (header row of contact fields) or contacts.json")
    enqueue.add_argument("--flow-id", type=UUID, required=True, help="the Hilos flow to start")
    where = enqueue.add_mutually_exclusive_group()
    where.add_argument("--queue-url", help="the runs queue (default: the local stack's, .local/stack.json)")
    where.add_argument("--stack-name", help="read the queue from this CloudFormation stack's RunsQueueUrl output")
    enqueue.add_argument("--stack-file", type=Path, default=DEFAULT_STACK_FILE, help=argparse.SUPPRESS)
    enqueue.add_argument("--region", help="AWS region (default: the AWS configuration's)")
    enqueue.add_argument("--chunk-size", type=_chunk_size, help="contacts per message (default: BULK_CHUNK_SIZE, 250)")
    enqueue.add_argument("--has-priority", action="store_true", default=None, help="close the contacts' other flows")
    enqueue.add_argument("--variables", help="flow_execution_variables as a JSON object")
    enqueue.add_argument(
        "--idempotency-key",
        type=_key_prefix,
        help="messages get KEY-0, KEY-1, ...: running the same command again within the idempotency TTL "
        "starts nothing twice",
    )

    enqueue.add_argument(
        "--on-duplicate",
        choices=[choice.value for choice in OnDuplicate],
        default=OnDuplicate.DROP.value,
        help="a phone repeated in the file: drop later copies (default, listed) or refuse the file",
    )
    enqueue.add_argument(
        "--dry-run", action="store_true", help="check the file and say what would be sent; send nothing"
    )

    contacts = commands.add_parser(
        "contacts", help="write a run's (or bulk run's) contacts with their Hilos outcome as CSV to stdout"
    )
    retry = commands.add_parser(
        "retry", help="start one new run for the contacts of a finished run that did not get the flow"
    )
    for command in (contacts, retry):
        command.add_argument("run_id", type=UUID, help="the run's (or bulk run's) id")
        where = command.add_mutually_exclusive_group()
        where.add_argument("--api-url", help="the run API (default: the local stack's, .local/stack.json)")
        where.add_argument("--stack-name", help="read the API from this CloudFormation stack's ApiUrl output")
        command.add_argument("--stack-file", type=Path, default=DEFAULT_STACK_FILE, help=argparse.SUPPRESS)
        command.add_argument("--region", help="AWS region (default: the AWS configuration's)")
    contacts.add_argument("--status", help="only contacts in these Hilos statuses, e.g. FAILED or FAILED,EXPIRED")
    contacts.add_argument(
        "--page-size", type=_chunk_size, help="contacts per API request (default: the API's, 1000 for CSV)"
    )
    retry.add_argument("--status", default="FAILED,EXPIRED", help="contacts in these statuses (default FAILED,EXPIRED)")
    retry.add_argument("--idempotency-key", type=_key_prefix, help="default: retry-<run id>-<statuses>")

    schema = commands.add_parser("schema", help="print the JSON Schema of a queued-run message")
    schema.add_argument(
        "--event",
        action="store_true",
        help="the detail of the 'Hilos Run Finished' EventBridge event instead "
        "(schemas/run-finished-event.schema.json)",
    )
    schema.add_argument(
        "--bulk-event",
        action="store_true",
        help="the detail of the 'Hilos Bulk Run Finished' EventBridge event instead "
        "(schemas/bulk-run-finished-event.schema.json)",
    )
    schema.add_argument("--output", type=Path, help="write it to this file instead")
    return parser


def _chunk_size(text: str) -> int:
    from hilos_runner.models import MAX_CONTACTS_PER_RUN

    value = int(text)
    if not 1 <= value <= MAX_CONTACTS_PER_RUN:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_CONTACTS_PER_RUN}")
    return value


def _key_prefix(text: str) -> str:
    if not re.fullmatch(IDEMPOTENCY_KEY_PATTERN, text) or len(text) > _KEY_PREFIX_MAX:
        raise argparse.ArgumentTypeError(f"use letters, digits and . _ : - (at most {_KEY_PREFIX_MAX} characters)")
    return text


def _schema(args: argparse.Namespace, out: TextIO) -> int:
    from hilos_runner.completion_events import bulk_run_finished_json_schema, run_finished_json_schema
    from hilos_runner.messages import queued_run_json_schema

    if args.bulk_event:
        document = bulk_run_finished_json_schema()
    else:
        document = run_finished_json_schema() if args.event else queued_run_json_schema()
    if args.output:
        args.output.write_text(document)
        print(f"wrote {args.output}", file=out)
    else:
        out.write(document)
    return 0


def _enqueue(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from hilos_runner.chunking import chunk_messages
    from hilos_runner.queue import QueueSender
    from hilos_runner.settings import get_settings

    media_type = _MEDIA_TYPES.get(args.file.suffix.lower())
    if media_type is None:
        raise CliError(f"{args.file}: use a .csv or .json file")
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        raise CliError(f"{args.file}: {exc.strerror}") from None
    try:
        variables = variables_from_json(args.variables, field="--variables")
        request = parse_contacts(
            data,
            media_type,
            has_priority=args.has_priority,
            flow_execution_variables=variables,
            on_duplicate=OnDuplicate(args.on_duplicate),
        )
    except InvalidRequestError as problem:
        print(f"{args.file}: {problem.message}", file=err)
        for detail in problem.details:
            print(f"  {_readable(detail['field'])}: {detail['reason']}", file=err)
        return 1

    chunk_size = args.chunk_size or get_settings().bulk_chunk_size
    messages = chunk_messages(args.flow_id, request, chunk_size=chunk_size, idempotency_key_prefix=args.idempotency_key)
    removed = request.duplicates_removed
    if removed is not None:
        print(f"duplicates removed: {removed.count} (a phone already listed earlier in the file)", file=err)
        for row in removed.rows[:10]:
            print(f"  {_readable(row.field)}: same phone as {_readable(row.same_as)}", file=err)
    if args.dry_run:
        print(f"contacts:       {len(request.contact_list)}", file=out)
        print(f"chunks:         {len(messages)} (at most {chunk_size} contacts each)", file=out)
        print("messages sent:  0 (--dry-run: nothing was sent)", file=out)
        return 0
    queue_url, client = _queue(args)
    with _progress(len(messages), enabled=len(request.contact_list) >= PROGRESS_BAR_MIN_CONTACTS, out=err) as bar:
        failed = QueueSender(client, queue_url).send([message.body() for message in messages], on_sent=bar.update)

    print(f"contacts:       {len(request.contact_list)}", file=out)
    print(f"chunks:         {len(messages)} (at most {chunk_size} contacts each)", file=out)
    print(f"messages sent:  {len(messages) - len(failed)}", file=out)
    print(f"queue:          {queue_url}", file=out)
    if failed:
        print(f"messages not sent: {len(failed)}", file=err)
        for index, reason in sorted(failed.items()):
            print(f"  chunk {index}: {reason}", file=err)
        hint = "run the same command again" if args.idempotency_key else "re-send those contacts"
        print(f"  {hint} (with --idempotency-key, chunks already queued do not run twice)", file=err)
        return 1
    return 0


def _readable(field: str) -> str:
    """``row.18.email`` -> ``row 18, email``; JSON paths stay as they are."""
    match = re.fullmatch(r"row\.(\d+)(?:\.(.+))?", field)
    if match:
        return f"row {match.group(1)}" + (f", {match.group(2)}" if match.group(2) else "")
    return field or "file"


def _queue(args: argparse.Namespace) -> tuple[str, Any]:
    """The queue URL and an SQS client that reaches it."""
    import boto3

    region, endpoint = args.region, None
    if args.queue_url:
        queue_url = args.queue_url
    elif args.stack_name:
        queue_url = _stack_output(boto3.client("cloudformation", region_name=region), args.stack_name)
    else:
        local = _local_stack(args.stack_file)
        queue_url, endpoint = local["queue_url"], local.get("aws_endpoint_url")
        region = region or local.get("aws_region")
        if endpoint and not (os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")):
            # The local stack's moto accepts any credentials; none may be configured on this machine.
            return queue_url, boto3.client(
                "sqs",
                region_name=region,
                endpoint_url=endpoint,
                aws_access_key_id="local",
                aws_secret_access_key="local",  # noqa: S106 - not a secret: moto takes any value
            )
    return queue_url, boto3.client("sqs", region_name=region, endpoint_url=endpoint)


def _stack_output(cloudformation: Any, stack_name: str, key: str = "RunsQueueUrl") -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        (stack,) = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except (ClientError, BotoCoreError) as exc:
        raise CliError(f"cannot read stack {stack_name!r}: {exc}") from None
    for output in stack.get("Outputs", []):
        if output["OutputKey"] == key:
            return str(output["OutputValue"])
    raise CliError(f"stack {stack_name!r} has no {key} output")


def _local_stack(path: Path, needs: str = "queue_url", given: str = "--queue-url or --stack-name") -> dict[str, Any]:
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise CliError(f"no {given} given and no local stack ({path}); start it with make dev") from None
    except ValueError:
        raise CliError(f"{path} is not valid JSON") from None
    if not info.get(needs):
        raise CliError(f"{path} names no {needs}")
    return dict(info)


# -- the run API: contacts and retries -----------------------------------------------------------------
API_TOKEN_VARIABLE = "HILOS_RUNNER_API_TOKEN"  # noqa: S105 - the name of a variable, not a value
_API_TIMEOUT_SECONDS = (5, 35)  # the API answers within API Gateway's 29 s
_MAX_RETRY_REQUESTS = 20


class _Api:
    """The run API as the CLI reaches it: a base URL and a bearer token."""

    def __init__(self, args: argparse.Namespace) -> None:
        import requests

        token = os.environ.get(API_TOKEN_VARIABLE)
        if args.api_url:
            self.url = args.api_url
        elif args.stack_name:
            import boto3

            client = boto3.client("cloudformation", region_name=args.region)
            self.url = _stack_output(client, args.stack_name, "ApiUrl")
        else:
            local = _local_stack(args.stack_file, "api_url", "--api-url or --stack-name")
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


def _contacts(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    api = _Api(args)
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


def _retry(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    api = _Api(args)
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


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def __enter__(self) -> "_NoBar":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _progress(total: int, *, enabled: bool, out: TextIO) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    # disable=None: tqdm shows the bar only on a terminal, so pipes and CI logs stay clean.
    return tqdm(total=total, unit="msg", desc="sending", file=out, disable=None)
