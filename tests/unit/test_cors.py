"""local.cors: what API Gateway's CORS adds, for an allowed origin and for any other."""

from local.cors import CorsPolicy, without_cors_headers

POLICY = CorsPolicy(
    allow_origins=("http://localhost:5173", "https://app.example.com"),
    allow_methods=("GET", "POST", "OPTIONS"),
    allow_headers=("authorization", "content-type", "idempotency-key"),
    expose_headers=("location", "retry-after"),
    max_age=600,
)


def test_a_preflight_needs_options_an_origin_and_a_requested_method():
    assert POLICY.is_preflight("OPTIONS", ["Origin", "Access-Control-Request-Method"])
    assert POLICY.is_preflight("options", ["origin", "access-control-request-method", "access-control-request-headers"])
    assert not POLICY.is_preflight("OPTIONS", ["Origin"])  # a plain OPTIONS goes to the routes
    assert not POLICY.is_preflight("POST", ["Origin", "Access-Control-Request-Method"])


def test_an_allowed_origin_gets_the_configuration_and_no_other_origin_gets_anything():
    assert POLICY.preflight_headers("https://app.example.com") == {
        "Access-Control-Allow-Origin": "https://app.example.com",
        "Access-Control-Allow-Methods": "GET,POST,OPTIONS",
        "Access-Control-Allow-Headers": "authorization,content-type,idempotency-key",
        "Access-Control-Max-Age": "600",
    }
    assert POLICY.response_headers("http://localhost:5173") == {
        "Access-Control-Allow-Origin": "http://localhost:5173",
        "Access-Control-Expose-Headers": "location,retry-after",
    }
    for origin in ("http://evil.example", "http://localhost:5174", "https://app.example.com.evil", "null", "", None):
        assert POLICY.preflight_headers(origin) == {}
        assert POLICY.response_headers(origin) == {}


def test_the_functions_own_cors_headers_are_dropped():
    headers = {"Content-Type": "application/json", "access-control-allow-origin": "*", "Location": "/runs/1"}
    assert without_cors_headers(headers) == {"Content-Type": "application/json", "Location": "/runs/1"}
