"""Create the stack's AWS resources from template.yaml's own definitions (local/template.py reads them), on any
AWS endpoint.

Used by the integration tests (moto ``mock_aws``) and by the local stack (moto server, or whatever
``AWS_ENDPOINT_URL`` points at). The tables, queues and secret are read from the template, not
retyped, so a change to the template is a change to every test and to ``make dev``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from local.template import StackResources, load_template


def create_stack_resources(
    session: Any,
    *,
    hilos_token: str,
    stack_name: str = "hilos-runner-local",
    parameters: dict[str, str] | None = None,
    template: dict[str, Any] | None = None,
) -> StackResources:
    """Create tables, queues, event buses, schedule groups and the token secret of template.yaml through ``session``'s
    clients (roles are only named).

    Existing resources are reused (a local stack restarted against the same endpoint).
    """
    stack = StackResources.with_defaults(template or load_template(), stack_name, parameters)
    _create_secrets(session, stack, hilos_token)
    _create_queues(session, stack)
    _create_tables(session, stack)
    _create_named(session, stack, "AWS::Events::EventBus", "events", ensure_event_bus)
    _create_named(session, stack, "AWS::Scheduler::ScheduleGroup", "scheduler", ensure_schedule_group)
    _name_roles(stack)
    return stack


def _create_secrets(session: Any, stack: StackResources, hilos_token: str) -> None:
    client = session.client("secretsmanager")
    for logical_id, resource in stack.resources_of_type("AWS::SecretsManager::Secret").items():
        name = stack.resolve(resource["Properties"].get("Name", f"{stack.stack_name}/{logical_id}"))
        try:
            arn = client.create_secret(Name=name, SecretString=hilos_token)["ARN"]
        except client.exceptions.ResourceExistsException:
            client.put_secret_value(SecretId=name, SecretString=hilos_token)
            arn = client.describe_secret(SecretId=name)["ARN"]
        stack.physical_ids[logical_id] = arn
        stack.attributes[(logical_id, "Arn")] = arn


def _create_queues(session: Any, stack: StackResources) -> None:
    client = session.client("sqs")
    queues = stack.resources_of_type("AWS::SQS::Queue")
    # Dead-letter queues first: the others' redrive policies name them.
    ordered = sorted(queues.items(), key=lambda item: "RedrivePolicy" in item[1].get("Properties", {}))
    for logical_id, resource in ordered:
        properties = dict(resource.get("Properties", {}))
        name = str(stack.resolve(properties.pop("QueueName", f"{stack.stack_name}-{logical_id}")))
        attributes = {}
        for key, value in properties.items():
            if key in ("Tags",):
                continue
            resolved = stack.resolve(value)
            if isinstance(resolved, dict):
                attributes[key] = json.dumps(resolved)
            elif isinstance(resolved, bool):
                attributes[key] = str(resolved).lower()
            else:
                attributes[key] = str(resolved)
        url = client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        stack.physical_ids[logical_id] = url
        stack.attributes[(logical_id, "Arn")] = arn
        stack.attributes[(logical_id, "QueueUrl")] = url
        stack.attributes[(logical_id, "QueueName")] = name


def _create_tables(session: Any, stack: StackResources) -> None:
    client = session.client("dynamodb")
    for logical_id, resource in stack.resources_of_type("AWS::DynamoDB::Table").items():
        properties = stack.resolve(resource["Properties"])
        name = properties.get("TableName", f"{stack.stack_name}-{logical_id}")
        request = {
            "TableName": name,
            "AttributeDefinitions": properties["AttributeDefinitions"],
            "KeySchema": properties["KeySchema"],
            "BillingMode": properties.get("BillingMode", "PAY_PER_REQUEST"),
        }
        if "GlobalSecondaryIndexes" in properties:
            request["GlobalSecondaryIndexes"] = properties["GlobalSecondaryIndexes"]
        try:
            client.create_table(**request)
            client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 100})
            ttl = properties.get("TimeToLiveSpecification")
            if ttl:
                client.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
        except client.exceptions.ResourceInUseException:
            pass  # already there
        arn = client.describe_table(TableName=name)["Table"]["TableArn"]
        stack.physical_ids[logical_id] = name
        stack.attributes[(logical_id, "Arn")] = arn


def _create_named(
    session: Any, stack: StackResources, resource_type: str, service: str, ensure: Callable[[Any, str], str]
) -> None:
    """Resources known by their ``Name`` property (event buses, schedule groups): ``ensure`` creates each one unless
    it is there and returns its ARN; ``!Ref`` and ``!GetAtt .Name`` give the name."""
    resources = stack.resources_of_type(resource_type)
    if not resources:
        return
    client = session.client(service)
    for logical_id, resource in resources.items():
        name = str(stack.resolve(resource["Properties"]["Name"]))
        stack.physical_ids[logical_id] = name
        stack.attributes[(logical_id, "Name")] = name
        stack.attributes[(logical_id, "Arn")] = ensure(client, name)


def ensure_schedule_group(client: Any, name: str) -> str:
    """The schedule group's ARN, created if missing (looked up first: moto's create would replace an existing group,
    and its schedules with it)."""
    try:
        return str(client.get_schedule_group(Name=name)["Arn"])
    except client.exceptions.ResourceNotFoundException:
        return str(client.create_schedule_group(Name=name)["ScheduleGroupArn"])


def _name_roles(stack: StackResources) -> None:
    """The ARNs the template's roles would have. Not created: nothing local assumes them (what they allow is
    checked by the template tests against what each function calls)."""
    account = stack.resolve({"Ref": "AWS::AccountId"})
    for logical_id in stack.resources_of_type("AWS::IAM::Role"):
        name = f"{stack.stack_name}-{logical_id}"
        stack.physical_ids[logical_id] = name
        stack.attributes[(logical_id, "Arn")] = f"arn:aws:iam::{account}:role/{name}"


def ensure_event_bus(client: Any, name: str) -> str:
    """The ARN of event bus ``name``, created if missing ("default" always exists)."""
    if name != "default":
        with contextlib.suppress(client.exceptions.ResourceAlreadyExistsException):  # already there
            client.create_event_bus(Name=name)
    arn: str = client.describe_event_bus(Name=name)["Arn"]
    return arn


@dataclass(frozen=True)
class CompletionEventsQueue:
    """Where the local stack lets people and tests see the completion events: a queue fed by a rule."""

    bus_name: str
    rule_arn: str
    queue_url: str
    queue_arn: str


COMPLETION_EVENT_SOURCE = "hilos-runner"


def create_completion_events_queue(session: Any, stack_name: str, bus_name: str) -> CompletionEventsQueue:
    """A queue that receives every event of source hilos-runner put on bus ``bus_name`` (the bus created if
    missing). Not part of template.yaml: a deployment's consumers bring their own rules. Repeatable: an
    existing bus, queue, rule or target is reused."""
    events, sqs = session.client("events"), session.client("sqs")
    ensure_event_bus(events, bus_name)
    queue_url = sqs.create_queue(QueueName=f"{stack_name}-completion-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rule_arn = events.put_rule(
        Name=f"{stack_name}-completion-events",
        EventBusName=bus_name,
        EventPattern=json.dumps({"source": [COMPLETION_EVENT_SOURCE]}),
        State="ENABLED",
        Description="hilos-runner local stack: completion events to a queue people and tests can read",
    )["RuleArn"]
    # What a real SQS needs before EventBridge may deliver (moto does not check it).
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
            }
        ],
    }
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})
    events.put_targets(
        Rule=f"{stack_name}-completion-events",
        EventBusName=bus_name,
        Targets=[{"Id": "completion-events-queue", "Arn": queue_arn}],
    )
    return CompletionEventsQueue(bus_name, rule_arn, queue_url, queue_arn)
