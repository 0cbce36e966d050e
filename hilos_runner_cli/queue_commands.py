"""The commands that talk to queues: ``enqueue`` (a contact file onto the runs queue), ``events`` (the completion
events a rule delivers to a queue), and ``schema`` (what a queued message, or an event, looks like).

``enqueue`` validates the whole file first with the bulk API's own reader (hilos_runner.contacts_input) and stops,
sending nothing, if any row is bad (or, with ``--dry-run``, after saying what it would send); otherwise it splits
the contacts with the bulk API's chunking, sends the messages with SendMessageBatch (a progress bar on large
files), and prints the id of each run to follow: a queued run's id derives from its SQS message id.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from typing import Any, TextIO

from hilos_runner.contacts_input import MediaType, parse_contacts, variables_from_json
from hilos_runner.duplicates import OnDuplicate
from hilos_runner.errors import InvalidRequestError
from hilos_runner_cli import targets
from hilos_runner_cli.targets import CliError

# Files with at least this many contacts get a progress bar (on a terminal).
PROGRESS_BAR_MIN_CONTACTS = 1000
_MEDIA_TYPES: dict[str, MediaType] = {".csv": "csv", ".json": "json"}


def schema(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
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


def enqueue(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from hilos_runner.chunking import chunk_messages
    from hilos_runner.queue_sender import QueueSender
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

    settings = get_settings()
    chunk_size = args.chunk_size or settings.bulk_chunk_size
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
    queue_url, aws = targets.queue(args.queue_url, args.stack_name, args.region, args.stack_file)
    sender = QueueSender(aws.client("sqs"), queue_url)
    with _progress(len(messages), enabled=len(request.contact_list) >= PROGRESS_BAR_MIN_CONTACTS, out=err) as bar:
        failed = sender.send([message.body() for message in messages], on_sent=bar.update)

    print(f"contacts:       {len(request.contact_list)}", file=out)
    print(f"chunks:         {len(messages)} (at most {chunk_size} contacts each)", file=out)
    print(f"messages sent:  {len(messages) - len(failed)}", file=out)
    print(f"queue:          {queue_url}", file=out)
    # The worker makes one Hilos call per BULK_CHUNK_SIZE contacts of a message (its setting, here the same unless
    # changed), each recorded under an id derived from the message id.
    sizes = {index: len(message.contact_list) for index, message in enumerate(messages)}
    _print_runs(sender.message_ids, sizes, settings.bulk_chunk_size, out)
    if failed:
        print(f"messages not sent: {len(failed)}", file=err)
        for index, reason in sorted(failed.items()):
            print(f"  chunk {index}: {reason}", file=err)
        hint = "run the same command again" if args.idempotency_key else "re-send those contacts"
        print(f"  {hint} (with --idempotency-key, chunks already queued do not run twice)", file=err)
        return 1
    return 0


def _print_runs(message_ids: dict[int, str], sizes: dict[int, int], worker_chunk_size: int, out: TextIO) -> None:
    """The id of every run the sent messages become: what to follow with GET /runs/{run_id}."""
    from hilos_runner.worker import message_run_id

    for index, message_id in sorted(message_ids.items()):
        parts = math.ceil(sizes[index] / worker_chunk_size)
        run_ids = [message_run_id(message_id)] if parts <= 1 else [message_run_id(message_id, n) for n in range(parts)]
        for run_id in run_ids:
            print(f"run:            {run_id} (message {message_id})", file=out)
    if message_ids:
        print("follow:         GET /runs/<run id> (404 until the worker has taken the message)", file=out)


def _readable(field: str) -> str:
    """``row.18.email`` -> ``row 18, email``; JSON paths stay as they are."""
    match = re.fullmatch(r"row\.(\d+)(?:\.(.+))?", field)
    if match:
        return f"row {match.group(1)}" + (f", {match.group(2)}" if match.group(2) else "")
    return field or "file"


def events(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Print the completion events on a queue (the local stack's by default), one JSON line each: its
    ``detail-type`` and ``detail``. Messages are read, not deleted: other readers still get them once their
    visibility timeout has passed. With ``--run-id``, only that run's (or bulk run's) event, and it stops there."""
    if args.queue_url:
        queue_url, aws = args.queue_url, targets.aws_for_url(args.queue_url, args.region, args.stack_file)
    else:
        info = targets.require_local_stack(args.stack_file, "completion_events_queue_url", "--queue-url")
        queue_url, aws = info["completion_events_queue_url"], targets.local_aws(info, args.region)
    sqs = aws.client("sqs")
    wanted = str(args.run_id) if args.run_id else None
    deadline = time.monotonic() + args.wait
    while (left := deadline - time.monotonic()) > 0:
        answer = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=max(1, min(20, math.ceil(left))),
            VisibilityTimeout=math.ceil(args.wait) + 30,  # each message once per call
        )
        for message in answer.get("Messages", []):
            event = _event(message["Body"])
            if wanted is None or wanted in _ids(event.get("detail")):
                print(json.dumps({"detail-type": event.get("detail-type"), "detail": event.get("detail")}), file=out)
                if wanted is not None:
                    return 0
    if wanted is not None:
        print(f"hilos-runner: no event of run {wanted} within {args.wait:g} s", file=err)
        return 1
    return 0


def _event(body: str) -> dict[str, Any]:
    try:
        event = json.loads(body)
    except ValueError:
        return {"detail-type": None, "detail": body}
    return event if isinstance(event, dict) else {"detail-type": None, "detail": event}


def _ids(detail: Any) -> set[str]:
    if not isinstance(detail, dict):
        return set()
    return {str(detail[name]) for name in ("run_id", "bulk_id", "id") if detail.get(name)}


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _progress(total: int, *, enabled: bool, out: TextIO) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    # disable=None: tqdm shows the bar only on a terminal, so pipes and CI logs stay clean.
    return tqdm(total=total, unit="msg", desc="sending", file=out, disable=None)
