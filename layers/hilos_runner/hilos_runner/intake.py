"""What a validated request becomes before anything starts: duplicates dropped (or refused), and, for
``?dry_run=true``, the answer that says what would be sent, with no Hilos call and nothing queued.

Shared by run_api's routes; the worker and the CLI use the same ``without_duplicates`` (hilos_runner.duplicates).
"""

from uuid import UUID

from pydantic import BaseModel, Field

from hilos_runner.bulk import BulkCommand
from hilos_runner.chunking import chunk_messages
from hilos_runner.duplicates import DuplicatesRemoved, OnDuplicate, without_duplicates
from hilos_runner.execution_records import RunSource
from hilos_runner.models import FlowRunRequest
from hilos_runner.runs import RunCommand

ON_DUPLICATE_HELP = (
    "drop: later contacts with an earlier one's phone (or id) are dropped and listed in the answer; reject: such a "
    "request is refused (422) listing them."
)
DRY_RUN_HELP = "Check everything and answer what would be sent (200), without calling Hilos or queueing anything."


class DryRun(BaseModel):
    """``?dry_run=true``: everything was checked; this is what a real submit would send."""

    dry_run: bool = True
    num_contacts: int = Field(description="Contacts received.")
    contacts_to_send: int = Field(description="Contacts Hilos would get (duplicates dropped).")
    hilos_calls: int = Field(description="Hilos runs it would start (chunks, for a bulk run).")
    duplicates_removed: DuplicatesRemoved | None = None


def run_command(
    flow_id: UUID, request: FlowRunRequest, *, on_duplicate: OnDuplicate, idempotency_key: str | None
) -> RunCommand:
    """The command for ``POST /flows/{flow_id}/runs``: ``request`` without repeated contacts."""
    contacts, duplicates = without_duplicates(request.contact_list, on_duplicate, lambda i: f"body.contact_list.{i}")
    if duplicates is not None:
        request = request.with_contacts(contacts)
    return RunCommand(
        flow_id=flow_id,
        request=request,
        source=RunSource.API,
        idempotency_key=idempotency_key,
        duplicates_removed=duplicates,
    )


def run_dry_run(command: RunCommand) -> DryRun:
    removed = command.duplicates_removed
    sent = len(command.request.contact_list)
    return DryRun(
        num_contacts=sent + (removed.count if removed else 0),
        contacts_to_send=sent,
        hilos_calls=1,
        duplicates_removed=removed,
    )


def bulk_dry_run(command: BulkCommand, chunk_size: int) -> DryRun:
    removed = command.request.duplicates_removed
    sent = len(command.request.contact_list)
    return DryRun(
        num_contacts=sent + (removed.count if removed else 0),
        contacts_to_send=sent,
        hilos_calls=len(chunk_messages(command.flow_id, command.request, chunk_size=chunk_size)),
        duplicates_removed=removed,
    )
