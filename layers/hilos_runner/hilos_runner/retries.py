"""Retries: one new run for the contacts of a finished run who did not get the flow.

``POST /runs/{id}/retries`` takes the run's contacts in the chosen statuses (default FAILED and EXPIRED) as Hilos
listed them (hilos_runner.contact_outcomes) and starts one new run for exactly those, through the run API's own
start path (``idempotency.start_run``: record first, an Idempotency-Key makes a repeat start nothing more), with the
original run's ``has_priority`` and ``flow_execution_variables`` (kept beside its record) and ``retry_of`` pointing
back at it. ``POST /bulk-runs/{id}/retries`` does the same over every chunk of a bulk run and submits a new bulk
run (``idempotency.submit_bulk``). A run that is not finished is refused (its contacts' fate is not known yet), and so
is a retry that would have no contact.
"""

import json
from collections.abc import Callable
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from hilos_runner.bulk import BulkAccepted, BulkCommand
from hilos_runner.contact_outcomes import DEFAULT_RETRY_STATUSES, ContactOutcomes, ContactStatus
from hilos_runner.errors import InvalidRequestError, RunNotFinishedError
from hilos_runner.execution_records import ExecutionRecord, RunSource
from hilos_runner.execution_store import ExecutionStore
from hilos_runner.messages import BulkRunRequest
from hilos_runner.models import Contact, FlowRunRequest
from hilos_runner.runs import RunCommand, RunResult


class RetryRequest(BaseModel):
    """Body of ``POST /runs/{run_id}/retries`` and ``POST /bulk-runs/{id}/retries`` (optional)."""

    model_config = ConfigDict(extra="forbid")

    statuses: list[ContactStatus] = Field(
        default_factory=lambda: list(DEFAULT_RETRY_STATUSES),
        min_length=1,
        description="Send the flow again to the contacts Hilos lists in these statuses.",
    )


class RetryService:
    def __init__(
        self,
        store: ExecutionStore,
        outcomes: ContactOutcomes,
        start_run: Callable[[RunCommand], RunResult],
        submit_bulk: Callable[[BulkCommand], BulkAccepted],
    ) -> None:
        self._store = store
        self._outcomes = outcomes
        self._start_run = start_run
        self._submit_bulk = submit_bulk

    def retry_run(self, run_id: UUID, request: RetryRequest, idempotency_key: str | None) -> RunResult:
        original = self._finished(run_id, bulk=False)
        contacts, options = self._retried(original, request)
        run = FlowRunRequest(contact_list=contacts, **options)
        command = RunCommand(
            flow_id=original.flow_id,
            request=run,
            source=RunSource.API,
            idempotency_key=idempotency_key,
            retry_of=original.run_id,
        )
        return self._start_run(command)

    def retry_bulk(self, bulk_id: UUID, request: RetryRequest, idempotency_key: str | None) -> BulkAccepted:
        original = self._finished(bulk_id, bulk=True)
        contacts, options = self._retried(original, request)
        bulk = BulkRunRequest(contact_list=contacts, **options)
        command = BulkCommand(
            flow_id=original.flow_id, request=bulk, idempotency_key=idempotency_key, retry_of=original.run_id
        )
        return self._submit_bulk(command)

    def _finished(self, run_id: UUID, *, bulk: bool) -> ExecutionRecord:
        record = self._outcomes.owner(run_id, bulk=bulk)
        if not record.status.finished:
            raise RunNotFinishedError(
                f"the run is {record.status.value}: which contacts did not get the flow is known once it is finished",
                details=[{"field": "path.run_id", "reason": f"status {record.status.value}"}],
            )
        return record

    def _retried(self, original: ExecutionRecord, request: RetryRequest) -> tuple[list[Contact], dict[str, Any]]:
        statuses = [status.value for status in request.statuses]
        outcomes = self._outcomes.matching(original, statuses)
        if not outcomes:
            raise InvalidRequestError(
                f"no contact of this run is {' or '.join(statuses)}: nothing to retry",
                details=[{"field": "body.statuses", "reason": "no contact in these statuses"}],
            )
        kept = self._store.run_options(original.run_id)
        options = json.loads(kept) if kept else {}
        contacts = [outcome.contact() for outcome in outcomes]
        refused = [index for index, contact in enumerate(contacts) if contact is None]
        if refused:  # the phones are not named: answers and logs carry positions, not contact data
            raise InvalidRequestError(
                f"{len(refused)} of the contacts to retry have a phone a run does not take; list them with "
                f"GET {original.contacts_url} as CSV, fix them and submit the file",
                details=[
                    {"field": f"contacts.{index}.phone", "reason": "not a phone a run takes"} for index in refused
                ],
            )
        return [contact for contact in contacts if contact is not None], options
