"""Access: who can call what, and what each function may touch.

- every route the code serves is deployed, and deployed behind the JWT authorizer (no catch-all), but the API's
  docs (/openapi.json, /swagger), open unless ApiDocsRequireAuth=true; the local front opens the same routes;
- CORS is an allow-list: exact origins from a parameter whose pattern refuses wildcards, no credentials; the
  local front reads the same configuration (local.cors) as the API deploys;
- no IAM permission is granted on "*" where the resource has a name: the only managed policy left is
  X-Ray's (it has no resource-level permissions), each function writes logs to its own group only;
- every checkov finding the template does not fix is skipped in place with its reason (make lint runs
  checkov itself, from its own virtualenv);
- the request limits each give a clear 413 / 422 naming what is too large, before Hilos is called.
"""

import json
import re
from typing import Any

import pytest

from hilos_runner.models import MAX_CONTACTS_PER_RUN, MAX_META_BYTES
from local.cors import CorsPolicy, cors_policy
from local.template import StackResources, http_routes
from tests.fake_hilos import FakeHilos
from tests.helpers import FLOW_ID, call_run_api, contact, run_body
from tests.template.sam_template import alternatives, as_list, inline_statements, references, resources_of, translate

XRAY_POLICY = {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AWSXrayWriteOnlyAccess"}


# --- routes ------------------------------------------------------------------------------------------------


def code_routes() -> set[tuple[str, str]]:
    """(METHOD, /path/{param}) of every route run_api serves, from the Powertools router itself."""
    import run_api

    routes = set()
    for route in run_api.app._static_routes + run_api.app._dynamic_routes:
        path = re.sub(r"<(\w+)>", r"{\1}", route.path)
        routes.add((route.method.upper(), path))
    return routes


def deployed_operations(translated: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    (api,) = resources_of(translated, "AWS::ApiGatewayV2::Api").values()
    body = api["Properties"]["Body"]
    return {
        (method.upper(), path): operation
        for path, operations in body["paths"].items()
        for method, operation in operations.items()
    }


def test_every_route_the_code_serves_is_deployed_and_nothing_else(translated: dict[str, Any]):
    deployed = set(deployed_operations(translated))
    assert code_routes() == deployed
    assert not any(
        path in ("$default", "/{proxy+}") or method == "X-AMAZON-APIGATEWAY-ANY-METHOD" for method, path in deployed
    )


DOCS_ROUTES = {("GET", "/openapi.json"), ("GET", "/swagger")}


@pytest.mark.parametrize("docs_require_auth", ["false", "true"])
def test_every_deployed_route_requires_a_jwt_but_the_docs_unless_told(source: dict[str, Any], docs_require_auth: str):
    parameters = {"ApiDocsRequireAuth": docs_require_auth}
    translated = translate(source, parameters)
    deployed = StackResources.with_defaults(translated, "test", parameters)  # resolves the Fn::If as deployed
    (api,) = resources_of(translated, "AWS::ApiGatewayV2::Api").values()
    schemes = api["Properties"]["Body"]["components"]["securitySchemes"]
    for (method, path), operation in deployed_operations(translated).items():
        requirements = deployed.resolve(operation.get("security"))
        if (method, path) in DOCS_ROUTES and docs_require_auth == "false":
            assert requirements == [{"NONE": []}], f"{method} {path}"  # what SAM writes for Authorizer: NONE
            continue
        assert requirements, f"{method} {path} is open"
        for requirement in requirements:
            assert requirement, f"{method} {path}: an empty requirement lets anyone in"
            for name in requirement:
                assert schemes[name]["x-amazon-apigateway-authorizer"]["type"] == "jwt", f"{method} {path}"


@pytest.mark.parametrize("docs_require_auth", ["false", "true"])
def test_the_local_front_opens_the_routes_the_api_opens(source: dict[str, Any], docs_require_auth: str):
    stack = StackResources.with_defaults(source, "test", {"ApiDocsRequireAuth": docs_require_auth})
    open_routes = {(route.method, route.path) for route in http_routes(stack) if route.authorizer is None}
    assert open_routes == (DOCS_ROUTES if docs_require_auth == "false" else set())
    assert {route.authorizer for route in http_routes(stack)} - {None} == {"JwtAuthorizer"}


def test_no_function_event_opts_out_of_the_authorizer(source: dict[str, Any]):
    api = source["Resources"]["RunApi"]["Properties"]
    assert api["Auth"]["DefaultAuthorizer"] == "JwtAuthorizer"
    for function_id, function in resources_of(source, "AWS::Serverless::Function").items():
        for event_id, event in function["Properties"].get("Events", {}).items():
            if event["Type"] != "HttpApi":
                continue
            authorizer = event["Properties"].get("Auth", {}).get("Authorizer", "JwtAuthorizer")
            assert authorizer == "JwtAuthorizer", f"{function_id}.{event_id}"
    # The one place a route may be opened: the docs routes' security in the API's DefinitionBody.
    body_routes = {(m.upper(), path) for path, item in api["DefinitionBody"]["paths"].items() for m in item}
    assert body_routes == DOCS_ROUTES


# --- CORS --------------------------------------------------------------------------------------------------


def test_cors_is_an_allow_list_of_exact_origins(source: dict[str, Any]):
    origins = "https://app.example.com,https://admin.example.com"
    (api,) = resources_of(translate(source, {"CorsAllowedOrigins": origins}), "AWS::ApiGatewayV2::Api").values()
    configurations = [c for c in alternatives(api["Properties"]["Body"]["x-amazon-apigateway-cors"]) if "Ref" not in c]
    assert configurations
    for cors in configurations:
        assert cors["allowOrigins"] == {"Fn::Split": [",", origins]}
        assert not cors.get("allowCredentials")
        assert "*" not in cors["allowHeaders"]
        assert "*" not in cors["allowMethods"]
    pattern = source["Parameters"]["CorsAllowedOrigins"]["AllowedPattern"]
    for refused in ("*", "https://*.example.com", "", "https://a.example.com,*", "null", "https://a.example.com, *"):
        assert not re.fullmatch(pattern, refused), refused
    for accepted in ("https://app.example.com", "https://a.example.com,http://localhost:5173"):
        assert re.fullmatch(pattern, accepted), accepted


@pytest.mark.parametrize("origins", ["http://localhost:5173", "https://app.example.com,https://admin.example.com"])
def test_the_local_front_reads_the_cors_configuration_the_api_deploys(source: dict[str, Any], origins: str):
    parameters = {"CorsAllowedOrigins": origins}
    translated = translate(source, parameters)
    (api,) = resources_of(translated, "AWS::ApiGatewayV2::Api").values()
    deployed = StackResources.with_defaults(translated, "test", parameters).resolve(
        api["Properties"]["Body"]["x-amazon-apigateway-cors"]
    )

    local = cors_policy(StackResources.with_defaults(source, "test", parameters))

    assert local == CorsPolicy(
        allow_origins=tuple(deployed["allowOrigins"]),
        allow_methods=tuple(deployed["allowMethods"]),
        allow_headers=tuple(deployed["allowHeaders"]),
        expose_headers=tuple(deployed["exposeHeaders"]),
        max_age=deployed["maxAge"],
        allow_credentials=deployed.get("allowCredentials", False),
    )
    assert local.allow_origins == tuple(origins.split(","))
    # What a page needs: its bearer token, JSON bodies and an Idempotency-Key; to read Location and Retry-After.
    assert {"authorization", "content-type", "idempotency-key"} <= {h.lower() for h in local.allow_headers}
    assert {"location", "retry-after"} <= {h.lower() for h in local.expose_headers}


@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_the_app_client_signs_browsers_in_with_srp_and_never_takes_a_plain_password(
    source: dict[str, Any], environment: str
):
    stack = StackResources.with_defaults(source, "test", {"Environment": environment})
    flows = set(stack.resolve(source["Resources"]["UserPoolClient"]["Properties"]["ExplicitAuthFlows"]))
    # ADMIN_USER_PASSWORD_AUTH needs AWS credentials (AdminInitiateAuth): a test user's token from the CLI, not prod.
    admin = {"ALLOW_ADMIN_USER_PASSWORD_AUTH"} if environment == "dev" else set()
    assert flows == {"ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"} | admin


# --- IAM ---------------------------------------------------------------------------------------------------


def test_every_function_runs_with_a_role_of_the_template(translated: dict[str, Any]):
    for name, function in resources_of(translated, "AWS::Lambda::Function").items():
        role = function["Properties"]["Role"]
        assert role == {"Fn::GetAtt": [role["Fn::GetAtt"][0], "Arn"]}, name
        assert role["Fn::GetAtt"][0] in translated["Resources"], name


# The one wildcard: a schedule per scheduled run is named at run time (run-<id>), so the functions may create and
# delete any schedule of the stack's own group (hilos_runner.scheduling), and no other.
NAMED_AT_RUN_TIME = (":schedule/${RunSchedules}/*", ":schedule/${RunSchedules}/")


def test_no_permission_on_every_resource_where_the_resource_has_a_name(translated: dict[str, Any]):
    for name, role in resources_of(translated, "AWS::IAM::Role").items():
        # SAM's AWSLambdaBasicExecutionRole would allow logs on "*"; X-Ray has no resource-level permissions.
        assert role["Properties"].get("ManagedPolicyArns", []) in ([], [XRAY_POLICY]), name
    for where, statement in inline_statements(translated):
        for resource in as_list(statement["Resource"]):
            for value in alternatives(resource):
                assert value != "*", f"{where}: {value}"
                assert "*" not in str(value).replace(":*", "").replace(*NAMED_AT_RUN_TIME), f"{where}: {value}"


def test_each_function_writes_logs_to_its_own_group_only(translated: dict[str, Any]):
    for name, function in resources_of(translated, "AWS::Lambda::Function").items():
        group = function["Properties"]["LoggingConfig"]["LogGroup"]
        (group_id,) = references(group)
        role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
        logs = [
            statement
            for where, statement in inline_statements(translated)
            if where.startswith(f"{role_id}/") and any(a.startswith("logs:") for a in as_list(statement["Action"]))
        ]
        assert logs, name
        for statement in logs:
            assert as_list(statement["Resource"]) == [{"Fn::GetAtt": [group_id, "Arn"]}], name
            assert set(as_list(statement["Action"])) <= {"logs:CreateLogStream", "logs:PutLogEvents"}, name


# --- checkov: skips only with a reason, in place ---------------------------------------------------------------


def test_every_checkov_skip_is_justified_in_place(source: dict[str, Any]):
    skips = [
        (name, skip)
        for name, resource in source["Resources"].items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips
    for name, skip in skips:
        assert re.fullmatch(r"CKV_AWS_\d+", skip["id"]), (name, skip)
        assert len(skip.get("comment", "").split()) >= 12, f"{name}: {skip['id']} needs a reason"
    # Nothing is skipped that the template can simply satisfy.
    fixable = {"CKV_AWS_28", "CKV_AWS_45", "CKV_AWS_59", "CKV_AWS_76", "CKV_AWS_111", "CKV_AWS_108"}
    assert not {skip["id"] for _, skip in skips} & fixable


# --- request limits: a clear 413 / 422, Hilos never called ---------------------------------------------------


@pytest.mark.usefixtures("aws")
class TestRequestLimits:
    def test_a_body_over_the_limit_is_413(self, hilos: FakeHilos):
        from hilos_runner.settings import get_settings

        limit = get_settings().max_body_bytes
        answer = call_run_api("POST", f"/flows/{FLOW_ID}/runs", {"contact_list": [contact(first_name="x" * limit)]})

        assert answer.status == 413
        assert answer.body == {
            "code": "body_too_large",
            "message": f"the body exceeds {limit} bytes",
            "details": [{"field": "body", "reason": "too large"}],
        }
        assert len(hilos.calls) == 0

    def test_a_bulk_body_over_its_limit_is_413(self, hilos: FakeHilos):
        from hilos_runner.settings import get_settings

        limit = get_settings().bulk_max_body_bytes
        body = "phone\n" + "+5215512345678\n" * (limit // 15 + 1)
        answer = call_run_api("POST", f"/flows/{FLOW_ID}/bulk-runs", body, headers={"content-type": "text/csv"})

        assert answer.status == 413
        assert answer.body["code"] == "body_too_large"

    def test_more_contacts_than_one_run_takes_is_422_naming_the_list(self, hilos: FakeHilos):
        answer = call_run_api("POST", f"/flows/{FLOW_ID}/runs", run_body(MAX_CONTACTS_PER_RUN + 1))

        assert answer.status == 422
        assert answer.body["code"] == "validation_error"
        assert [d["field"] for d in answer.body["details"]] == ["body.contact_list"]
        assert str(MAX_CONTACTS_PER_RUN) in answer.body["details"][0]["reason"]
        assert len(hilos.calls) == 0

    def test_a_meta_over_its_limit_is_422_naming_the_contact_and_field(self, hilos: FakeHilos):
        big_meta = {"notes": "x" * MAX_META_BYTES}
        answer = call_run_api("POST", f"/flows/{FLOW_ID}/runs", {"contact_list": [contact(), contact(meta=big_meta)]})

        assert answer.status == 422
        assert [d["field"] for d in answer.body["details"]] == ["body.contact_list.1.meta"]
        assert f"{MAX_META_BYTES} bytes" in answer.body["details"][0]["reason"]
        assert len(hilos.calls) == 0

    def test_a_bulk_list_over_the_contact_limit_is_refused_naming_the_list(
        self, hilos: FakeHilos, monkeypatch: pytest.MonkeyPatch
    ):
        from hilos_runner import factories

        monkeypatch.setenv("BULK_MAX_CONTACTS", "3")
        factories.reset()
        answer = call_run_api("POST", f"/flows/{FLOW_ID}/bulk-runs", run_body(4))

        assert answer.status in (413, 422)
        assert answer.body["details"][0]["field"].endswith("contact_list")
        assert "at most 3 contacts" in answer.body["details"][0]["reason"]

    @pytest.mark.parametrize("path", [f"/flows/{FLOW_ID}/runs", f"/flows/{FLOW_ID}/bulk-runs"])
    def test_a_body_that_is_not_utf8_is_422_not_500(self, hilos: FakeHilos, path: str):
        # Found by the schemathesis run (tests/fuzz/test_api.py): API Gateway base64-encodes such a body.
        import base64

        import run_api
        from local.events import LocalLambdaContext, http_api_event

        event = http_api_event("POST", path, headers={"content-type": "application/json"})
        event.update(body=base64.b64encode(b"\x80\xff").decode(), isBase64Encoded=True)
        answer = run_api.lambda_handler(event, LocalLambdaContext(function_name="run-api"))

        assert answer["statusCode"] == 422
        assert json.loads(answer["body"]) == {
            "code": "validation_error",
            "message": "the request is not valid",
            "details": [{"field": "body", "reason": "not UTF-8 text"}],
        }
        assert len(hilos.calls) == 0
