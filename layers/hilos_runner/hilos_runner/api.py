"""run_api's HTTP side, used by run_api alone: JSON answers with absolute URLs, one error shape for every
exception (and the table from domain errors to status codes), the body guard (size and media type), and the
OpenAPI document and Swagger UI built on first request. Kept out of the handler so that
``functions/run_api/run_api.py`` holds routes and nothing else.

Error shape: ``{"code": "...", "message": "...", "details": [{"field": "body.contact_list.0.phone",
"reason": "..."}]}``. No stack traces, exception class names or upstream internals.
"""

import json
import math
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from pydantic import BaseModel, Field

from hilos_runner import errors
from hilos_runner.contacts_input import BULK_MEDIA_TYPES, content_type_essence
from hilos_runner.errors import HilosRunnerError, validation_details
from hilos_runner.execution_records import RunStatus
from hilos_runner.json_input import MAX_INTEGER
from hilos_runner.observability import logger
from hilos_runner.settings import Settings

if TYPE_CHECKING:
    from uuid import UUID

    from hilos_runner.bulk import BulkAccepted
    from hilos_runner.contact_outcomes import ContactPage
    from hilos_runner.runs import RunResult


JSON_CONTENT_TYPE = "application/json"


class ErrorDetail(BaseModel):
    field: str = Field(description="Where the problem is, e.g. body.contact_list.3.email ('' for the whole request).")
    reason: str


class ErrorBody(BaseModel):
    code: str = Field(description="Stable, machine-readable error code.")
    message: str
    details: list[ErrorDetail] = []
    run_id: str | None = Field(default=None, description="The recorded run this error belongs to, if any.")


# Domain error -> HTTP status. Checked in order: subclasses before their bases.
_STATUS_BY_ERROR: tuple[tuple[type[errors.HilosRunnerError], int], ...] = (
    (errors.InvalidRequestError, 422),
    (errors.UnsupportedMediaTypeError, 415),
    (errors.IdempotencyKeyReusedError, 422),
    (errors.IdempotencyInProgressError, 409),
    (errors.RunNotFinishedError, 409),
    (errors.RunNotCancelableError, 409),
    (errors.NotFoundError, 404),
    (errors.HilosRejectedError, 422),
    (errors.FlowNotFoundError, 404),
    (errors.HilosAuthError, 502),
    (errors.HilosUnavailableError, 503),
    (errors.HilosOutcomeUnknownError, 504),
    # Any other Hilos answer we cannot use (a status read refused, an execution Hilos no longer knows).
    (errors.HilosError, 502),
    (errors.DependencyUnavailableError, 503),
    (errors.ContactsNotReadYetError, 503),
    (errors.ConfigurationError, 500),
)

# Seconds a client should wait before retrying a transient failure when upstream gave no hint.
DEFAULT_RETRY_AFTER_SECONDS = 5


def error_body(code: str, message: str, details: Sequence[dict[str, Any]] = (), *, run_id: str | None = None) -> str:
    body = ErrorBody(code=code, message=message, details=[ErrorDetail(**d) for d in details], run_id=run_id)
    return body.model_dump_json(exclude_none=True)


def status_for(error: errors.HilosRunnerError) -> int:
    for error_type, status in _STATUS_BY_ERROR:
        if isinstance(error, error_type):
            return status
    return 500


def headers_for(error: errors.HilosRunnerError) -> dict[str, str]:
    if not error.retryable:
        return {}
    retry_after = getattr(error, "retry_after", None) or DEFAULT_RETRY_AFTER_SECONDS
    return {"Retry-After": str(math.ceil(retry_after))}


def public_message(error: errors.HilosRunnerError) -> str:
    # Configuration problems are for the operator (logged), not for the frontend.
    if isinstance(error, errors.ConfigurationError):
        return "the service is misconfigured; the operator has been told"
    return error.message


def api_gateway_error(status: int, code: str, message: str, details: Sequence[dict[str, Any]] = ()) -> dict:
    """A complete API Gateway proxy answer, for checks made before the router runs (body size)."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": JSON_CONTENT_TYPE},
        "body": error_body(code, message, details),
        "isBase64Encoded": False,
    }


CSV_CONTENT_TYPE = "text/csv; charset=utf-8"


def json_response(status: int, body: str, headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, content_type=JSON_CONTENT_TYPE, body=body, headers=headers)


def answer(
    status: int, description: str, model: type, *, links: dict[str, tuple[str, dict[str, str]]] | None = None
) -> dict[int, Any]:
    """An OpenAPI ``responses`` entry with a JSON body of ``model``; ``links``: name -> (operationId, parameters)."""
    entry: dict[str, Any] = {"description": description, "content": {JSON_CONTENT_TYPE: {"model": model}}}
    if links:
        entry["links"] = {name: {"operationId": to, "parameters": values} for name, (to, values) in links.items()}
    return {status: entry}


def run_answer(result: "RunResult") -> Response:
    """The answer to a request that started a run (a new one, or a retry): 201 once Hilos accepted it, 504 while
    its outcome is unknown (reconciliation settles it), 502 when a repeated key's run was settled as never started;
    202 for a run recorded to start later (start_at)."""
    record = result.run
    if record.status is RunStatus.SCHEDULED or record.canceled_at is not None:  # start_at: hilos_runner.scheduling
        return json_response(202, result.model_dump_json(), {"Location": f"/runs/{record.run_id}"})
    if record.status.started:
        return json_response(201, result.model_dump_json(), {"Location": f"/runs/{record.run_id}"})
    if record.awaits_reconcile:  # sent, no answer yet: reconciliation settles it from Hilos' records
        return json_response(
            504, error_body("hilos_outcome_unknown", record.last_error or "", run_id=str(record.run_id))
        )
    return json_response(502, error_body("run_not_started", record.last_error or "", run_id=str(record.run_id)))


def wants_csv(accept: str | None) -> bool:
    """True when the Accept header asks for text/csv (before any JSON type it also names)."""
    types = [part.split(";", 1)[0].strip().lower() for part in (accept or "").split(",")]
    return "text/csv" in types and (
        JSON_CONTENT_TYPE not in types or types.index("text/csv") < types.index(JSON_CONTENT_TYPE)
    )


# A CSV answer is meant to be saved and submitted again: by default it holds as many contacts as a page can.
CONTACTS_PAGE_LIMIT = {"json": 100, "csv": 1000}


def contacts_answer(
    app: APIGatewayHttpResolver,
    owner_id: "UUID",
    *,
    bulk: bool,
    status: str | None,
    limit: int | None,
    cursor: str | None,
) -> Response:
    """A page of the contacts of a run (``bulk``: of a bulk run), as JSON or, when the Accept header asks, as CSV
    with the next page's cursor in ``X-Next-Cursor``."""
    from hilos_runner.contact_outcomes import parse_statuses
    from hilos_runner.factories import contact_outcomes

    csv = wants_csv(app.current_event.headers.get("accept"))
    outcomes = contact_outcomes()
    page = outcomes.page(
        outcomes.owner(owner_id, bulk=bulk),
        statuses=parse_statuses(status),
        limit=limit or CONTACTS_PAGE_LIMIT["csv" if csv else "json"],
        cursor=cursor,
    )
    return _contacts_response(page, csv=csv)


def _contacts_response(page: "ContactPage", *, csv: bool) -> Response:
    if not csv:
        return json_response(200, page.model_dump_json())
    from hilos_runner.contact_outcomes import contacts_csv

    headers = {"X-Next-Cursor": page.next_cursor} if page.next_cursor else None
    return Response(status_code=200, content_type=CSV_CONTENT_TYPE, body=contacts_csv(page.items), headers=headers)


def error_responses(*statuses: int) -> dict[int, Any]:
    """OpenAPI ``responses`` entries for error statuses, all in the one error shape."""
    content = {JSON_CONTENT_TYPE: {"model": ErrorBody}}
    return {status: {"description": "Error", "content": content} for status in statuses}


# What each POST route reads: its body size limit (a Settings field) and the media types it takes.
_BODY_RULES = {
    "/runs": ("max_body_bytes", (JSON_CONTENT_TYPE,)),
    "/bulk-runs": ("bulk_max_body_bytes", tuple(BULK_MEDIA_TYPES)),
    # A multipart type without a boundary made Powertools' body parser raise (500; found by schemathesis).
    "/retries": ("max_body_bytes", (JSON_CONTENT_TYPE,)),
}
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def body_size(event: dict[str, Any]) -> int:
    """Bytes of the body as sent: API Gateway base64-encodes bodies that are not text, 4 characters per 3 bytes."""
    body = event.get("body") or ""
    if not event.get("isBase64Encoded"):
        return len(body.encode())
    return len(body) * 3 // 4 - body[-2:].count("=")


def _headers(event: dict[str, Any]) -> dict[str, str]:
    return {name.lower(): value for name, value in (event.get("headers") or {}).items()}


def media_type(event: dict[str, Any]) -> str:
    """The Content-Type's essence (``application/json``), or "" when none is given (taken as JSON)."""
    return content_type_essence(_headers(event).get("content-type"))


def api_url(event: dict[str, Any]) -> str:
    """The API's URL as the caller reached it: the scheme API Gateway forwards (X-Forwarded-Proto; https when
    absent), the domain name of the request, and the stage unless it is ``$default`` (then not in the path)."""
    context = event.get("requestContext") or {}
    headers = _headers(event)
    scheme = (headers.get("x-forwarded-proto") or "https").split(",", 1)[0].strip()
    host = context.get("domainName") or headers.get("host") or "localhost"
    stage = context.get("stage") or "$default"
    return f"{scheme}://{host}" + ("" if stage == "$default" else f"/{stage}")


def bulk_accepted_answer(app: APIGatewayHttpResolver, accepted: "BulkAccepted") -> Response:
    """202 for a queued bulk run: its ``status_url`` absolute (a caller can follow it as it is), ``Location``
    the same path relative to the API."""
    answered = accepted.model_copy(update={"status_url": api_url(app.current_event.raw_event) + accepted.status_url})
    return json_response(202, answered.model_dump_json(), {"Location": accepted.status_url})


def refused_body_answer(event: dict[str, Any], settings: Settings) -> dict[str, Any] | None:
    """413 for a body over its route's limit, 415 for a media type the route does not read; checked before
    routing and validation, so neither costs a parse."""
    path = str(event.get("rawPath", ""))
    rule = next((rule for suffix, rule in _BODY_RULES.items() if path.endswith(suffix)), None)
    if rule is None or event.get("requestContext", {}).get("http", {}).get("method") != "POST":
        return None
    limit_setting, accepted = rule
    limit = getattr(settings, limit_setting)
    if body_size(event) > limit:
        return api_gateway_error(
            413, "body_too_large", f"the body exceeds {limit} bytes", [{"field": "body", "reason": "too large"}]
        )
    essence = media_type(event)
    if essence and essence not in accepted:
        hint = " (curl -d sends a form: add -H 'Content-Type: application/json')" if essence in _FORM_TYPES else ""
        reason = f"send {' or '.join(accepted)}, not {essence[:100]}{hint}"
        return api_gateway_error(
            415,
            "unsupported_media_type",
            f"this route reads {' or '.join(accepted)}",
            [{"field": "header.content-type", "reason": reason}],
        )
    return None


def install_error_handlers(app: APIGatewayHttpResolver) -> None:
    """Every failure answers in the one error shape; no stack trace or internal ever leaves."""

    @app.exception_handler(RequestValidationError)
    def _invalid_request(error: RequestValidationError) -> Response:
        details = validation_details(error.errors())
        return json_response(422, error_body("validation_error", "the request is not valid", details))

    @app.exception_handler(RequestUnsupportedContentType)
    def _unsupported_media_type(_: RequestUnsupportedContentType) -> Response:
        # refused_body_answer answers first; this is the backstop for a route it does not know.
        details = [{"field": "header.content-type", "reason": "send application/json"}]
        return json_response(415, error_body("unsupported_media_type", "the body must be JSON", details))

    @app.exception_handler(UnicodeDecodeError)
    def _not_text(_: UnicodeDecodeError) -> Response:
        # A base64 body that is not UTF-8 (found by schemathesis): Powertools fails decoding it, before validation.
        details = [{"field": "body", "reason": "not UTF-8 text"}]
        return json_response(422, error_body("validation_error", "the request is not valid", details))

    @app.exception_handler(HilosRunnerError)
    def _domain_error(error: HilosRunnerError) -> Response:
        status = status_for(error)
        log = logger.error if status >= 500 and status not in (503, 504) else logger.info
        log("request failed", extra={"code": error.code, "status": status, "reason": error.message})
        body = error_body(error.code, public_message(error), error.details, run_id=error.run_id)
        return json_response(status, body, headers_for(error))

    @app.not_found
    def _route_not_found(_: Exception) -> Response:
        return json_response(404, error_body("route_not_found", "no such route"))

    @app.exception_handler(Exception)
    def _unexpected(_: Exception) -> Response:
        logger.exception("unexpected error")
        return json_response(500, error_body("internal_error", "unexpected error; it has been logged"))


# The answers of the gateway in front of every route (the JWT authorizer, the URL length), and of the body guard.
_GATEWAY_ANSWERS = {401: "No valid bearer token (the JWT authorizer)", 414: "The URL is too long"}
_BODY_ANSWERS = {413: "The body is over the route's limit", 415: "The body's media type is not one the route reads"}
_NO_NUL = {"pattern": "^[^\\u0000]*$"}
_BOUNDED_JSON = {
    "description": "Any JSON value: no NaN/Infinity, whole numbers within +-(2^53 - 1), no NUL in strings.",
    "anyOf": [
        {"type": "string", **_NO_NUL},
        {"type": "integer", "minimum": -MAX_INTEGER, "maximum": MAX_INTEGER},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "null"},
        {"type": "array", "items": {"$ref": "#/components/schemas/JsonValue"}},
        {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/JsonValue"}},
    ],
}


def stated_truths(document: dict[str, Any]) -> dict[str, Any]:
    """What Powertools cannot say from the routes' signatures, added to its document: the gateway's and the body
    guard's answers on every operation, the bulk route's two media types (it reads its body itself), and JSON
    values as json_input reads them."""
    from hilos_runner.messages import BulkRunRequest

    document.setdefault("components", {})["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "The JWT authorizer's token",
        }
    }
    document["security"] = [{"bearer": []}]  # every route: the deployed API puts the JWT authorizer on each
    components = document["components"].setdefault("schemas", {})
    components["JsonValue"] = _BOUNDED_JSON
    error = {"content": {JSON_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            answers = _GATEWAY_ANSWERS | (_BODY_ANSWERS if method == "post" else {})
            for status, description in answers.items():
                operation["responses"].setdefault(str(status), {"description": description, **error})
            if path.endswith("/bulk-runs") and method == "post":
                operation["requestBody"] = _bulk_request_body(BulkRunRequest, components)
                _json_object_parameter(operation, "flow_execution_variables")
    _keys_without_nul(document)
    return document


def _keys_without_nul(schema: Any) -> None:
    """Every object of free-form JSON (meta, flow_execution_variables) takes no NUL in its keys either."""
    if isinstance(schema, dict):
        if schema.get("additionalProperties") == {"$ref": "#/components/schemas/JsonValue"}:
            schema["propertyNames"] = _NO_NUL
        for value in schema.values():
            _keys_without_nul(value)
    elif isinstance(schema, list):
        for value in schema:
            _keys_without_nul(value)


def _json_object_parameter(operation: dict[str, Any], name: str) -> None:
    """A query parameter that carries a JSON object (variables_from_json): described by its content, not as text."""
    for parameter in operation.get("parameters", []):
        if parameter["name"] == name:
            parameter.pop("schema", None)
            object_schema = {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/JsonValue"}}
            parameter["content"] = {JSON_CONTENT_TYPE: {"schema": object_schema}}


def _bulk_request_body(model: Any, components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        components.setdefault(name, definition)
    components["BulkRunRequest"] = schema
    contacts = {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Contact"}}
    return {
        "required": True,
        "content": {
            JSON_CONTENT_TYPE: {"schema": {"anyOf": [{"$ref": "#/components/schemas/BulkRunRequest"}, contacts]}},
            "text/csv": {
                "schema": {"type": "string"},
                "example": 'phone,first_name,meta\n+5215512345678,Ana,"{""plan"": ""gold""}"\n',
            },
        },
    }


def openapi_document(app: APIGatewayHttpResolver, *, title: str, version: str) -> dict[str, Any]:
    """The API's OpenAPI document: Powertools' from the routes, plus ``stated_truths``. What /openapi.json serves,
    and what schemas/openapi.json keeps (tools/export_openapi.py)."""
    return stated_truths(json.loads(app.get_openapi_json_schema(title=title, version=version)))


def install_docs(app: APIGatewayHttpResolver, *, title: str, version: str) -> None:
    """``/openapi.json`` and ``/swagger``, as Powertools' enable_swagger() serves them, but built on their
    first request: enable_swagger() imports Powertools' OpenAPI models (~0.2 s of every cold start)."""

    @cache
    def document() -> str:
        return json.dumps(openapi_document(app, title=title, version=version), separators=(",", ":"))

    def escaped_document() -> str:  # safe inside the page's <script>
        return document().replace("</", "<\\/")

    @cache
    def swagger_page() -> str:
        from pathlib import Path

        from aws_lambda_powertools.event_handler.openapi import swagger_ui
        from aws_lambda_powertools.event_handler.openapi.swagger_ui import generate_swagger_html

        assets = Path(swagger_ui.__file__).parent  # inlined, no CDN
        js = (assets / "swagger-ui-bundle.min.js").read_text(encoding="utf-8")
        css = (assets / "swagger-ui.min.css").read_text(encoding="utf-8")
        return generate_swagger_html(escaped_document(), js, css, swagger_base_url="", oauth2_config=None)

    @app.get("/openapi.json", include_in_schema=False)
    def _openapi_document():  # type: ignore[no-untyped-def]  # Powertools reads return annotations
        return json_response(200, document())

    @app.get("/swagger", include_in_schema=False)
    def _swagger():  # type: ignore[no-untyped-def]
        query = app.current_event.query_string_parameters or {}
        if query.get("format") == "oauth2-redirect":
            from aws_lambda_powertools.event_handler.openapi.swagger_ui import generate_oauth2_redirect_html

            return Response(status_code=200, content_type="text/html", body=generate_oauth2_redirect_html())
        if query.get("format") == "json":
            return json_response(200, escaped_document())
        return Response(status_code=200, content_type="text/html", body=swagger_page())
