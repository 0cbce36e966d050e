"""template.yaml's operations part (issue 7), as written and as SAM translates it: the sparse
sync-pending index, the scheduled status_sync function and its least-privilege role, the completion
bus, the Hilos paths, the per-stack service name, the alarms and the operations dashboard.

Uses the translator and helpers of test_template.py (one way to translate the template)."""

import ast
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

# Imported here, before any test applies a function's environment: Powertools' Logger takes its name from
# POWERTOOLS_SERVICE_NAME when first built, and one first built inside a test (after the token guard of
# tests/conftest.py attached its handler to the root logger) adds a filter that hides its records from
# that handler for the rest of that test.
from hilos_runner import observability
from hilos_runner.errors import ConfigurationError
from hilos_runner.execution_store import SYNC_INDEX_NAME
from hilos_runner.settings import Settings
from local.stack_resources import create_stack_resources
from local.template import StackResources
from tests.template.test_template import (
    ROOT,
    SAMCONFIG_PATH,
    as_list,
    inline_statements,
    references,
    resources_of,
)

TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:hilos-runner-alarms"
BUS_ARN = {
    "Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${CompletionEventBusName}"
}
TABLE_ARN = {"Fn::GetAtt": ["ExecutionsTable", "Arn"]}
TOKEN_SECRET = {"Fn::If": ["CreateTokenSecret", {"Ref": "HilosTokenSecret"}, {"Ref": "ExistingTokenSecretArn"}]}

# The EMF metrics of the issue-7 contract (namespace HilosRunner, dimension service=the stack name).
CONTRACT_METRICS = {
    "RunsSubmitted",
    "RunsRejected",
    "RunsFailed",
    "RunsUnknown",
    "ContactsSubmitted",
    "RecordsRetried",
    "RecordsHeldBack",
    "MessagesRejected",
    "RecordUpdateFailures",
    "HilosLatency",
    "HilosStatusLatency",
    "HilosLookupLatency",
    "HilosLookupReads",
    "HilosContactReads",
    "RunsReconciledFound",
    "RunsResent",
    "RunsNotStarted",
    "RunsUnresolved",
    "RunsSynced",
    "RunsFinished",
    "CompletionEventsPublished",
    "CompletionEventFailures",
    "StatusSyncBacklog",
}


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


def global_variable(source: dict[str, Any], name: str) -> Any:
    return source["Globals"]["Function"]["Environment"]["Variables"][name]


def stack(source: dict[str, Any], stack_name: str = "hilos-runner-test", **parameters: str) -> StackResources:
    """The template's intrinsics resolved against parameter values (defaults otherwise), no AWS involved."""
    defaults = {name: str(spec.get("Default", "")) for name, spec in source["Parameters"].items()}
    return StackResources(source, stack_name, {**defaults, **parameters})


# The stacks samconfig.toml deploys (dev and prod), possibly into one account.
DEPLOYED_STACKS = [
    tomllib.loads(SAMCONFIG_PATH.read_text())[environment]["global"]["parameters"]["stack_name"]
    for environment in ("dev", "prod")
]
FUNCTIONS = ["RunApiFunction", "BulkWorkerFunction", "StatusSyncFunction"]


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


# --- the Hilos paths ------------------------------------------------------------------------------------------


def settings_accept(setting: str, value: str) -> bool:
    try:
        Settings.from_env({setting.upper(): value})
    except ConfigurationError:
        return False
    return True


@pytest.mark.parametrize(
    ("parameter", "setting", "placeholder"),
    [("HilosRunPath", "hilos_run_path", "flow_id"), ("HilosExecutionPath", "hilos_execution_path", "execution_id")],
)
def test_a_hilos_path_parameter_defaults_to_the_setting_and_takes_exactly_the_paths_it_accepts(
    source: dict[str, Any], parameter: str, setting: str, placeholder: str
):
    # CloudFormation refuses at deploy time what the functions would refuse at their first call.
    spec = source["Parameters"][parameter]
    assert spec["Default"] == Settings.model_fields[setting].default
    slot = "{" + placeholder + "}"
    paths = [spec["Default"], f"/{slot}", f"/channel/whatsapp/x/{slot}/y", f"/a{slot}b"]
    paths += ["", "/", "/a/b", slot, f"a/{slot}", f"/{slot}/{slot}", f"/{slot}/{{other}}", f"/{{{slot}}}"]
    paths += ["/{flow_id}/{execution_id}", f"/{slot}}}"]
    verdicts = {path: re.fullmatch(spec["AllowedPattern"], path) is not None for path in paths}
    assert verdicts == {path: settings_accept(setting, path) for path in paths}
    assert [path for path, accepted in verdicts.items() if accepted] == paths[:4]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_function_reads_the_hilos_paths_of_the_parameters_as_valid_settings(
    source: dict[str, Any], function: str
):
    from moto import mock_aws

    with mock_aws():
        import boto3

        resources = create_stack_resources(
            boto3.Session(region_name="us-east-1"),
            hilos_token="not-a-real-token",
            parameters={
                "HilosRunPath": "/channel/whatsapp/flow/{flow_id}/run",
                "HilosExecutionPath": "/channel/whatsapp/flow-execution/{execution_id}",
            },
            template=source,
        )
        environment = resources.function_environment(function)
    ours = {name: value for name, value in environment.items() if not name.startswith("POWERTOOLS_")}
    assert {name.lower() for name in ours} <= set(Settings.model_fields)
    settings = Settings.from_env(environment)
    assert settings.run_url("f-1") == "https://api.hilos.io/api/channel/whatsapp/flow/f-1/run"
    assert settings.execution_url("e-1") == "https://api.hilos.io/api/channel/whatsapp/flow-execution/e-1"


# --- the service name: one per stack ----------------------------------------------------------------------------


def test_every_stack_gives_its_functions_its_own_name_as_service_and_alarms_on_that_service(
    source: dict[str, Any],
):
    # dev and prod created side by side in one (moto) account: their metrics must not share a series.
    from moto import mock_aws

    emf_alarms = ["RunsUnresolvedAlarm", "CompletionEventFailuresAlarm"]
    services: dict[str, str] = {}
    with mock_aws():
        import boto3

        for stack_name in DEPLOYED_STACKS:
            resources = create_stack_resources(
                boto3.Session(region_name="us-east-1"),
                hilos_token="not-a-real-token",
                stack_name=stack_name,
                template=source,
            )
            (service,) = {resources.function_environment(function)["POWERTOOLS_SERVICE_NAME"] for function in FUNCTIONS}
            for alarm in emf_alarms:
                dimensions = resources.resolve(source["Resources"][alarm]["Properties"]["Dimensions"])
                assert dimensions == [{"Name": "service", "Value": service}], (stack_name, alarm)
            services[stack_name] = service
    assert services == {stack_name: stack_name for stack_name in DEPLOYED_STACKS}
    assert len(set(services.values())) == 2


def test_the_token_guard_hears_the_functions_logger_once_the_stack_environment_is_applied(
    aws: StackResources, logs_never_show_the_token: Any
):
    # The `aws` fixture gave this process RunApiFunction's environment from the template.
    assert os.environ["POWERTOOLS_SERVICE_NAME"] == aws.stack_name
    observability.logger.info("guard probe 5c1f")
    assert "guard probe 5c1f" in logs_never_show_the_token.getvalue()


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


# --- alarms -----------------------------------------------------------------------------------------------


def alarm_actions(source: dict[str, Any], alarm: str, topic: str) -> dict[str, Any]:
    """AlarmActions and OKActions as deployed with AlarmTopicArn=topic (None: the property is left out)."""
    resolved = stack(source, AlarmTopicArn=topic)
    properties = source["Resources"][alarm]["Properties"]
    actions = {}
    for key in ("AlarmActions", "OKActions"):
        condition, when_true, when_false = properties[key]["Fn::If"]
        branch = when_true if resolved.condition(condition) else when_false
        actions[key] = None if branch == {"Ref": "AWS::NoValue"} else resolved.resolve(branch)
    return actions


def test_every_alarm_notifies_the_topic_when_one_is_given_and_nobody_otherwise(source: dict[str, Any]):
    alarms = resources_of(source, "AWS::CloudWatch::Alarm")
    assert set(alarms) == {
        "RunsDeadLetterQueueAlarm",
        "BulkWorkerErrorsAlarm",
        "RunApi5xxRateAlarm",
        "RunsUnresolvedAlarm",
        "StatusSyncErrorsAlarm",
        "CompletionEventFailuresAlarm",
    }
    for name in alarms:
        assert alarm_actions(source, name, TOPIC_ARN) == {"AlarmActions": [TOPIC_ARN], "OKActions": [TOPIC_ARN]}, name
        assert alarm_actions(source, name, "") == {"AlarmActions": None, "OKActions": None}, name
        assert alarms[name]["Properties"]["TreatMissingData"] == "notBreaching", name
        assert alarms[name]["Properties"]["AlarmDescription"], name


@pytest.mark.parametrize(
    ("alarm", "metric"),
    [("RunsUnresolvedAlarm", "RunsUnresolved"), ("CompletionEventFailuresAlarm", "CompletionEventFailures")],
)
def test_the_emf_alarms_fire_on_the_first_occurrence_of_the_functions_own_metric(
    source: dict[str, Any], alarm: str, metric: str
):
    properties = source["Resources"][alarm]["Properties"]
    # Namespace and dimension are the ones Powertools gives the functions' metrics (Globals).
    assert properties["Namespace"] == global_variable(source, "POWERTOOLS_METRICS_NAMESPACE") == "HilosRunner"
    assert properties["MetricName"] == metric
    assert properties["Dimensions"] == [
        {"Name": "service", "Value": global_variable(source, "POWERTOOLS_SERVICE_NAME")}
    ]
    assert global_variable(source, "POWERTOOLS_SERVICE_NAME") == {"Ref": "AWS::StackName"}
    assert (properties["Statistic"], properties["EvaluationPeriods"]) == ("Sum", 1)
    assert (properties["ComparisonOperator"], properties["Threshold"]) == ("GreaterThanThreshold", 0)


def test_the_status_sync_errors_alarm_fires_on_the_first_failed_invocation(translated: dict[str, Any]):
    properties = translated["Resources"]["StatusSyncErrorsAlarm"]["Properties"]
    assert (properties["Namespace"], properties["MetricName"], properties["Statistic"]) == (
        "AWS/Lambda",
        "Errors",
        "Sum",
    )
    assert properties["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "StatusSyncFunction"}}]
    assert (properties["ComparisonOperator"], properties["Threshold"]) == ("GreaterThanThreshold", 0)


def api_5xx_alarm(translated: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    properties = translated["Resources"]["RunApi5xxRateAlarm"]["Properties"]
    return properties, {query["Id"]: query for query in properties["Metrics"]}


def test_the_api_5xx_alarm_divides_5xx_by_requests_of_the_deployed_stage(translated: dict[str, Any]):
    properties, queries = api_5xx_alarm(translated)
    (stage,) = resources_of(translated, "AWS::ApiGatewayV2::Stage").values()
    dimensions = [
        {"Name": "ApiId", "Value": {"Ref": "RunApi"}},
        {"Name": "Stage", "Value": stage["Properties"]["StageName"]},
    ]
    assert stage["Properties"]["StageName"] == "$default"

    metrics = {
        query_id: (
            q["MetricStat"]["Metric"]["Namespace"],
            q["MetricStat"]["Metric"]["MetricName"],
            q["MetricStat"]["Stat"],
        )
        for query_id, q in queries.items()
        if "MetricStat" in q
    }
    assert metrics == {"errors": ("AWS/ApiGateway", "5xx", "Sum"), "requests": ("AWS/ApiGateway", "Count", "Sum")}
    for query_id in metrics:
        assert queries[query_id]["MetricStat"]["Metric"]["Dimensions"] == dimensions
        assert queries[query_id]["MetricStat"]["Period"] == 300
        assert queries[query_id]["ReturnData"] is False
    (watched,) = [q for q in queries.values() if q.get("ReturnData", True)]
    assert "Expression" in watched
    assert (properties["ComparisonOperator"], properties["Threshold"], properties["EvaluationPeriods"]) == (
        "GreaterThanThreshold",
        5,
        1,
    )
    assert "MetricName" not in properties
    assert "Namespace" not in properties


def fires(translated: dict[str, Any], errors: float | None, requests: float) -> bool:
    """Whether the 5xx alarm's expression crosses its threshold for one period's sums.

    Evaluated in Python with CloudWatch's meaning of IF and FILL (None: no 5xx datapoint at all)."""
    properties, queries = api_5xx_alarm(translated)
    (watched,) = [q for q in queries.values() if q.get("ReturnData", True)]
    functions = {
        "IF": lambda condition, then, otherwise: then if condition else otherwise,
        "FILL": lambda series, value: value if series is None else series,
    }
    variables = {**functions, "errors": errors, "requests": requests}
    value = eval(watched["Expression"], {"__builtins__": {}}, variables)  # noqa: S307  (our template's expression, no builtins)
    assert properties["ComparisonOperator"] == "GreaterThanThreshold"
    return bool(value > properties["Threshold"])


@pytest.mark.parametrize(
    ("errors", "requests", "expected"),
    [
        (1, 2, False),  # a quiet night: one failed call of two does not page
        (19, 19, False),  # under the request floor, whatever the share
        (1, 20, False),  # 5 % exactly is not over 5 %
        (2, 20, True),
        (6, 100, True),
        (5, 100, False),
        (0, 5000, False),
        (None, 5000, False),  # no 5xx datapoint in the period
        (300, 1000, True),
    ],
)
def test_the_api_5xx_alarm_needs_a_share_over_5_percent_of_at_least_20_requests(
    translated: dict[str, Any], errors: float | None, requests: float, expected: bool
):
    assert fires(translated, errors, requests) is expected


# --- dashboard ----------------------------------------------------------------------------------------------


def dashboard_body(source: dict[str, Any], deployed: StackResources | None = None) -> dict[str, Any]:
    """The dashboard JSON with every ${...} of its !Sub replaced by a dummy value; with ``deployed``, the
    pseudo parameters (${AWS::StackName}, ${AWS::Region}, ...) by their value in that stack."""
    (dashboard,) = resources_of(source, "AWS::CloudWatch::Dashboard").values()
    text = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    assert isinstance(text, str)

    def value(name: str) -> str:
        if deployed is not None and name.startswith("AWS::"):
            return str(deployed.resolve({"Ref": name}))
        return "dummy-" + name.replace("::", "-")

    return dict(json.loads(re.sub(r"\$\{([^}]+)\}", lambda m: value(m.group(1)), text)))


def dashboard_metrics(body: dict[str, Any]) -> list[tuple[list[str], dict[str, Any], dict[str, Any]]]:
    """(namespace, name, dimension pairs...) of every graphed metric, its options and its widget's properties."""
    found = []
    for widget in body["widgets"]:
        if widget["type"] != "metric":
            continue
        previous: list[str] = []
        for entry in widget["properties"]["metrics"]:
            options = entry[-1] if isinstance(entry[-1], dict) else {}
            fields = [f for f in entry if not isinstance(f, dict)]
            fields = [previous[i] if f == "." else f for i, f in enumerate(fields)]  # CloudWatch's shorthand
            previous = fields
            found.append((fields, options, widget["properties"]))
    return found


def test_the_dashboard_body_is_json_once_its_substitutions_are_resolved(source: dict[str, Any]):
    (dashboard,) = resources_of(source, "AWS::CloudWatch::Dashboard").values()
    text = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    # Each ${...} names a resource (or attribute) of the stack or a pseudo parameter, so the stack deploys.
    for name in re.findall(r"\$\{([^}]+)\}", text):
        assert name.startswith("AWS::") or name.split(".")[0] in source["Resources"], name
    body = dashboard_body(source)
    assert body["widgets"]
    for widget in body["widgets"]:
        if widget["type"] == "metric":
            assert widget["properties"]["region"] == "dummy-AWS-Region", widget["properties"]["title"]


def test_the_dashboard_widgets_fit_the_grid_without_overlapping(source: dict[str, Any]):
    cells: set[tuple[int, int]] = set()
    for widget in dashboard_body(source)["widgets"]:
        x, y, width, height = widget["x"], widget["y"], widget["width"], widget["height"]
        assert x >= 0, widget["properties"].get("title")
        assert x + width <= 24, widget["properties"].get("title")
        area = {(column, row) for column in range(x, x + width) for row in range(y, y + height)}
        assert not area & cells, widget["properties"].get("title")
        cells |= area


@pytest.mark.parametrize("stack_name", DEPLOYED_STACKS)
def test_the_dashboard_shows_every_metric_of_the_contract_for_its_own_stack_only(
    source: dict[str, Any], stack_name: str
):
    deployed = stack(source, stack_name=stack_name)
    namespace = global_variable(source, "POWERTOOLS_METRICS_NAMESPACE")
    service = deployed.resolve(global_variable(source, "POWERTOOLS_SERVICE_NAME"))
    assert service == stack_name
    ours = [
        (fields, options)
        for fields, options, _ in dashboard_metrics(dashboard_body(source, deployed))
        if fields[0] == namespace
    ]
    assert {fields[1] for fields, _ in ours} == CONTRACT_METRICS
    for fields, _ in ours:
        assert fields[2:] == ["service", service], fields  # the only dimension Powertools gives them


def test_the_dashboard_shows_every_metric_the_code_names(source: dict[str, Any]):
    # Names written out in add_metric(name="...") anywhere in the layer or the functions; the names built
    # from a status (RunsRejected, RunsFailed, RunsUnknown) are in CONTRACT_METRICS.
    sources = [*Path(ROOT, "layers").rglob("*.py"), *Path(ROOT, "functions").rglob("*.py")]
    named = {m for path in sources for m in re.findall(r"add_metric\(\s*name=\"(\w+)\"", path.read_text())}
    assert {"RunsSubmitted", "RecordsRetried"} <= named
    shown = {fields[1] for fields, _, _ in dashboard_metrics(dashboard_body(source))}
    assert named <= shown


def test_the_dashboard_shows_hilos_latency_percentiles(source: dict[str, Any]):
    stats = {
        (fields[1], options.get("stat", widget.get("stat")))
        for fields, options, widget in dashboard_metrics(dashboard_body(source))
    }
    for metric in ("HilosLatency", "HilosStatusLatency"):
        assert {(metric, "p50"), (metric, "p99")} <= stats


def test_the_dashboard_shows_the_queue_the_api_and_every_function(source: dict[str, Any]):
    graphed = {tuple(fields) for fields, _, _ in dashboard_metrics(dashboard_body(source))}
    queue, dead = "dummy-RunsQueue.QueueName", "dummy-RunsDeadLetterQueue.QueueName"
    assert {
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", queue),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", dead),
        ("AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", queue),
    } <= graphed
    api = ("ApiId", "dummy-RunApi", "Stage", "$default")
    assert {("AWS/ApiGateway", metric, *api) for metric in ("Count", "4xx", "5xx", "Latency")} <= graphed
    functions = set(resources_of(source, "AWS::Serverless::Function"))
    assert functions == {"RunApiFunction", "BulkWorkerFunction", "StatusSyncFunction"}
    for function in functions:
        for metric in ("Errors", "Throttles", "Duration"):
            assert ("AWS/Lambda", metric, "FunctionName", f"dummy-{function}") in graphed, (function, metric)


def test_the_dashboard_shows_every_alarm_of_the_stack(source: dict[str, Any]):
    (widget,) = [w for w in dashboard_body(source)["widgets"] if w["type"] == "alarm"]
    shown = set(widget["properties"]["alarms"])
    assert shown == {f"dummy-{name}.Arn" for name in resources_of(source, "AWS::CloudWatch::Alarm")}


# --- outputs ----------------------------------------------------------------------------------------------------


def test_outputs_give_the_dashboard_url_and_the_completion_bus(source: dict[str, Any]):
    outputs = source["Outputs"]
    assert outputs["CompletionEventBusName"]["Value"] == {"Ref": "CompletionEventBusName"}
    resolved = stack(source)
    (dashboard,) = resources_of(source, "AWS::CloudWatch::Dashboard").items()
    name = resolved.resolve(dashboard[1]["Properties"]["DashboardName"])
    assert name == "hilos-runner-test-operations"
    resolved.physical_ids[dashboard[0]] = name  # what Ref gives for a dashboard
    assert resolved.resolve(outputs["OperationsDashboardUrl"]["Value"]) == (
        "https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#dashboards:name="
        "hilos-runner-test-operations"
    )


def test_a_refresh_with_every_status_read_retry_fits_run_apis_timeout(source: dict[str, Any]):
    from hilos_runner.settings import Settings

    # GET /runs/{id}?refresh=true reads Hilos inside run_api: all its attempts must end before the
    # function's Timeout (itself under API Gateway's 30 s), or a slow Hilos becomes a gateway timeout.
    settings = Settings()
    worst_read = settings.hilos_status_read_budget_seconds - settings.worker_call_margin_seconds
    assert worst_read < source["Resources"]["RunApiFunction"]["Properties"]["Timeout"] < 30
