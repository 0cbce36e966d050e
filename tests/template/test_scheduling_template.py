"""Scheduled runs in template.yaml (issue 17): the role EventBridge Scheduler assumes can only send to the runs queue,
only this account's scheduler may assume it, and the functions may only create (and run_api delete) schedules in the
stack's schedule group and pass that role to EventBridge Scheduler, nothing else."""

from typing import Any

from tests.template.sam_template import granted, inline_statements, references, resources_of, role_of

SCHEDULE_ACTIONS = {"scheduler:CreateSchedule", "scheduler:DeleteSchedule"}


def test_the_schedulers_role_can_only_send_to_the_runs_queue(translated: dict[str, Any]):
    role = translated["Resources"]["RunSchedulerRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Action"] == "sts:AssumeRole"
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    assert "ManagedPolicyArns" not in role
    statements = [
        statement for where, statement in inline_statements(translated) if where.startswith("RunSchedulerRole/")
    ]
    assert statements == [
        {
            "Sid": "SendStartMessages",
            "Effect": "Allow",
            "Action": "sqs:SendMessage",
            "Resource": {"Fn::GetAtt": ["RunsQueue", "Arn"]},
        }
    ]
    assert granted(translated, "RunSchedulerRole") == {("sqs:SendMessage", "RunsQueue")}


def test_schedules_are_one_group_of_the_stack(translated: dict[str, Any]):
    (name,) = resources_of(translated, "AWS::Scheduler::ScheduleGroup")
    assert name == "RunSchedules"
    assert translated["Resources"][name]["Properties"]["Name"] == {"Fn::Sub": "${AWS::StackName}-runs"}
    for function in ("RunApiFunction", "BulkWorkerFunction"):
        variables = translated["Resources"][function]["Properties"]["Environment"]["Variables"]
        assert variables["SCHEDULE_GROUP_NAME"] == {"Ref": "RunSchedules"}
        assert variables["SCHEDULER_ROLE_ARN"] == {"Fn::GetAtt": ["RunSchedulerRole", "Arn"]}
        assert variables["RUNS_QUEUE_ARN"] == {"Fn::GetAtt": ["RunsQueue", "Arn"]}


def test_functions_schedule_only_in_the_group_and_pass_only_the_schedulers_role(translated: dict[str, Any]):
    expected = {
        "RunApiFunction": SCHEDULE_ACTIONS,  # schedules runs and cancels them
        "BulkWorkerFunction": {"scheduler:CreateSchedule"},  # schedules queued messages; never cancels
        "StatusSyncFunction": set(),
    }
    for function, actions in expected.items():
        role = role_of(translated, function)
        grants = granted(translated, role)
        assert {action for action, _ in grants if action.startswith("scheduler:")} == actions
        assert {resource for action, resource in grants if action.startswith("scheduler:")} <= {"RunSchedules"}
        passed = [statement for where, statement in inline_statements(translated) if where.startswith(f"{role}/")]
        passed = [statement for statement in passed if "iam:PassRole" in str(statement["Action"])]
        if not actions:
            assert passed == []
            continue
        (statement,) = passed
        assert statement["Action"] == "iam:PassRole"
        assert references(statement["Resource"]) == {"RunSchedulerRole"}
        assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}}
        schedule_arn = next(
            statement["Resource"]
            for where, statement in inline_statements(translated)
            if where.startswith(f"{role}/") and "scheduler:CreateSchedule" in statement["Action"]
        )
        assert schedule_arn["Fn::Sub"].endswith(":schedule/${RunSchedules}/*")


def test_the_cancel_routes_are_deployed_and_browsers_may_send_delete(source: dict[str, Any]):
    events = source["Resources"]["RunApiFunction"]["Properties"]["Events"]
    routes = {(event["Properties"]["Method"], event["Properties"]["Path"]) for event in events.values()}
    assert {("DELETE", "/runs/{run_id}"), ("DELETE", "/bulk-runs/{bulk_id}")} <= routes
    cors = source["Resources"]["RunApi"]["Properties"]["CorsConfiguration"]["Fn::If"][1]
    assert "DELETE" in cors["AllowMethods"]
