"""template.yaml: cfn-lint clean, and what SAM turns it into (translated offline with samtranslator).

Assertions run over every function, role, table and route, so that resources added later are held to
the same rules: authenticated routes, least-privilege inline policies, arm64 + current Python,
recoverable encrypted tables, and samconfig.toml environments that match the template's parameters.
"""

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest

from hilos_runner.execution_store import FLOW_INDEX_NAME
from local.template import TEMPLATE_PATH, StackResources, load_template
from tests.template.sam_template import (
    ROOT,
    SAMCONFIG_PATH,
    alternatives,
    as_list,
    inline_statements,
    references,
    resources_of,
    translate,
)

# --- cfn-lint --------------------------------------------------------------------------------------


def test_cfn_lint_reports_nothing():
    from cfnlint.api import lint_file

    assert [str(match) for match in lint_file(TEMPLATE_PATH)] == []


# --- the API: every route authenticated, throttled -------------------------------------------------


def http_api_bodies(translated: dict[str, Any]) -> dict[str, dict[str, Any]]:
    apis = resources_of(translated, "AWS::ApiGatewayV2::Api")
    assert apis, "no HTTP API"
    return {name: api["Properties"]["Body"] for name, api in apis.items()}


def test_every_route_requires_the_jwt_authorizer_when_the_docs_do_too(source: dict[str, Any]):
    # By default /openapi.json and /swagger are open (test_access.py); with ApiDocsRequireAuth=true nothing is.
    parameters = {"ApiDocsRequireAuth": "true"}
    translated = translate(source, parameters)
    deployed = StackResources.with_defaults(translated, "test", parameters)  # resolves Fn::If as deployed
    for api_name, body in http_api_bodies(translated).items():
        schemes = body["components"]["securitySchemes"]
        operations = [(path, method, op) for path, ops in body["paths"].items() for method, op in ops.items()]
        assert len(operations) >= 3, api_name
        for path, method, operation in operations:
            security = deployed.resolve(operation.get("security"))
            assert security, f"{method.upper()} {path} is not authenticated"
            for requirement in security:
                assert requirement, f"{method.upper()} {path} has an empty security requirement"
                for scheme_name in requirement:
                    authorizer = schemes[scheme_name]["x-amazon-apigateway-authorizer"]
                    assert authorizer["type"] == "jwt", f"{method.upper()} {path}"
                    assert authorizer["identitySource"] == "$request.header.Authorization"


def test_the_jwt_authorizer_trusts_the_stack_user_pool_or_the_configured_issuer(translated: dict[str, Any]):
    (body,) = http_api_bodies(translated).values()
    (scheme,) = body["components"]["securitySchemes"].values()
    jwt = scheme["x-amazon-apigateway-authorizer"]["jwtConfiguration"]

    assert [references(issuer) for issuer in alternatives(jwt["issuer"])] == [{"UserPool"}, {"JwtIssuer"}]
    assert [references(audience) for audience in alternatives(jwt["audience"])] == [{"UserPoolClient"}, {"JwtAudience"}]
    (user_pool_issuer, _) = alternatives(jwt["issuer"])
    assert user_pool_issuer["Fn::Sub"].startswith("https://cognito-idp.${AWS::Region}.amazonaws.com/")


def test_stage_throttling_comes_from_parameters(translated: dict[str, Any]):
    stages = resources_of(translated, "AWS::ApiGatewayV2::Stage")
    assert stages
    for name, stage in stages.items():
        limits = stage["Properties"]["DefaultRouteSettings"]
        for key in ("ThrottlingRateLimit", "ThrottlingBurstLimit"):
            assert set(limits[key]) == {"Ref"}, f"{name}.{key}"
            assert limits[key]["Ref"] in translated["Parameters"], f"{name}.{key}"


# --- IAM: least privilege ----------------------------------------------------------------------------


def test_inline_policies_name_explicit_actions_on_named_resources(translated: dict[str, Any]):
    named = set(translated["Resources"]) | set(translated.get("Parameters", {}))
    statements = list(inline_statements(translated))
    assert statements
    for where, statement in statements:
        if statement["Effect"] != "Allow":
            continue
        assert not {"NotAction", "NotResource"} & set(statement), where
        for action in as_list(statement["Action"]):
            assert re.fullmatch(r"[a-z0-9-]+:[A-Za-z0-9]+", str(action)), f"{where}: {action}"
        for resource in as_list(statement["Resource"]):
            for value in alternatives(resource):
                assert isinstance(value, dict), f"{where}: {value}"  # never "*" nor a hand-written ARN
                refs = references(value)
                assert refs, f"{where}: {value} names nothing"
                assert refs <= named, f"{where}: {value} does not name a resource of the stack"


def test_only_the_token_secret_may_be_read(translated: dict[str, Any]):
    token_secret = translated["Outputs"]["TokenSecretArn"]["Value"]
    readers = [
        (where, statement)
        for where, statement in inline_statements(translated)
        if any(action.startswith("secretsmanager:") for action in as_list(statement["Action"]))
    ]
    assert readers
    for where, statement in readers:
        assert as_list(statement["Action"]) == ["secretsmanager:GetSecretValue"], where
        assert as_list(statement["Resource"]) == [token_secret], where


# --- functions and layer -----------------------------------------------------------------------------


def test_functions_are_arm64_on_a_current_python_with_the_shared_layer(translated: dict[str, Any]):
    functions = resources_of(translated, "AWS::Lambda::Function")
    layers = resources_of(translated, "AWS::Lambda::LayerVersion")
    assert functions
    assert len(layers) == 1
    (layer_id,) = layers
    for name, function in functions.items():
        properties = function["Properties"]
        assert properties["Architectures"] == ["arm64"], name
        runtime = re.fullmatch(r"python3\.(\d+)", properties["Runtime"])
        assert runtime, f"{name}: {properties['Runtime']}"
        assert int(runtime.group(1)) >= 12, f"{name}: {properties['Runtime']}"
        assert {"Ref": layer_id} in properties["Layers"], name
        assert properties["Runtime"] in layers[layer_id]["Properties"]["CompatibleRuntimes"], name
        assert properties["TracingConfig"] == {"Mode": "Active"}, name


def test_the_layer_is_built_by_its_makefile_for_the_functions_runtime_and_architecture(source: dict[str, Any]):
    (layer_id,) = resources_of(source, "AWS::Serverless::LayerVersion")
    layer = source["Resources"][layer_id]
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    assert layer["Metadata"]["BuildArchitecture"] == "arm64"
    assert layer["Properties"]["CompatibleRuntimes"] == [source["Globals"]["Function"]["Runtime"]]
    makefile = (ROOT / layer["Properties"]["ContentUri"] / "Makefile").read_text()
    # SAM runs `make build-<LogicalId>`; the platform and Python it installs for are Lambda's arm64 and 3.13.
    assert re.search(rf"^build-{layer_id}:", makefile, re.MULTILINE)
    assert "PLATFORM ?= manylinux2014_aarch64" in makefile
    assert "--python-version 3.13" in makefile
    assert "--require-hashes" in makefile


# --- tables ------------------------------------------------------------------------------------------


def test_tables_are_recoverable_encrypted_and_expire_records(translated: dict[str, Any]):
    tables = resources_of(translated, "AWS::DynamoDB::Table")
    assert {"ExecutionsTable", "IdempotencyTable"} <= set(tables)
    for name, table in tables.items():
        properties = table["Properties"]
        assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}, name
        assert properties["SSESpecification"]["SSEEnabled"] is True, name
        assert properties["TimeToLiveSpecification"]["Enabled"] is True, name
        assert properties["BillingMode"] == "PAY_PER_REQUEST", name
        assert table.get("DeletionPolicy") == "Retain", name


def test_the_executions_table_lists_runs_of_a_flow_newest_first(translated: dict[str, Any]):
    properties = translated["Resources"]["ExecutionsTable"]["Properties"]
    (index,) = (i for i in properties["GlobalSecondaryIndexes"] if i["IndexName"] == FLOW_INDEX_NAME)

    assert index["KeySchema"] == [
        {"AttributeName": "listed_flow_id", "KeyType": "HASH"},
        {"AttributeName": "created_at", "KeyType": "RANGE"},
    ]
    assert properties["KeySchema"] == [{"AttributeName": "run_id", "KeyType": "HASH"}]
    assert properties["TimeToLiveSpecification"]["AttributeName"] == "expires_at"


ORIGINS = "https://app.example.com,https://admin.example.com"


def test_cors_allows_only_the_configured_origins_and_keeps_headers_and_methods(source: dict[str, Any]):
    translated = translate(source, {"CorsAllowedOrigins": ORIGINS})
    (body,) = http_api_bodies(translated).values()
    configs = [c for c in alternatives(body["x-amazon-apigateway-cors"]) if c != {"Ref": "AWS::NoValue"}]

    assert configs
    for cors in configs:
        assert cors["allowOrigins"] == {"Fn::Split": [",", ORIGINS]}  # from the parameter, never "*"
        assert {"authorization", "content-type", "idempotency-key"} <= set(cors["allowHeaders"])
        assert {"GET", "POST"} <= set(cors["allowMethods"])
        assert {"location", "retry-after", "x-next-cursor"} <= set(cors["exposeHeaders"])  # CSV pages


# --- outputs and deploy config -----------------------------------------------------------------------


def test_outputs_tell_the_operator_where_things_are(translated: dict[str, Any]):
    assert {"ApiUrl", "ExecutionsTableName", "TokenSecretArn"} <= set(translated["Outputs"])


def parameter_overrides(deploy: dict[str, Any]) -> dict[str, str]:
    overrides = deploy["parameter_overrides"]
    pairs = shlex.split(overrides) if isinstance(overrides, str) else overrides
    return dict(pair.split("=", 1) for pair in pairs)


def allowed(parameter: dict[str, Any], value: str) -> bool:
    if "AllowedValues" in parameter:
        return value in [str(v) for v in parameter["AllowedValues"]]
    if "AllowedPattern" in parameter:
        return re.fullmatch(parameter["AllowedPattern"], value) is not None
    if parameter["Type"] == "Number":
        return float(value) >= float(parameter.get("MinValue", float("-inf")))
    return True


@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_samconfig_environment_deploys_with_valid_parameters(source: dict[str, Any], environment: str):
    config = tomllib.loads(SAMCONFIG_PATH.read_text())
    assert config["version"] == 0.1
    section = config[environment]
    deploy = section["deploy"]["parameters"]
    overrides = parameter_overrides(deploy)

    assert overrides["Environment"] == environment
    for name, value in overrides.items():
        assert name in source["Parameters"], f"{environment}: unknown parameter {name}"
        assert allowed(source["Parameters"][name], value), f"{environment}: {name}={value}"
    assert "*" not in overrides.get("CorsAllowedOrigins", "")
    assert "CAPABILITY_IAM" in as_list(deploy["capabilities"])
    assert deploy["resolve_s3"] is True
    assert deploy["s3_prefix"]
    assert section["global"]["parameters"]["stack_name"].endswith(environment)
    assert section["build"]["parameters"] == {"cached": True, "parallel": True}


def test_samconfig_prod_asks_before_changing_anything():
    config = tomllib.loads(SAMCONFIG_PATH.read_text())
    assert config["prod"]["deploy"]["parameters"]["confirm_changeset"] is True
    assert config["prod"]["global"]["parameters"]["stack_name"] != config["dev"]["global"]["parameters"]["stack_name"]


def test_samconfig_default_is_the_dev_environment():
    # SAM CLI environments do not inherit: the default section repeats dev and must not drift from it.
    config = tomllib.loads(SAMCONFIG_PATH.read_text())
    assert config["default"] == config["dev"]


def test_every_function_code_directory_exists_and_translation_left_the_source_alone(
    source: dict[str, Any], translated: dict[str, Any]
):
    assert source == load_template()  # the fixture shares the source template across tests
    codes = [f["Properties"]["Code"] for f in resources_of(translated, "AWS::Lambda::Function").values()]
    assert all(code["S3Bucket"] == "bucket" and Path(ROOT / code["S3Key"]).is_dir() for code in codes)
