"""run_api: the HTTPS door for frontends. Routes and HTTP mapping only; the work is in the layer."""

from functools import cache
from typing import Annotated, Any
from uuid import UUID

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Header, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from hilos_runner import http
from hilos_runner.bulk import BulkAccepted, BulkCommand, BulkRunStatus
from hilos_runner.contacts_input import media_type_of, parse_contacts, variables_from_json
from hilos_runner.errors import HilosRunnerError, NotFoundError
from hilos_runner.executions import ExecutionRecord, RunPage, RunSource, RunStatus
from hilos_runner.models import FlowRunRequest
from hilos_runner.observability import logger, metrics, tracer
from hilos_runner.runs import IDEMPOTENCY_KEY_PATTERN, RunCommand, RunResult
from hilos_runner.settings import get_settings
from hilos_runner.wiring import bulk_service, execution_store, idempotency_config, start_run, submit_bulk

API_TITLE = "hilos-runner"
API_VERSION = "1.0.0"

# No enable_swagger() here: it imports Powertools' OpenAPI models (~0.2 s of every cold start). The
# document and the Swagger UI are built on their first request instead (routes at the end).
app = APIGatewayHttpResolver(enable_validation=True)


def _json(status: int, body: str, headers: dict[str, str] | None = None):
    return Response(status_code=status, content_type=http.JSON_CONTENT_TYPE, body=body, headers=headers)


def _errors(*statuses: int) -> dict[int, Any]:
    content = {http.JSON_CONTENT_TYPE: {"model": http.ErrorBody}}
    return {status: {"description": "Error", "content": content} for status in statuses}


@app.post(
    "/flows/<flow_id>/runs",
    summary="Start a flow for a list of contacts",
    responses={201: {"description": "Started", "content": {http.JSON_CONTENT_TYPE: {"model": RunResult}}}}
    | _errors(409, 413, 422, 502, 503, 504),
)
def create_run(
    flow_id: UUID,
    run: FlowRunRequest,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", pattern=IDEMPOTENCY_KEY_PATTERN, description="Repeat-safe key."),
    ] = None,
):
    command = RunCommand(flow_id=flow_id, request=run, source=RunSource.API, idempotency_key=idempotency_key)
    result = start_run(command)
    if result.run.status is RunStatus.UNKNOWN:
        body = http.error_body("hilos_outcome_unknown", result.run.last_error or "", run_id=str(result.run.run_id))
        return _json(504, body)
    return _json(201, result.model_dump_json(), {"Location": f"/runs/{result.run.run_id}"})


@app.get(
    "/runs/<run_id>",
    summary="Look up one run",
    responses={200: {"description": "The run record", "content": {http.JSON_CONTENT_TYPE: {"model": ExecutionRecord}}}}
    | _errors(404, 422),
)
def get_run(run_id: UUID):
    record = execution_store().get(run_id)
    if record is None:
        raise NotFoundError(f"no run {run_id}")
    return _json(200, record.model_dump_json())


@app.get(
    "/flows/<flow_id>/runs",
    summary="List a flow's runs, newest first",
    responses={200: {"description": "One page", "content": {http.JSON_CONTENT_TYPE: {"model": RunPage}}}}
    | _errors(422),
)
def list_runs(
    flow_id: UUID,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
):
    return _json(200, execution_store().list_for_flow(flow_id, limit=limit, cursor=cursor).model_dump_json())


@app.post(
    "/flows/<flow_id>/bulk-runs",
    summary="Queue a flow for a large contact list (JSON or CSV)",
    description="Body: application/json `{contact_list, has_priority, flow_execution_variables}` (or a bare list "
    "of contacts), or text/csv with a header row of contact fields (empty cell = absent; tags and "
    "default_assignees `;`-separated, meta a JSON object, booleans true/false). Every contact is validated "
    "first: one bad row rejects the whole list (422 naming each row and field) and nothing is queued.",
    responses={202: {"description": "Queued", "content": {http.JSON_CONTENT_TYPE: {"model": BulkAccepted}}}}
    | _errors(409, 413, 415, 422, 503),
)
def create_bulk_run(
    flow_id: UUID,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", pattern=IDEMPOTENCY_KEY_PATTERN, description="Repeat-safe key."),
    ] = None,
    has_priority: Annotated[bool | None, Query(description="For CSV or bare-list bodies.")] = None,
    flow_execution_variables: Annotated[
        str | None, Query(max_length=16_384, description="JSON object; for CSV or bare-list bodies.")
    ] = None,
):
    event = app.current_event
    request = parse_contacts(
        event.decoded_body or "",
        media_type_of(event.headers.get("content-type")),
        has_priority=has_priority,
        flow_execution_variables=variables_from_json(flow_execution_variables, field="query.flow_execution_variables"),
        location="body",
        max_contacts=get_settings().bulk_max_contacts,
    )
    accepted = submit_bulk(BulkCommand(flow_id=flow_id, request=request, idempotency_key=idempotency_key))
    return _json(202, accepted.model_dump_json(), {"Location": accepted.status_url})


@app.get(
    "/bulk-runs/<bulk_id>",
    summary="Follow a bulk run: counts per status and every chunk's status and Hilos execution",
    responses={200: {"description": "Progress", "content": {http.JSON_CONTENT_TYPE: {"model": BulkRunStatus}}}}
    | _errors(404, 422),
)
def get_bulk_run(bulk_id: UUID):
    return _json(200, bulk_service().status(bulk_id).model_dump_json())


@cache
def _openapi_document() -> str:
    return app.get_openapi_json_schema(title=API_TITLE, version=API_VERSION)


@app.get("/openapi.json", include_in_schema=False)
def openapi_document():
    return _json(200, _openapi_document())


@cache
def _swagger_page() -> str:
    from pathlib import Path

    from aws_lambda_powertools.event_handler.openapi import swagger_ui
    from aws_lambda_powertools.event_handler.openapi.swagger_ui import generate_swagger_html

    # What enable_swagger() serves (assets inlined, no CDN), with the document escaped for a <script>.
    assets = Path(swagger_ui.__file__).parent
    js = (assets / "swagger-ui-bundle.min.js").read_text(encoding="utf-8")
    css = (assets / "swagger-ui.min.css").read_text(encoding="utf-8")
    return generate_swagger_html(_escaped_document(), js, css, swagger_base_url="", oauth2_config=None)


def _escaped_document() -> str:
    return _openapi_document().replace("</", "<\\/")


@app.get("/swagger", include_in_schema=False)
def swagger():
    query = app.current_event.query_string_parameters or {}
    if query.get("format") == "oauth2-redirect":
        from aws_lambda_powertools.event_handler.openapi.swagger_ui import generate_oauth2_redirect_html

        return Response(status_code=200, content_type="text/html", body=generate_oauth2_redirect_html())
    if query.get("format") == "json":
        return _json(200, _escaped_document())
    return Response(status_code=200, content_type="text/html", body=_swagger_page())


@app.exception_handler(RequestValidationError)
def _invalid_request(error: RequestValidationError):
    details = http.validation_details(error.errors())
    return _json(422, http.error_body("validation_error", "the request is not valid", details))


@app.exception_handler(UnicodeDecodeError)
def _not_text(_: UnicodeDecodeError):
    # A base64 body that is not UTF-8 (found by schemathesis): Powertools fails decoding it, before validation.
    details = [{"field": "body", "reason": "not UTF-8 text"}]
    return _json(422, http.error_body("validation_error", "the request is not valid", details))


@app.exception_handler(HilosRunnerError)
def _domain_error(error: HilosRunnerError):
    status = http.status_for(error)
    log = logger.error if status >= 500 and status not in (503, 504) else logger.info
    log("request failed", extra={"code": error.code, "status": status, "reason": error.message})
    body = http.error_body(error.code, http.public_message(error), error.details, run_id=error.run_id)
    return _json(status, body, http.headers_for(error))


@app.not_found
def _route_not_found(_: Exception):
    return _json(404, http.error_body("route_not_found", "no such route"))


@app.exception_handler(Exception)
def _unexpected(_: Exception):
    logger.exception("unexpected error")
    return _json(500, http.error_body("internal_error", "unexpected error; it has been logged"))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    idempotency_config().register_lambda_context(context)
    settings = get_settings()
    # Contact files are larger than run bodies; everything else keeps the small limit.
    is_bulk = str(event.get("rawPath", "")).endswith("/bulk-runs")
    limit = settings.bulk_max_body_bytes if is_bulk else settings.max_body_bytes
    if len(event.get("body") or "") > limit:
        return http.api_gateway_error(
            413, "body_too_large", f"the body exceeds {limit} bytes", [{"field": "body", "reason": "too large"}]
        )
    return app.resolve(event, context)
