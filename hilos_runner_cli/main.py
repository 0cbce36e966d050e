"""``hilos-runner``'s arguments, and what a problem becomes: one line on stderr and a non-zero exit (2 for a usage
problem, 1 for a file or AWS problem), never a traceback. See the package's docstring for the commands."""

import argparse
import logging
import re
import sys
from pathlib import Path
from typing import TextIO
from uuid import UUID

from hilos_runner.duplicates import OnDuplicate
from hilos_runner.models import IDEMPOTENCY_KEY_PATTERN
from hilos_runner_cli import api_commands, queue_commands, targets
from hilos_runner_cli.targets import DEFAULT_STACK_FILE, CliError

_KEY_PREFIX_MAX = 120  # room for "-<chunk index>" within the 128 characters of a key


def main(argv: list[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    args = _parser().parse_args(argv)
    from hilos_runner.observability import logger

    level = logger.log_level
    logger.setLevel(logging.ERROR)  # the CLI reports problems itself, in plain text
    commands = {
        "enqueue": queue_commands.enqueue,
        "events": queue_commands.events,
        "schema": queue_commands.schema,
        "contacts": api_commands.contacts,
        "retry": api_commands.retry,
    }
    try:
        return commands[args.command](args, out, err)
    except CliError as exc:
        print(f"hilos-runner: {exc}", file=err)
        return 2
    except Exception as exc:
        problem = targets.aws_problem(exc)
        if problem is None:
            raise
        print(f"hilos-runner: {problem}", file=err)
        return 1
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
    enqueue.add_argument(
        "--region", help="AWS region (default: the AWS configuration's; the local stack's for its own queues)"
    )
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

    events = commands.add_parser(
        "events", help="print the completion events on a queue (default: the local stack's), one JSON line each"
    )
    events.add_argument("--queue-url", help="a queue a rule delivers the events to (default: the local stack's)")
    events.add_argument("--run-id", type=UUID, help="only this run's (or bulk run's) event; stop once it is printed")
    events.add_argument("--wait", type=float, default=10.0, help="seconds to read for (10)")
    events.add_argument("--stack-file", type=Path, default=DEFAULT_STACK_FILE, help=argparse.SUPPRESS)
    events.add_argument("--region", help="AWS region (default: the AWS configuration's)")

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
