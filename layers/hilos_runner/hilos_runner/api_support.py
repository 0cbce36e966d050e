"""What run_api's resolver needs besides its routes: JSON answers, the one error shape for every
exception, the body-size guard, and the OpenAPI document and Swagger UI built on first request.

Kept out of the handler so that ``functions/run_api/run_api.py`` holds routes and nothing else.
"""

from functools import cache
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from hilos_runner import http
from hilos_runner.errors import HilosRunnerError
from hilos_runner.observability import logger
from hilos_runner.settings import Settings


def json_response(status: int, body: str, headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, content_type=http.JSON_CONTENT_TYPE, body=body, headers=headers)


def error_responses(*statuses: int) -> dict[int, Any]:
    """OpenAPI ``responses`` entries for error statuses, all in the one error shape."""
    content = {http.JSON_CONTENT_TYPE: {"model": http.ErrorBody}}
    return {status: {"description": "Error", "content": content} for status in statuses}


def oversized_body_answer(event: dict[str, Any], settings: Settings) -> dict[str, Any] | None:
    """A 413 answer when the body is over its route's limit (checked before routing and validation)."""
    # Contact files are larger than run bodies; everything else keeps the small limit.
    is_bulk = str(event.get("rawPath", "")).endswith("/bulk-runs")
    limit = settings.bulk_max_body_bytes if is_bulk else settings.max_body_bytes
    if len(event.get("body") or "") <= limit:
        return None
    return http.api_gateway_error(
        413, "body_too_large", f"the body exceeds {limit} bytes", [{"field": "body", "reason": "too large"}]
    )


def install_error_handlers(app: APIGatewayHttpResolver) -> None:
    """Every failure answers in the one error shape; no stack trace or internal ever leaves."""

    @app.exception_handler(RequestValidationError)
    def _invalid_request(error: RequestValidationError) -> Response:
        details = http.validation_details(error.errors())
        return json_response(422, http.error_body("validation_error", "the request is not valid", details))

    @app.exception_handler(UnicodeDecodeError)
    def _not_text(_: UnicodeDecodeError) -> Response:
        # A base64 body that is not UTF-8 (found by schemathesis): Powertools fails decoding it, before validation.
        details = [{"field": "body", "reason": "not UTF-8 text"}]
        return json_response(422, http.error_body("validation_error", "the request is not valid", details))

    @app.exception_handler(HilosRunnerError)
    def _domain_error(error: HilosRunnerError) -> Response:
        status = http.status_for(error)
        log = logger.error if status >= 500 and status not in (503, 504) else logger.info
        log("request failed", extra={"code": error.code, "status": status, "reason": error.message})
        body = http.error_body(error.code, http.public_message(error), error.details, run_id=error.run_id)
        return json_response(status, body, http.headers_for(error))

    @app.not_found
    def _route_not_found(_: Exception) -> Response:
        return json_response(404, http.error_body("route_not_found", "no such route"))

    @app.exception_handler(Exception)
    def _unexpected(_: Exception) -> Response:
        logger.exception("unexpected error")
        return json_response(500, http.error_body("internal_error", "unexpected error; it has been logged"))


def install_docs(app: APIGatewayHttpResolver, *, title: str, version: str) -> None:
    """``/openapi.json`` and ``/swagger``, as Powertools' enable_swagger() serves them, but built on their
    first request: enable_swagger() imports Powertools' OpenAPI models (~0.2 s of every cold start)."""

    @cache
    def document() -> str:
        return app.get_openapi_json_schema(title=title, version=version)

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
