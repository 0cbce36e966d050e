"""Contact outcomes as models and files (status filters, the CSV the bulk API reads back, a contact to send again),
and a bulk run's status from its chunks; no network."""

from typing import Any

import pytest

from hilos_runner.api import wants_csv
from hilos_runner.bulk import bulk_progress
from hilos_runner.contact_outcomes import ContactOutcome, contacts_csv, parse_statuses
from hilos_runner.contacts_input import parse_contacts
from hilos_runner.errors import InvalidRequestError
from hilos_runner.execution_records import ExecutionCounters, RunStatus
from hilos_runner.models import FlowExecutionContact
from tests.helpers import execution_record


def test_statuses_are_a_comma_separated_list_in_any_case_and_unknown_ones_are_named():
    assert parse_statuses(" failed, EXPIRED ,") == {"FAILED", "EXPIRED"}
    assert parse_statuses(None) == parse_statuses("") == frozenset()
    with pytest.raises(InvalidRequestError) as refused:
        parse_statuses("FAILED,LOST")
    assert refused.value.details[0]["field"] == "query.status"
    assert "'LOST'" in refused.value.details[0]["reason"]


def test_the_csv_holds_contact_columns_only_and_the_bulk_reader_takes_it_back_as_it_was():
    outcomes = [
        ContactOutcome(
            phone="+5215500000007",
            first_name="Ana",
            last_name='López "la, grande"',
            status="FAILED",
            reason="not delivered",
            email="ana@example.com",
            meta={"plan": "gold", "n": [1, 2]},
        ),
        ContactOutcome(phone="+5215500000009", status="EXPIRED"),
    ]

    text = contacts_csv(outcomes)

    assert text.splitlines()[0] == "phone,first_name,last_name,email,meta"
    request = parse_contacts(text, "csv")
    assert [contact.model_dump(exclude_unset=True) for contact in request.contact_list] == [
        {
            "phone": "+5215500000007",
            "first_name": "Ana",
            "last_name": 'López "la, grande"',
            "email": "ana@example.com",
            "meta": {"plan": "gold", "n": [1, 2]},
        },
        {"phone": "+5215500000009"},
    ]


def test_an_outcome_comes_from_hilos_listing_and_empty_fields_stay_absent():
    listed = FlowExecutionContact.model_validate(
        {
            "contact": {"id": "c1", "phone": "+5215500000007", "first_name": "", "meta": {}, "email": None},
            "status": "FAILED",
            "reason": "not delivered",
            "flow_name": "f",
            "is_chatbot_execution": False,
        }
    )
    outcome = ContactOutcome.of(listed)
    assert outcome.model_dump(exclude_none=True) == {
        "phone": "+5215500000007",
        "status": "FAILED",
        "reason": "not delivered",
    }


def test_a_contact_hilos_holds_with_a_field_a_run_refuses_is_sent_again_by_phone():
    kept = ContactOutcome(phone="+5215500000007", first_name="Ana", email="ana@localhost", status="FAILED")
    assert kept.contact().model_dump(exclude_unset=True) == {"phone": "+5215500000007"}  # type: ignore[union-attr]
    fine = ContactOutcome(phone="+5215500000007", first_name="Ana", status="FAILED")
    assert fine.contact().model_dump(exclude_unset=True) == {"phone": "+5215500000007", "first_name": "Ana"}


@pytest.mark.parametrize(
    ("accept", "csv"),
    [
        ("text/csv", True),
        ("text/csv; charset=utf-8", True),
        ("text/csv, application/json", True),
        ("application/json, text/csv", False),
        ("*/*", False),
        (None, False),
    ],
)
def test_csv_is_answered_when_the_accept_header_asks_for_it_first(accept: str | None, csv: bool):
    assert wants_csv(accept) is csv


def chunk(status: RunStatus, attempts: int = 1, **counters: int) -> Any:
    return execution_record(
        status=status, attempts=attempts, counters=ExecutionCounters(**counters) if counters else None
    )


PARENT = execution_record(status=RunStatus.QUEUED, num_chunks=3)


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([chunk(RunStatus.QUEUED, attempts=0)] * 3, RunStatus.QUEUED),
        ([chunk(RunStatus.QUEUED, attempts=0)] * 2, RunStatus.QUEUED),  # a chunk record not written yet
        (
            [chunk(RunStatus.QUEUED, attempts=0), chunk(RunStatus.QUEUED), chunk(RunStatus.QUEUED, 0)],
            RunStatus.IN_PROGRESS,
        ),
        ([chunk(RunStatus.COMPLETED, completed=2)] * 2 + [chunk(RunStatus.SUBMITTED)], RunStatus.IN_PROGRESS),
        ([chunk(RunStatus.COMPLETED, completed=2)] * 2 + [chunk(RunStatus.UNKNOWN)], RunStatus.IN_PROGRESS),
        ([chunk(RunStatus.COMPLETED, completed=2)] * 3, RunStatus.COMPLETED),
        (
            [chunk(RunStatus.COMPLETED, completed=2)] * 2 + [chunk(RunStatus.COMPLETED, completed=1, expired=1)],
            RunStatus.COMPLETED_WITH_ERRORS,
        ),
        ([chunk(RunStatus.COMPLETED, completed=2)] * 2 + [chunk(RunStatus.REJECTED)], RunStatus.COMPLETED_WITH_ERRORS),
        (
            [chunk(RunStatus.COMPLETED, completed=2)] * 2 + [chunk(RunStatus.CANCELED, canceled=2)],
            RunStatus.COMPLETED_WITH_ERRORS,
        ),
    ],
)
def test_a_bulk_run_is_finished_only_when_every_chunk_is_done_and_says_whether_all_went_well(
    chunks: list[Any], expected: RunStatus
):
    status, counters = bulk_progress(PARENT, chunks)
    assert status is expected
    assert counters.completed == sum((c.counters.completed if c.counters else 0) for c in chunks)


def test_a_contact_whose_phone_a_run_refuses_is_not_sent_again():
    assert ContactOutcome(phone="12", status="FAILED").contact() is None
