"""What the linters cannot see, held by tests: Rules refusing parameters that deploy something broken, the
completion bus the stack creates, and the data that outlives a deleted or replaced stack."""

from typing import Any

import pytest

from local.stack import ConfigurationProblem, check_parameters
from local.template import StackResources
from tests.template.sam_template import as_list, inline_statements, resources_of

ISSUER = "https://issuer.example.com"


def stack(source: dict[str, Any], **parameters: str) -> StackResources:
    """The template's intrinsics resolved against parameter values (defaults otherwise), no AWS involved."""
    defaults = {name: str(spec.get("Default", "")) for name, spec in source["Parameters"].items()}
    return StackResources(source, "hilos-runner-test", {**defaults, **parameters})


# --- Rules: an external issuer needs its audiences ------------------------------------------------


@pytest.mark.parametrize(
    ("parameters", "refused"),
    [
        ({}, False),  # the stack's own user pool: its client is the audience
        ({"JwtIssuer": ISSUER, "JwtAudience": "client-a"}, False),
        ({"JwtIssuer": ISSUER, "JwtAudience": "client-a,client-b"}, False),
        ({"JwtIssuer": ISSUER}, True),  # would deploy an authorizer whose audience is [""]
        ({"JwtIssuer": ISSUER, "JwtAudience": ""}, True),
        ({"JwtIssuer": ISSUER, "JwtAudience": ","}, True),
    ],
)
def test_rules_refuse_a_jwt_issuer_without_an_audience(source: dict[str, Any], parameters: dict[str, str], refused):
    violations = stack(source, **parameters).rule_violations()
    assert bool(violations) is refused
    if refused:
        assert violations == [
            "JwtAudienceWithJwtIssuer: JwtAudience must name the client id(s) accepted from JwtIssuer."
        ]


def test_the_local_stack_refuses_the_same_parameters_cloudformation_would(source: dict[str, Any]):
    with pytest.raises(ConfigurationProblem, match="JwtAudience must name"):
        check_parameters(source, {"JwtIssuer": ISSUER})
    check_parameters(source, {"JwtIssuer": ISSUER, "JwtAudience": "client-a"})


def test_the_authorizer_takes_its_audience_from_the_parameter_the_rule_checks(source: dict[str, Any]):
    jwt = source["Resources"]["RunApi"]["Properties"]["Auth"]["Authorizers"]["JwtAuthorizer"]["JwtConfiguration"]
    assert jwt["audience"] == {"Fn::If": ["CreateUserPool", [{"Ref": "UserPoolClient"}], {"Ref": "JwtAudience"}]}
    assert source["Parameters"]["JwtAudience"]["Type"] == "CommaDelimitedList"


# --- the completion bus: the default bus, or one the stack creates --------------------------------


def test_the_default_bus_is_used_as_it_is_and_no_bus_is_created(source: dict[str, Any], translated: dict[str, Any]):
    (bus_id,) = resources_of(translated, "AWS::Events::EventBus")
    assert translated["Resources"][bus_id]["Condition"] == "CreateCompletionEventBus"
    default = stack(source)
    assert not default.condition("CreateCompletionEventBus")
    assert default.resolve(source["Globals"]["Function"]["Environment"]["Variables"]["COMPLETION_EVENT_BUS_NAME"]) == (
        "default"
    )


def test_another_bus_name_is_a_bus_the_stack_creates_and_the_functions_publish_to(source: dict[str, Any]):
    named = stack(source, CompletionEventBusName="runs-finished")
    assert named.condition("CreateCompletionEventBus")
    (bus_id,) = named.resources_of_type("AWS::Events::EventBus")
    assert named.resolve(source["Resources"][bus_id]["Properties"]["Name"]) == "runs-finished"
    # The functions name it through a Ref to the bus (its name), so CloudFormation creates it before them.
    variable = source["Globals"]["Function"]["Environment"]["Variables"]["COMPLETION_EVENT_BUS_NAME"]
    named.physical_ids[bus_id] = "runs-finished"
    assert named.resolve(variable) == "runs-finished"
    assert {"Ref": bus_id} in variable["Fn::If"]


# --- what survives deleting or replacing the stack ------------------------------------------------

KEPT = {
    "HilosTokenSecret": "AWS::SecretsManager::Secret",
    "ExecutionsTable": "AWS::DynamoDB::Table",
    "IdempotencyTable": "AWS::DynamoDB::Table",
    "UserPool": "AWS::Cognito::UserPool",
    "RunsQueue": "AWS::SQS::Queue",
    "RunsDeadLetterQueue": "AWS::SQS::Queue",
}


def test_the_token_records_users_and_queued_runs_are_retained(translated: dict[str, Any]):
    for kind in set(KEPT.values()):  # every resource of these kinds, so one added later is held to it too
        for logical_id in resources_of(translated, kind):
            assert logical_id in KEPT, f"{logical_id} ({kind}): decide whether it is retained"
    for logical_id, kind in KEPT.items():
        resource = translated["Resources"][logical_id]
        assert resource["Type"] == kind
        assert resource["DeletionPolicy"] == "Retain", logical_id
        assert resource["UpdateReplacePolicy"] == "Retain", logical_id


@pytest.mark.parametrize(("environment", "protection"), [("prod", "ACTIVE"), ("dev", "INACTIVE")])
def test_the_prod_user_pool_cannot_be_deleted_without_turning_protection_off(
    source: dict[str, Any], environment: str, protection: str
):
    pool = source["Resources"]["UserPool"]["Properties"]
    assert stack(source, Environment=environment).resolve(pool["DeletionProtection"]) == protection


# --- SnapStart: run_api behind an alias, snapshots only when asked for ----------------------------


@pytest.mark.parametrize(("value", "apply_on"), [("true", "PublishedVersions"), ("false", "None")])
def test_snapstart_applies_to_run_apis_published_versions_when_the_parameter_says_so(
    source: dict[str, Any], translated: dict[str, Any], value: str, apply_on: str
):
    assert source["Parameters"]["SnapStart"]["Default"] == "false"
    function = translated["Resources"]["RunApiFunction"]["Properties"]
    assert stack(source, SnapStart=value).resolve(function["SnapStart"]["ApplyOn"]) == apply_on
    others = resources_of(translated, "AWS::Lambda::Function")
    assert [name for name, other in others.items() if "SnapStart" in other["Properties"]] == ["RunApiFunction"]


def test_the_api_invokes_run_apis_alias_so_it_reaches_the_snapshotted_version(translated: dict[str, Any]):
    (alias_id,) = resources_of(translated, "AWS::Lambda::Alias")
    alias = translated["Resources"][alias_id]["Properties"]
    assert alias["Name"] == "live"
    assert alias["FunctionName"] == {"Ref": "RunApiFunction"}
    operations = [
        op for ops in translated["Resources"]["RunApi"]["Properties"]["Body"]["paths"].values() for op in ops.values()
    ]
    assert operations
    for operation in operations:
        uri = operation["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
        assert f"${{{alias_id}}}/invocations" in uri
    permissions = [
        permission["Properties"]
        for permission in resources_of(translated, "AWS::Lambda::Permission").values()
        if permission["Properties"]["Principal"] == "apigateway.amazonaws.com"
    ]
    assert len(permissions) == len(operations)
    assert all(permission["FunctionName"] == {"Ref": alias_id} for permission in permissions)


def test_the_status_sync_role_may_take_and_give_back_its_lease(translated: dict[str, Any]):
    # hilos_runner.lease: a conditional PutItem to take it, a conditional UpdateItem to give it back.
    granted = {
        action
        for where, statement in inline_statements(translated)
        if where.startswith("StatusSyncRole/")
        and {"Fn::GetAtt": ["ExecutionsTable", "Arn"]} in as_list(statement["Resource"])
        for action in as_list(statement["Action"])
    }
    assert {"dynamodb:PutItem", "dynamodb:UpdateItem"} <= granted
