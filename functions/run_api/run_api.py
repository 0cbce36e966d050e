"""run_api: the HTTPS door for frontends. Routes and HTTP mapping only; the work is in the layer."""

from typing import Annotated, Any
from uuid import UUID

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.openapi.params import Header, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import AwareDatetime
from snapshot_restore_py import register_after_restore, register_before_snapshot

from hilos_runner import json_input, priming
from hilos_runner.api import (
    JSON_CONTENT_TYPE,
    answer,
    bulk_accepted_answer,
    contacts_answer,
    error_responses,
    install_docs,
    install_error_handlers,
    json_response,
    refused_body_answer,
    run_answer,
)
from hilos_runner.bulk import BulkAccepted, BulkCommand, BulkRunStatus
from hilos_runner.contact_outcomes import ContactPage
from hilos_runner.contacts_input import media_type_of, parse_contacts, variables_from_json
from hilos_runner.duplicates import OnDuplicate
from hilos_runner.errors import NotFoundError
from hilos_runner.execution_records import ExecutionRecord, RunPage
from hilos_runner.factories import bulk_service, execution_store, retry_service, run_scheduler, status_sync
from hilos_runner.idempotency import idempotency_config, start_run, submit_bulk
from hilos_runner.intake import DRY_RUN_HELP, ON_DUPLICATE_HELP, DryRun, bulk_dry_run, run_command, run_dry_run
from hilos_runner.models import IDEMPOTENCY_KEY_PATTERN, FlowRunRequest
from hilos_runner.observability import logger, metrics, tracer
from hilos_runner.retries import RetryRequest
from hilos_runner.runs import RunResult
from hilos_runner.scheduling import START_AT_HELP, check_start_at
from hilos_runner.settings import get_settings

API_TITLE = "hilos-runner"
API_VERSION = "1.0.0"
GET_RUN, GET_BULK_RUN = "get_run", "get_bulk_run"  # operationIds the creating operations link to
OnDuplicateQuery = Annotated[OnDuplicate, Query(description=ON_DUPLICATE_HELP)]
DryRunQuery = Annotated[bool, Query(description=DRY_RUN_HELP)]
StartAtQuery = Annotated[AwareDatetime | None, Query(description=START_AT_HELP)]

# Bodies are read by json_input: depth, NaN, big numbers, duplicate keys and NUL refused, naming the field.
app = APIGatewayHttpResolver(enable_validation=True, json_body_deserializer=json_input.loads)
install_error_handlers(app)
install_docs(app, title=API_TITLE, version=API_VERSION)
# SnapStart (template parameter SnapStart): run once before the snapshot, and after each restore.
register_before_snapshot(priming.prime_api, app)
register_after_restore(priming.after_restore)


@app.post(
    "/flows/<flow_id>/runs",
    summary="Start a flow for a list of contacts",
    responses=answer(201, "Started", RunResult, links={"GetRun": (GET_RUN, {"run_id": "$response.body#/run/run_id"})})
    | answer(202, "start_at: recorded SCHEDULED, starts then", RunResult)
    | answer(200, "dry_run=true: checked, nothing sent", DryRun)
    | error_responses(409, 413, 415, 422, 502, 503, 504),
)
def create_run(  # Powertools passes every parameter by name
    flow_id: UUID,
    run: FlowRunRequest,
    *,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", pattern=IDEMPOTENCY_KEY_PATTERN, description="Repeat-safe key."),
    ] = None,
    on_duplicate: OnDuplicateQuery = OnDuplicate.DROP,
    dry_run: DryRunQuery = False,
    start_at: StartAtQuery = None,
):
    command = run_command(flow_id, run, on_duplicate=on_duplicate, idempotency_key=idempotency_key)
    if start_at is not None:
        command.start_at = check_start_at(start_at, get_settings(), field="query.start_at")
    if dry_run:
        return json_response(200, run_dry_run(command).model_dump_json())
    return run_answer(start_run(command))


@app.get(
    "/runs/<run_id>",
    operation_id=GET_RUN,
    summary="Look up one run (refresh=true: with Hilos' status and counters read now)",
    responses=answer(200, "The run record", ExecutionRecord) | error_responses(404, 422, 502, 503),
)
def get_run(
    run_id: UUID,
    refresh: Annotated[bool, Query(description="Read Hilos' status and counters now, not at the next sync.")] = False,
):
    record = execution_store().get(run_id)
    if record is None:
        raise NotFoundError(f"no run {run_id}")
    if refresh:
        record, _ = status_sync().refresh(record)
    return json_response(200, record.model_dump_json())


@app.delete(
    "/runs/<run_id>",
    summary="Cancel a scheduled run before its start time (it is never sent to Hilos)",
    responses=answer(200, "Canceled: CANCELED, canceled_at set", ExecutionRecord) | error_responses(404, 409, 422, 503),
)
def cancel_run(run_id: UUID):
    return json_response(200, run_scheduler().cancel_run(run_id).model_dump_json())


StatusFilter = Annotated[
    str | None,
    Query(max_length=200, description="Comma-separated Hilos contact statuses, e.g. FAILED,EXPIRED (default: all)."),
]
ContactsLimit = Annotated[
    int | None, Query(ge=1, le=1000, description="Contacts per page (default 100 as JSON, 1000 as CSV).")
]
Cursor = Annotated[str | None, Query(max_length=2048)]
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", pattern=IDEMPOTENCY_KEY_PATTERN, description="Repeat-safe key.")
]
CONTACTS_CONTENT = {JSON_CONTENT_TYPE: {"model": ContactPage}, "text/csv": {"schema": {"type": "string"}}}


@app.get(
    "/runs/<run_id>/contacts",
    summary="Each contact of a run with Hilos' status and reason (Accept: text/csv for a file the bulk API takes)",
    responses={200: {"description": "One page", "content": CONTACTS_CONTENT}} | error_responses(404, 422, 502, 503),
)
def list_run_contacts(run_id: UUID, status: StatusFilter = None, limit: ContactsLimit = None, cursor: Cursor = None):
    return contacts_answer(app, run_id, bulk=False, status=status, limit=limit, cursor=cursor)


@app.post(
    "/runs/<run_id>/retries",
    summary="Start one new run for the contacts of a finished run in the given statuses (default FAILED, EXPIRED)",
    responses=answer(201, "Started", RunResult, links={"GetRun": (GET_RUN, {"run_id": "$response.body#/run/run_id"})})
    | error_responses(404, 409, 422, 502, 503, 504),
)
def retry_run(run_id: UUID, retry: RetryRequest | None = None, idempotency_key: IdempotencyKey = None):
    return run_answer(retry_service().retry_run(run_id, retry or RetryRequest(), idempotency_key))


@app.get(
    "/flows/<flow_id>/runs",
    summary="List a flow's runs, newest first",
    responses=answer(200, "One page", RunPage) | error_responses(422),
)
def list_runs(
    flow_id: UUID,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
):
    return json_response(200, execution_store().list_for_flow(flow_id, limit=limit, cursor=cursor).model_dump_json())


@app.post(
    "/flows/<flow_id>/bulk-runs",
    summary="Queue a flow for a large contact list (JSON or CSV)",
    description="Body: application/json `{contact_list, has_priority, flow_execution_variables}` (or a bare list "
    "of contacts), or text/csv with a header row of contact fields (empty cell = absent; tags and "
    "default_assignees `;`-separated, meta a JSON object, booleans true/false). Every contact is validated "
    "first: one bad row rejects the whole list (422 naming each row and field) and nothing is queued.",
    responses=answer(
        202, "Queued", BulkAccepted, links={"GetBulkRun": (GET_BULK_RUN, {"bulk_id": "$response.body#/id"})}
    )
    | answer(200, "dry_run=true: checked, nothing queued", DryRun)
    | error_responses(409, 413, 415, 422, 503),
)
def create_bulk_run(  # Powertools passes every parameter by name
    flow_id: UUID,
    *,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", pattern=IDEMPOTENCY_KEY_PATTERN, description="Repeat-safe key."),
    ] = None,
    has_priority: Annotated[bool | None, Query(description="For CSV or bare-list bodies.")] = None,
    flow_execution_variables: Annotated[
        str | None, Query(max_length=16_384, description="JSON object; for CSV or bare-list bodies.")
    ] = None,
    on_duplicate: OnDuplicateQuery = OnDuplicate.DROP,
    dry_run: DryRunQuery = False,
    start_at: Annotated[
        AwareDatetime | None, Query(description=f"For CSV or bare-list bodies. {START_AT_HELP}")
    ] = None,
):
    event = app.current_event
    settings = get_settings()
    request = parse_contacts(
        event.decoded_body or "",
        media_type_of(event.headers.get("content-type")),
        has_priority=has_priority,
        flow_execution_variables=variables_from_json(flow_execution_variables, field="query.flow_execution_variables"),
        start_at=start_at,
        location="body",
        max_contacts=settings.bulk_max_contacts,
        on_duplicate=on_duplicate,
    )
    if request.start_at is not None:
        field = "query.start_at" if start_at is not None else "body.start_at"
        request.start_at = check_start_at(request.start_at, settings, field=field)
    command = BulkCommand(flow_id=flow_id, request=request, idempotency_key=idempotency_key)
    if dry_run:
        return json_response(200, bulk_dry_run(command, settings.bulk_chunk_size).model_dump_json())
    return bulk_accepted_answer(app, submit_bulk(command))


@app.get(
    "/bulk-runs/<bulk_id>",
    operation_id=GET_BULK_RUN,
    summary="Follow a bulk run: counts per status and every chunk's status and Hilos execution",
    responses=answer(200, "Progress", BulkRunStatus) | error_responses(404, 422),
)
def get_bulk_run(bulk_id: UUID):
    return json_response(200, bulk_service().status(bulk_id).model_dump_json())


@app.delete(
    "/bulk-runs/<bulk_id>",
    summary="Cancel a scheduled bulk run before its start time (no chunk is sent to Hilos)",
    responses=answer(200, "Canceled: the bulk run and every chunk CANCELED", BulkRunStatus)
    | error_responses(404, 409, 422, 503),
)
def cancel_bulk_run(bulk_id: UUID):
    run_scheduler().cancel_bulk(bulk_id)
    return json_response(200, bulk_service().status(bulk_id).model_dump_json())


@app.get(
    "/bulk-runs/<bulk_id>/contacts",
    summary="Each contact of a bulk run, chunk after chunk, with Hilos' status and reason (JSON or CSV)",
    responses={200: {"description": "One page", "content": CONTACTS_CONTENT}} | error_responses(404, 422, 502, 503),
)
def list_bulk_run_contacts(
    bulk_id: UUID, status: StatusFilter = None, limit: ContactsLimit = None, cursor: Cursor = None
):
    return contacts_answer(app, bulk_id, bulk=True, status=status, limit=limit, cursor=cursor)


@app.post(
    "/bulk-runs/<bulk_id>/retries",
    summary="Submit a new bulk run for the contacts of a finished bulk run in the given statuses",
    responses=answer(
        202, "Queued", BulkAccepted, links={"GetBulkRun": (GET_BULK_RUN, {"bulk_id": "$response.body#/id"})}
    )
    | error_responses(404, 409, 422, 503),
)
def retry_bulk_run(bulk_id: UUID, retry: RetryRequest | None = None, idempotency_key: IdempotencyKey = None):
    return bulk_accepted_answer(app, retry_service().retry_bulk(bulk_id, retry or RetryRequest(), idempotency_key))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    idempotency_config().register_lambda_context(context)
    return refused_body_answer(event, get_settings()) or app.resolve(event, context)
