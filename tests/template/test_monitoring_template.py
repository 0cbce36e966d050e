"""template.yaml's monitoring part, as written and as SAM translates it: the alarms (each notifies the topic
when one is given), the EMF alarms on the functions' own metrics, the API's 5xx share alarm, the operations dashboard
(every metric of the contract and of the code, every alarm, for its own stack only) and the outputs that point to it."""

import json
import re
from pathlib import Path
from typing import Any

import pytest

from local.template import StackResources
from tests.template.sam_template import (
    DEPLOYED_STACKS,
    ROOT,
    global_variable,
    resources_of,
    stack,
)

TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:hilos-runner-alarms"


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
