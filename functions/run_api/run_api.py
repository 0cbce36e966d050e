"""run_api: the HTTPS door for frontends. Routes and HTTP mapping only; the work is in the layer."""

from typing import Annotated, Any
from uuid import UUID

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.openapi.params import Header, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from snapshot_restore_py import register_after_restore, register_before_snapshot

from hilos_runner import http, json_input, priming
from hilos_runner.api_support import (
    answer,
    error_responses,
    install_docs,
    install_error_handlers,
    json_response,
    refused_body_answer,
)
from hilos_runner.bulk import BulkAccepted, BulkCommand, BulkRunStatus
from hilos_runner.contacts_input import media_type_of, parse_contacts, variables_from_json
from hilos_runner.duplicates import OnDuplicate
from hilos_runner.errors import NotFoundError
from hilos_runner.executions import ExecutionRecord, RunPage
from hilos_runner.intake import DRY_RUN_HELP, ON_DUPLICATE_HELP, DryRun, bulk_dry_run, run_command, run_dry_run
from hilos_runner.models import FlowRunRequest
from hilos_runner.observability import logger, metrics, tracer
from hilos_runner.runs import IDEMPOTENCY_KEY_PATTERN, RunResult
from hilos_runner.settings import get_settings
from hilos_runner.wiring import (
    bulk_service,
    execution_store,
    idempotency_config,
    start_run,
    status_sync,
    submit_bulk,
)

API_TITLE = "hilos-runner"
API_VERSION = "1.0.0"
GET_RUN, GET_BULK_RUN = "get_run", "get_bulk_run"  # operationIds the creating operations link to
OnDuplicateQuery = Annotated[OnDuplicate, Query(description=ON_DUPLICATE_HELP)]
DryRunQuery = Annotated[bool, Query(description=DRY_RUN_HELP)]

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
    | answer(200, "dry_run=true: checked, nothing sent", DryRun)
    | error_responses(409, 413, 415, 422, 502, 503, 504),
)
def create_run(
    flow_id: UUID,
    run: FlowRunRequest,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", pattern=IDEMPOTENCY_KEY_PATTERN, description="Repeat-safe key."),
    ] = None,
    on_duplicate: OnDuplicateQuery = OnDuplicate.DROP,
    dry_run: DryRunQuery = False,
):
    command = run_command(flow_id, run, on_duplicate=on_duplicate, idempotency_key=idempotency_key)
    if dry_run:
        return json_response(200, run_dry_run(command).model_dump_json())
    result = start_run(command)
    record = result.run
    if record.status.started:
        return json_response(201, result.model_dump_json(), {"Location": f"/runs/{record.run_id}"})
    if record.awaits_reconcile:  # sent, no answer yet: reconciliation settles it from Hilos' records
        return json_response(
            504, http.error_body("hilos_outcome_unknown", record.last_error or "", run_id=str(record.run_id))
        )
    # A repeated key whose run was settled as never started since its first answer.
    return json_response(502, http.error_body("run_not_started", record.last_error or "", run_id=str(record.run_id)))


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
):
    event = app.current_event
    settings = get_settings()
    request = parse_contacts(
        event.decoded_body or "",
        media_type_of(event.headers.get("content-type")),
        has_priority=has_priority,
        flow_execution_variables=variables_from_json(flow_execution_variables, field="query.flow_execution_variables"),
        location="body",
        max_contacts=settings.bulk_max_contacts,
        on_duplicate=on_duplicate,
    )
    command = BulkCommand(flow_id=flow_id, request=request, idempotency_key=idempotency_key)
    if dry_run:
        return json_response(200, bulk_dry_run(command, settings.bulk_chunk_size).model_dump_json())
    accepted = submit_bulk(command)
    return json_response(202, accepted.model_dump_json(), {"Location": accepted.status_url})


@app.get(
    "/bulk-runs/<bulk_id>",
    operation_id=GET_BULK_RUN,
    summary="Follow a bulk run: counts per status and every chunk's status and Hilos execution",
    responses=answer(200, "Progress", BulkRunStatus) | error_responses(404, 422),
)
def get_bulk_run(bulk_id: UUID):
    return json_response(200, bulk_service().status(bulk_id).model_dump_json())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    idempotency_config().register_lambda_context(context)
    return refused_body_answer(event, get_settings()) or app.resolve(event, context)
