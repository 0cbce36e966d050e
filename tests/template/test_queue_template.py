"""template.yaml's queued-run part, as SAM translates it: queue and DLQ, the worker's event source
mapping, its least-privilege role, alarms, and settings that match what the code expects.

Uses the translator and helpers of test_template.py (one way to translate the template)."""

from typing import Any

import pytest

from hilos_runner.settings import Settings
from local.stack_resources import create_stack_resources
from tests.template.sam_template import as_list, inline_statements, references, resources_of

SQS_WORKER_ACTIONS = {
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:ChangeMessageVisibility",
}


def parameter(template: dict[str, Any], value: Any) -> dict[str, Any]:
    """The template parameter a property is a plain Ref to."""
    assert isinstance(value, dict), value
    assert set(value) == {"Ref"}, value
    return dict(template["Parameters"][value["Ref"]])


def worker_mapping(translated: dict[str, Any]) -> dict[str, Any]:
    (mapping,) = resources_of(translated, "AWS::Lambda::EventSourceMapping").values()
    return dict(mapping["Properties"])


def statements_of(translated: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [statement for where, statement in inline_statements(translated) if where.startswith(f"{role}/")]


def test_queue_and_dead_letter_queue_are_encrypted_and_wired(translated: dict[str, Any]):
    queues = resources_of(translated, "AWS::SQS::Queue")
    assert set(queues) == {"RunsQueue", "RunsDeadLetterQueue"}
    for name, queue in queues.items():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True, name
    runs, dead = queues["RunsQueue"]["Properties"], queues["RunsDeadLetterQueue"]["Properties"]
    assert runs["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["RunsDeadLetterQueue", "Arn"]}
    receives = parameter(translated, runs["RedrivePolicy"]["maxReceiveCount"])
    assert receives["MinValue"] >= 5
    assert receives["Default"] >= 5
    assert "RedrivePolicy" not in dead
    # A message keeps its first enqueue time in the DLQ: the DLQ must keep it longer than the queue did.
    assert dead["MessageRetentionPeriod"] > runs["MessageRetentionPeriod"]


def test_visibility_timeout_is_at_least_six_worker_timeouts_plus_the_batching_window(translated: dict[str, Any]):
    worker = translated["Resources"]["BulkWorkerFunction"]["Properties"]
    window = parameter(translated, worker_mapping(translated)["MaximumBatchingWindowInSeconds"])
    visibility = translated["Resources"]["RunsQueue"]["Properties"]["VisibilityTimeout"]

    assert visibility >= 6 * worker["Timeout"] + window["MaxValue"]


def test_a_worker_invocation_has_room_for_several_hilos_calls(translated: dict[str, Any]):
    worker = translated["Resources"]["BulkWorkerFunction"]["Properties"]
    assert worker["Timeout"] >= 4 * Settings().hilos_call_budget_seconds


def test_the_event_source_mapping_reports_partial_failures_with_parameterised_brakes(translated: dict[str, Any]):
    mapping = worker_mapping(translated)

    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["RunsQueue", "Arn"]}
    assert mapping["FunctionName"] == {"Ref": "BulkWorkerFunction"}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert parameter(translated, mapping["BatchSize"])["MaxValue"] <= 10  # 10 x 256 KiB fits a 6 MB invoke
    parameter(translated, mapping["MaximumBatchingWindowInSeconds"])
    concurrency = parameter(translated, mapping["ScalingConfig"]["MaximumConcurrency"])
    assert concurrency["MinValue"] >= 2  # Lambda's minimum for MaximumConcurrency


def test_the_worker_role_may_consume_only_the_runs_queue(translated: dict[str, Any]):
    role = translated["Resources"]["BulkWorkerRole"]["Properties"]
    # SAM's generated role would carry AWSLambdaSQSQueueExecutionRole: receive/delete on every queue.
    assert not any("SQS" in str(arn) for arn in role.get("ManagedPolicyArns", []))
    assert translated["Resources"]["BulkWorkerFunction"]["Properties"]["Role"] == {
        "Fn::GetAtt": ["BulkWorkerRole", "Arn"]
    }
    sqs = [s for s in statements_of(translated, "BulkWorkerRole") if any("sqs:" in a for a in as_list(s["Action"]))]
    assert len(sqs) == 2  # consuming, and the start messages of scheduled runs (hilos_runner.scheduling)
    assert set(as_list(sqs[0]["Action"])) == SQS_WORKER_ACTIONS
    assert as_list(sqs[0]["Resource"]) == [{"Fn::GetAtt": ["RunsQueue", "Arn"]}]
    assert (as_list(sqs[1]["Action"]), as_list(sqs[1]["Resource"])) == (
        ["sqs:SendMessage"],
        [{"Fn::GetAtt": ["RunsQueue", "Arn"]}],
    )


def test_the_worker_role_names_exactly_what_the_worker_uses(translated: dict[str, Any]):
    granted = {
        (action, frozenset(references(statement["Resource"])))
        for statement in statements_of(translated, "BulkWorkerRole")
        for action in as_list(statement["Action"])
    }
    assert {action for action, _ in granted} == SQS_WORKER_ACTIONS | {
        "secretsmanager:GetSecretValue",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:BatchWriteItem",  # a run's SENDING record with the body kept for reconciliation
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        # Scheduled runs: a queued message's schedule, and a scheduled bulk run's chunks read and started.
        "scheduler:CreateSchedule",
        "iam:PassRole",
        "sqs:SendMessage",
        "dynamodb:BatchGetItem",
    }
    assert ("scheduler:CreateSchedule", frozenset({"RunSchedules"})) in granted
    assert ("iam:PassRole", frozenset({"RunSchedulerRole"})) in granted
    assert ("dynamodb:BatchGetItem", frozenset({"ExecutionsTable"})) in granted
    assert ("dynamodb:BatchWriteItem", frozenset({"ExecutionsTable"})) in granted
    assert ("dynamodb:UpdateItem", frozenset({"IdempotencyTable"})) in granted
    assert ("dynamodb:UpdateItem", frozenset({"ExecutionsTable"})) not in granted
    assert ("logs:PutLogEvents", frozenset({"BulkWorkerFunctionLogs"})) in granted


def test_the_api_may_send_to_the_runs_queue_and_nothing_more_on_sqs(translated: dict[str, Any]):
    (api_role,) = (
        name for name, r in resources_of(translated, "AWS::IAM::Role").items() if name.startswith("RunApiFunction")
    )
    sqs = [s for s in statements_of(translated, api_role) if any("sqs:" in a for a in as_list(s["Action"]))]
    assert [(as_list(s["Action"]), as_list(s["Resource"])) for s in sqs] == [
        (["sqs:SendMessage"], [{"Fn::GetAtt": ["RunsQueue", "Arn"]}])
    ]
    batch = {a for s in statements_of(translated, api_role) for a in as_list(s["Action"]) if "Batch" in a}
    assert batch == {"dynamodb:BatchWriteItem", "dynamodb:BatchGetItem"}


@pytest.mark.parametrize(
    ("alarm", "namespace", "metric", "dimension"),
    [
        (
            "RunsDeadLetterQueueAlarm",
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            ("QueueName", "RunsDeadLetterQueue"),
        ),
        ("BulkWorkerErrorsAlarm", "AWS/Lambda", "Errors", ("FunctionName", "BulkWorkerFunction")),
    ],
)
def test_alarms_fire_on_the_first_dead_letter_and_the_first_worker_error(
    translated: dict[str, Any], alarm: str, namespace: str, metric: str, dimension: tuple[str, str]
):
    properties = translated["Resources"][alarm]["Properties"]
    assert (properties["Namespace"], properties["MetricName"]) == (namespace, metric)
    ((name, value),) = [(d["Name"], d["Value"]) for d in properties["Dimensions"]]
    assert name == dimension[0]
    assert references(value) == {dimension[1]}
    assert (properties["ComparisonOperator"], properties["Threshold"]) == ("GreaterThanThreshold", 0)
    assert properties["EvaluationPeriods"] == 1
    topic = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    assert properties["AlarmActions"] == properties["OKActions"] == topic


def test_the_worker_logs_to_its_own_retained_log_group(translated: dict[str, Any]):
    worker = translated["Resources"]["BulkWorkerFunction"]["Properties"]
    assert worker["LoggingConfig"]["LogGroup"] == {"Ref": "BulkWorkerFunctionLogs"}
    logs = translated["Resources"]["BulkWorkerFunctionLogs"]["Properties"]
    assert logs["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_outputs_name_both_queues(translated: dict[str, Any]):
    outputs = translated["Outputs"]
    assert outputs["RunsQueueUrl"]["Value"] == {"Ref": "RunsQueue"}
    assert outputs["RunsDeadLetterQueueUrl"]["Value"] == {"Ref": "RunsDeadLetterQueue"}


def test_the_bulk_routes_are_deployed(translated: dict[str, Any]):
    (api,) = resources_of(translated, "AWS::ApiGatewayV2::Api").values()
    paths = api["Properties"]["Body"]["paths"]
    assert "post" in paths["/flows/{flow_id}/bulk-runs"]
    assert "get" in paths["/bulk-runs/{bulk_id}"]


@pytest.mark.parametrize("function", ["RunApiFunction", "BulkWorkerFunction"])
def test_every_variable_the_template_sets_is_a_setting_and_valid(function: str):
    from moto import mock_aws

    with mock_aws():
        import boto3

        stack = create_stack_resources(boto3.Session(region_name="us-east-1"), hilos_token="not-a-real-token")
        environment = stack.function_environment(function)
    ours = {name: value for name, value in environment.items() if not name.startswith("POWERTOOLS_")}
    assert {name.lower() for name in ours} <= set(Settings.model_fields)
    settings = Settings.from_env(environment)  # raises if a template default is out of the setting's range
    assert settings.runs_queue_url == stack.physical_ids["RunsQueue"]
    if function == "BulkWorkerFunction":
        template = stack.template
        assert settings.max_receive_count == int(template["Parameters"]["MaxReceiveCount"]["Default"])
        assert settings.worker_concurrency == int(template["Parameters"]["WorkerConcurrency"]["Default"])
