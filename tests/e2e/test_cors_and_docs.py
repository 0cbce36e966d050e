"""CORS and the API docs over real HTTP, as API Gateway answers them: preflights before routes and auth, the
template's CorsConfiguration (the stack's default CorsAllowedOrigins, http://localhost:5173), /openapi.json and
/swagger without a token (ApiDocsRequireAuth=false, the default)."""

import uuid

import pytest

from local.cors import CorsPolicy, cors_policy
from local.running_stack import RunningStack
from local.template import StackResources, load_template
from tests.helpers import run_body

pytestmark = pytest.mark.e2e

ALLOWED = "http://localhost:5173"
OTHER = "http://evil.example"
PAGE_HEADERS = "authorization,content-type,idempotency-key"


@pytest.fixture(scope="module")
def policy() -> CorsPolicy:
    """What template.yaml says, read apart from the stack (the front must answer exactly this)."""
    read = cors_policy(StackResources.with_defaults(load_template(), "e2e"))
    assert read is not None
    assert read.allow_origins[0] == ALLOWED
    return read


def preflight(stack: RunningStack, path: str, origin: str, method: str = "POST"):
    headers = {"Origin": origin, "Access-Control-Request-Method": method}
    headers["Access-Control-Request-Headers"] = PAGE_HEADERS
    return stack.api("OPTIONS", path, token=None, headers=headers)


def cors_headers(answer) -> dict[str, str]:
    return {name.lower(): value for name, value in answer.headers.items() if name.lower().startswith("access-control-")}


@pytest.mark.parametrize("path", ["/flows/{flow}/runs", "/flows/{flow}/bulk-runs", "/runs/{flow}", "/no/such/route"])
def test_a_preflight_from_an_allowed_origin_is_answered_by_the_front_without_auth(
    local_stack: RunningStack, policy: CorsPolicy, path: str
):
    flow = str(uuid.uuid4())
    answer = preflight(local_stack, path.format(flow=flow), ALLOWED)

    assert answer.status_code == 204
    assert answer.content == b""
    assert cors_headers(answer) == {
        "access-control-allow-origin": ALLOWED,
        "access-control-allow-methods": ",".join(policy.allow_methods),
        "access-control-allow-headers": ",".join(policy.allow_headers),
        "access-control-max-age": str(policy.max_age),
    }
    assert set(PAGE_HEADERS.split(",")) <= {h.lower() for h in policy.allow_headers}
    assert local_stack.calls_for(flow) == []


def test_a_preflight_from_another_origin_gets_no_cors_headers(local_stack: RunningStack):
    answer = preflight(local_stack, f"/flows/{uuid.uuid4()}/runs", OTHER)

    assert answer.status_code == 204
    assert cors_headers(answer) == {}


def test_an_answer_to_an_allowed_origin_carries_allow_origin_and_the_exposed_headers(
    local_stack: RunningStack, policy: CorsPolicy
):
    flow = str(uuid.uuid4())
    answer = local_stack.api("POST", f"/flows/{flow}/runs", json=run_body(), headers={"Origin": ALLOWED})

    assert answer.status_code == 201, answer.text
    assert cors_headers(answer) == {
        "access-control-allow-origin": ALLOWED,
        "access-control-expose-headers": ",".join(policy.expose_headers),
    }
    assert {"location", "retry-after"} <= {h.lower() for h in policy.expose_headers}
    assert "Location" in answer.headers


def test_the_gateways_own_answers_carry_it_too_and_other_origins_get_none(local_stack: RunningStack):
    refused = local_stack.api("GET", f"/runs/{uuid.uuid4()}", token=None, headers={"Origin": ALLOWED})
    other = local_stack.api("GET", f"/runs/{uuid.uuid4()}", headers={"Origin": OTHER})
    no_origin = local_stack.api("GET", f"/runs/{uuid.uuid4()}")

    assert refused.status_code == 401
    assert cors_headers(refused)["access-control-allow-origin"] == ALLOWED  # so a page can read the 401
    assert other.status_code == 404
    assert cors_headers(other) == {}
    assert cors_headers(no_origin) == {}


@pytest.mark.parametrize("path", ["/openapi.json", "/swagger"])
def test_the_api_docs_open_without_a_token_and_nothing_else_does(local_stack: RunningStack, path: str):
    answer = local_stack.api("GET", path, token=None)

    assert answer.status_code == 200
    assert local_stack.api("GET", f"/flows/{uuid.uuid4()}/runs", token=None).status_code == 401
    if path == "/openapi.json":
        assert answer.json()["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    else:
        assert answer.headers["Content-Type"].startswith("text/html")


def test_with_api_docs_require_auth_the_docs_need_the_token(tmp_path_factory: pytest.TempPathFactory):
    from tests.e2e.conftest import stack_of_tests

    with stack_of_tests(
        tmp_path_factory.mktemp("docs-auth"), "--sync-interval=3600", "--parameter-overrides", "ApiDocsRequireAuth=true"
    ) as stack:
        assert stack.api("GET", "/openapi.json", token=None).status_code == 401
        assert stack.api("GET", "/openapi.json").status_code == 200
