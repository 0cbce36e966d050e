"""template.yaml's part for the status sync and the completion events, as written and as SAM translates it:
the sparse sync-pending index, the scheduled status_sync function (one at a time, never retried), its settings from
parameters, the completion bus parameter, and the least-privilege access of the roles that sync and publish."""

import ast
import json
import re
from typing import Any

import pytest

from hilos_runner.execution_store import SYNC_INDEX_NAME
from hilos_runner.settings import Settings
from local.stack_resources import create_stack_resources
from tests.template.sam_template import (
    ROOT,
    as_list,
    global_variable,
    inline_statements,
    references,
    resources_of,
    stack,
)

BUS_ARN = {
    "Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${CompletionEventBusName}"
}
TABLE_ARN = {"Fn::GetAtt": ["ExecutionsTable", "Arn"]}
TOKEN_SECRET = {"Fn::If": ["CreateTokenSecret", {"Ref": "HilosTokenSecret"}, {"Ref": "ExistingTokenSecretArn"}]}


def grants(translated: dict[str, Any], role: str) -> set[tuple[str, str]]:
    """(action, resource) pairs an inline policy of ``role`` allows; the resource as canonical JSON."""
    return {
        (action, json.dumps(resource, sort_keys=True))
        for where, statement in inline_statements(translated)
        if where.startswith(f"{role}/") and statement["Effect"] == "Allow"
        for action in as_list(statement["Action"])
        for resource in as_list(statement["Resource"])
    }


def on(resource: Any) -> str:
    return json.dumps(resource, sort_keys=True)


# --- the sparse sync-pending index ----------------------------------------------------------------------


def test_the_sync_pending_index_lists_runs_due_for_a_sync_oldest_due_first(translated: dict[str, Any]):
    properties = translated["Resources"]["ExecutionsTable"]["Properties"]
    (index,) = (i for i in properties["GlobalSecondaryIndexes"] if i["IndexName"] == SYNC_INDEX_NAME)

    assert SYNC_INDEX_NAME == "sync-pending"
    assert index["KeySchema"] == [
        {"AttributeName": "sync_pending", "KeyType": "HASH"},
        {"AttributeName": "next_sync_at", "KeyType": "RANGE"},
    ]
    assert index["Projection"] == {"ProjectionType": "ALL"}
    types = {d["AttributeName"]: d["AttributeType"] for d in properties["AttributeDefinitions"]}
    assert types["sync_pending"] == types["next_sync_at"] == "S"
    # The flow listing keeps its index; only run_id keys the table (a key attribute is never sparse).
    assert {i["IndexName"] for i in properties["GlobalSecondaryIndexes"]} == {"by-flow", SYNC_INDEX_NAME}
    assert properties["KeySchema"] == [{"AttributeName": "run_id", "KeyType": "HASH"}]


def test_the_local_stack_creates_the_sync_pending_index_from_the_template():
    from moto import mock_aws

    with mock_aws():
        import boto3

        session = boto3.Session(region_name="us-east-1")
        resources = create_stack_resources(session, hilos_token="not-a-real-token")
        table = session.client("dynamodb").describe_table(TableName=resources.physical_ids["ExecutionsTable"])["Table"]
    (index,) = (i for i in table["GlobalSecondaryIndexes"] if i["IndexName"] == SYNC_INDEX_NAME)
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["sync_pending", "next_sync_at"]


# --- status_sync: scheduled, one at a time, no retries ------------------------------------------------


def test_status_sync_runs_on_the_schedule_of_its_parameter(translated: dict[str, Any]):
    (rule,) = resources_of(translated, "AWS::Events::Rule").values()
    assert rule["Properties"]["ScheduleExpression"] == {"Ref": "StatusSyncSchedule"}
    assert [t["Arn"] for t in rule["Properties"]["Targets"]] == [{"Fn::GetAtt": ["StatusSyncFunction", "Arn"]}]
    assert "State" not in rule["Properties"] or rule["Properties"]["State"] == "ENABLED"
    invokers = [
        p["Properties"]
        for p in resources_of(translated, "AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] == {"Ref": "StatusSyncFunction"}
    ]
    assert [(p["Principal"], references(p["SourceArn"])) for p in invokers] == [
        ("events.amazonaws.com", {next(iter(resources_of(translated, "AWS::Events::Rule")))})
    ]


def test_the_schedule_parameter_takes_rate_and_cron_expressions_only(source: dict[str, Any]):
    parameter = source["Parameters"]["StatusSyncSchedule"]
    assert parameter["Default"] == "rate(2 minutes)"
    pattern = parameter["AllowedPattern"]
    accepted = ["rate(2 minutes)", "rate(1 minute)", "rate(1 hour)", "rate(1 day)", "rate(120 minutes)"]
    for accepted_expression in [*accepted, "cron(0/5 * * * ? *)"]:
        assert re.fullmatch(pattern, accepted_expression), accepted_expression
    refused = ["", "2 minutes", "rate(0 minutes)", "rate(2 fortnights)", "every 2 minutes", "rate(2 minutes) "]
    # EventBridge refuses a plural with 1 and a singular with more.
    refused += ["rate(1 minutes)", "rate(2 minute)", "rate(01 minute)"]
    for refused_expression in refused:
        assert not re.fullmatch(pattern, refused_expression), refused_expression


def test_status_sync_is_never_retried_and_reserves_no_concurrency(translated: dict[str, Any]):
    function = translated["Resources"]["StatusSyncFunction"]["Properties"]
    assert function["Handler"] == "status_sync.lambda_handler"
    assert function["Timeout"] == 120
    # Room for at least one Hilos status read at its worst (connect retries + read timeout + margin).
    assert function["Timeout"] > Settings().hilos_call_budget_seconds
    # One pass at a time is the lease's job (tests/integration/test_status_sync_lease.py): reserved
    # concurrency fails the deploy in accounts with a low concurrency quota.
    for name, other in resources_of(translated, "AWS::Lambda::Function").items():
        assert "ReservedConcurrentExecutions" not in other["Properties"], name
    assert function["Role"] == {"Fn::GetAtt": ["StatusSyncRole", "Arn"]}
    assert function["LoggingConfig"]["LogGroup"] == {"Ref": "StatusSyncFunctionLogs"}
    logs = translated["Resources"]["StatusSyncFunctionLogs"]["Properties"]
    assert logs["RetentionInDays"] == {"Ref": "LogRetentionDays"}

    (invoke_config,) = resources_of(translated, "AWS::Lambda::EventInvokeConfig").values()
    config = invoke_config["Properties"]
    assert config["FunctionName"] == {"Ref": "StatusSyncFunction"}
    assert config["MaximumRetryAttempts"] == 0
    # A failed or throttled tick is dropped soon, not queued for hours behind the next ones.
    assert config["MaximumEventAgeInSeconds"] <= 300
    assert not config.get("DestinationConfig")


def test_every_function_handler_is_a_function_of_its_code_directory(source: dict[str, Any]):
    for name, function in resources_of(source, "AWS::Serverless::Function").items():
        properties = function["Properties"]
        module, handler = properties["Handler"].rsplit(".", 1)
        path = ROOT / properties["CodeUri"] / f"{module}.py"
        assert path.is_file(), f"{name}: {path}"
        tree = ast.parse(path.read_text())
        defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)} | {
            target.id
            for node in tree.body
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        assert handler in defined, f"{name}: {properties['Handler']}"


def test_status_sync_settings_come_from_parameters_within_the_settings_bounds(source: dict[str, Any]):
    variables = source["Resources"]["StatusSyncFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["STATUS_SYNC_BATCH_LIMIT"] == {"Ref": "StatusSyncBatchLimit"}
    # run_api (refresh on demand) and status_sync both publish completion events.
    assert global_variable(source, "COMPLETION_EVENT_BUS_NAME") == {
        "Fn::If": ["CreateCompletionEventBus", {"Ref": "CompletionEventBus"}, "default"]
    }

    limit = source["Parameters"]["StatusSyncBatchLimit"]
    bounds = {m.__class__.__name__: m for m in Settings.model_fields["status_sync_batch_limit"].metadata}
    assert bounds["Ge"].ge <= limit["MinValue"] <= limit["Default"] <= limit["MaxValue"] <= bounds["Le"].le
    assert limit["Default"] == Settings().status_sync_batch_limit
    assert source["Parameters"]["CompletionEventBusName"]["Default"] == Settings().completion_event_bus_name


@pytest.mark.parametrize("function", ["StatusSyncFunction", "RunApiFunction"])
def test_the_functions_that_publish_read_the_bus_and_batch_limit_from_their_environment(function: str):
    from moto import mock_aws

    with mock_aws():
        import boto3

        resources = create_stack_resources(
            boto3.Session(region_name="us-east-1"),
            hilos_token="not-a-real-token",
            parameters={"CompletionEventBusName": "runs-finished", "StatusSyncBatchLimit": "50"},
        )
        environment = resources.function_environment(function)
    ours = {name: value for name, value in environment.items() if not name.startswith("POWERTOOLS_")}
    assert {name.lower() for name in ours} <= set(Settings.model_fields)
    settings = Settings.from_env(environment)
    assert settings.completion_event_bus_name == "runs-finished"
    assert settings.status_sync_batch_limit == (50 if function == "StatusSyncFunction" else 200)


@pytest.mark.parametrize(
    ("bus", "allowed"),
    [("default", True), ("hilos-runner.finished", True), ("aws.partner/x/y", True), ("", False), ("a b", False)],
)
def test_the_bus_parameter_takes_event_bus_names(source: dict[str, Any], bus: str, allowed: bool):
    pattern = source["Parameters"]["CompletionEventBusName"]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, bus)) is allowed


# --- access: exactly the new actions, on named resources ----------------------------------------------


def test_every_role_is_one_of_the_template_so_the_access_tests_see_it(translated: dict[str, Any]):
    # No role generated by SAM (the schedule and the invoke config add none): the generic access tests
    # in test_access.py / test_template.py iterate these roles, StatusSyncRole included.
    # RunSchedulerRole is EventBridge Scheduler's, for scheduled runs (tests/template/test_scheduling_template.py).
    assert set(resources_of(translated, "AWS::IAM::Role")) == {
        "RunApiFunctionRole",
        "BulkWorkerRole",
        "StatusSyncRole",
        "RunSchedulerRole",
    }
    roles = {
        f["Properties"]["Role"]["Fn::GetAtt"][0] for f in resources_of(translated, "AWS::Lambda::Function").values()
    }
    assert roles == {"RunApiFunctionRole", "BulkWorkerRole", "StatusSyncRole"}


def test_the_status_sync_role_grants_exactly_what_the_sync_uses(translated: dict[str, Any]):
    assert grants(translated, "StatusSyncRole") == {
        ("dynamodb:Query", on({"Fn::Sub": "${ExecutionsTable.Arn}/index/sync-pending"})),
        ("dynamodb:GetItem", on(TABLE_ARN)),
        ("dynamodb:PutItem", on(TABLE_ARN)),
        ("dynamodb:UpdateItem", on(TABLE_ARN)),  # the lease's release (hilos_runner.lease)
        ("secretsmanager:GetSecretValue", on(TOKEN_SECRET)),
        ("events:PutEvents", on(BUS_ARN)),
        ("logs:CreateLogStream", on({"Fn::GetAtt": ["StatusSyncFunctionLogs", "Arn"]})),
        ("logs:PutLogEvents", on({"Fn::GetAtt": ["StatusSyncFunctionLogs", "Arn"]})),
    }
    role = translated["Resources"]["StatusSyncRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert (trust["Principal"], trust["Action"]) == ({"Service": "lambda.amazonaws.com"}, "sts:AssumeRole")


def test_the_api_role_may_update_records_and_publish_completion_events(translated: dict[str, Any]):
    granted = grants(translated, "RunApiFunctionRole")
    # A refresh writes the record with a conditional PutItem; UpdateItem is granted on no table of records.
    assert ("dynamodb:PutItem", on(TABLE_ARN)) in granted
    assert ("dynamodb:UpdateItem", on(TABLE_ARN)) not in granted
    assert {(action, resource) for action, resource in granted if action.startswith("events:")} == {
        ("events:PutEvents", on(BUS_ARN))
    }
    # Refresh reads one run by its key: no new access to the sync index.
    assert ("dynamodb:Query", on({"Fn::Sub": "${ExecutionsTable.Arn}/index/sync-pending"})) not in granted


def test_only_the_completion_bus_may_receive_events_and_only_from_the_two_publishers(translated: dict[str, Any]):
    publishers = {
        where.split("/")[0]: statement
        for where, statement in inline_statements(translated)
        if any(action.startswith("events:") for action in as_list(statement["Action"]))
    }
    assert set(publishers) == {"RunApiFunctionRole", "StatusSyncRole"}
    for statement in publishers.values():
        assert as_list(statement["Action"]) == ["events:PutEvents"]
        assert as_list(statement["Resource"]) == [BUS_ARN]


@pytest.mark.parametrize("bus", ["default", "runs-finished"])
def test_the_bus_arn_names_the_configured_bus_of_this_account_and_region(source: dict[str, Any], bus: str):
    assert stack(source, CompletionEventBusName=bus).resolve(BUS_ARN) == (
        f"arn:aws:events:us-east-1:123456789012:event-bus/{bus}"
    )
