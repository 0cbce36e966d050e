"""Create the stack's AWS resources from template.yaml's own definitions, on any AWS endpoint.

Used by the integration tests (moto ``mock_aws``) and by the local stack (moto server, or whatever
``AWS_ENDPOINT_URL`` points at). The tables, queues and secret are read from the template, not
retyped, so a change to the template is a change to every test and to ``make dev``.

Only the intrinsics the template uses are resolved: Ref, Fn::If, Fn::Equals, Fn::Not, Fn::GetAtt,
Fn::Sub (plain ``${Name}`` / ``${Name.Attr}``) and Fn::Split; and, in Rules, the rule functions.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "template.yaml"
_PSEUDO_PARAMETERS: dict[str, str | None] = {
    "AWS::NoValue": None,  # the property is left out
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
}


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    from samtranslator.yaml_helper import yaml_parse  # understands !Ref, !Sub, ... short forms

    return yaml_parse(path.read_text())


@dataclass
class StackResources:
    """Physical names of the created resources, by logical id, and the functions' environment."""

    template: dict[str, Any]
    stack_name: str
    parameters: dict[str, str]
    physical_ids: dict[str, str] = field(default_factory=dict)  # what !Ref returns
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)  # what !GetAtt returns

    @classmethod
    def with_defaults(
        cls, template: dict[str, Any], stack_name: str, parameters: dict[str, str] | None = None
    ) -> StackResources:
        """The template's parameter defaults, overridden by ``parameters`` (as a deploy would pass them)."""
        defaults = {name: str(spec.get("Default", "")) for name, spec in template.get("Parameters", {}).items()}
        return cls(template, stack_name, {**defaults, **(parameters or {})})

    # -- intrinsics -------------------------------------------------------------------------
    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((name, argument),) = value.items()
            intrinsic = self._intrinsics().get(name)
            if intrinsic is not None:
                return intrinsic(argument)
        return {key: self.resolve(item) for key, item in value.items()}

    def _intrinsics(self) -> dict[str, Any]:
        return {
            "Ref": self._ref,
            "Condition": self.condition,
            "Fn::If": lambda arg: self.resolve(arg[1] if self.condition(arg[0]) else arg[2]),
            "Fn::Equals": lambda arg: str(self.resolve(arg[0])) == str(self.resolve(arg[1])),
            "Fn::Not": lambda arg: not self.resolve(arg[0]),
            "Fn::GetAtt": lambda arg: self.attributes[tuple(arg if isinstance(arg, list) else arg.split(".", 1))],
            "Fn::Sub": lambda arg: re.sub(r"\$\{([^}]+)\}", lambda m: str(self._sub_part(m.group(1))), arg),
            "Fn::Split": lambda arg: str(self.resolve(arg[1])).split(arg[0]),
        }

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template.get("Conditions", {})[name]))

    def _ref(self, name: str) -> Any:
        if name in self.parameters:
            return self.parameters[name]
        if name == "AWS::StackName":
            return self.stack_name
        if name in _PSEUDO_PARAMETERS:
            return _PSEUDO_PARAMETERS[name]
        return self.physical_ids[name]

    def _sub_part(self, name: str) -> Any:
        if "." in name:
            logical_id, attribute = name.split(".", 1)
            return self.attributes[(logical_id, attribute)]
        return self._ref(name)

    # -- Rules: what CloudFormation checks of the parameters before it creates anything ------
    def rule_violations(self) -> list[str]:
        """``Rule: AssertDescription`` of every assertion of the template's Rules that the parameters break."""
        violations = []
        for name, rule in self.template.get("Rules", {}).items():
            if "RuleCondition" in rule and not self._rule_value(rule["RuleCondition"]):
                continue
            for assertion in rule["Assertions"]:
                if not self._rule_value(assertion["Assert"]):
                    violations.append(f"{name}: {assertion.get('AssertDescription', 'assertion failed')}")
        return violations

    def _rule_value(self, value: Any) -> Any:
        """The rule-specific functions; a Ref to a CommaDelimitedList parameter is its list, as in CloudFormation."""
        if isinstance(value, list):
            return [self._rule_value(item) for item in value]
        if not isinstance(value, dict):
            return value
        ((name, argument),) = value.items()
        if name == "Ref":
            kind = self.template.get("Parameters", {}).get(argument, {}).get("Type")
            return str(self._ref(argument)).split(",") if kind == "CommaDelimitedList" else self._ref(argument)
        functions: dict[str, Any] = {
            "Fn::Equals": lambda a: str(a[0]) == str(a[1]),
            "Fn::Not": lambda a: not a[0],
            "Fn::And": all,
            "Fn::Or": any,
            "Fn::Contains": lambda a: a[1] in a[0],
            "Fn::EachMemberEquals": lambda a: all(member == a[1] for member in a[0]),
            "Fn::EachMemberIn": lambda a: all(member in a[1] for member in a[0]),
        }
        return functions[name](self._rule_value(argument))

    # -- what the functions see --------------------------------------------------------------
    def function_environment(self, logical_id: str) -> dict[str, str]:
        """The Lambda environment of a function: Globals merged with its own, intrinsics resolved."""
        resources = self.template["Resources"]
        global_vars = self.template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
        own_vars = resources[logical_id].get("Properties", {}).get("Environment", {}).get("Variables", {})
        return {name: str(self.resolve(value)) for name, value in {**global_vars, **own_vars}.items()}

    def resources_of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            logical_id: resource
            for logical_id, resource in self.template["Resources"].items()
            if resource["Type"] == resource_type and self._included(resource)
        }

    def _included(self, resource: dict[str, Any]) -> bool:
        return "Condition" not in resource or self.condition(resource["Condition"])


def create_stack_resources(
    session: Any,
    *,
    hilos_token: str,
    stack_name: str = "hilos-runner-local",
    parameters: dict[str, str] | None = None,
    template: dict[str, Any] | None = None,
) -> StackResources:
    """Create tables, queues, event buses and the token secret of template.yaml through ``session``'s clients.

    Existing resources are reused (a local stack restarted against the same endpoint).
    """
    stack = StackResources.with_defaults(template or load_template(), stack_name, parameters)
    _create_secrets(session, stack, hilos_token)
    _create_queues(session, stack)
    _create_tables(session, stack)
    _create_event_buses(session, stack)
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


def _create_event_buses(session: Any, stack: StackResources) -> None:
    buses = stack.resources_of_type("AWS::Events::EventBus")
    if not buses:
        return
    client = session.client("events")
    for logical_id, resource in buses.items():
        name = str(stack.resolve(resource["Properties"]["Name"]))
        stack.physical_ids[logical_id] = name
        stack.attributes[(logical_id, "Name")] = name
        stack.attributes[(logical_id, "Arn")] = ensure_event_bus(client, name)


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
