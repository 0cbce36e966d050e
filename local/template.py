"""What template.yaml declares, read in one place: the template itself (SAM's YAML loader), its intrinsics resolved
with the stack's parameters and physical ids (``StackResources``), and what the local stack runs from it: each
``AWS::Serverless::Function`` (code directory and handler, layers' directories, timeout, memory, environment,
reserved concurrency), its SQS events (what an event source mapping would do), its Schedule events (the rule SAM
makes) and its HttpApi routes (with their authorizer). Nothing is hard-coded per function.

Only the intrinsics the template uses are resolved: Ref, Fn::If, Fn::Equals, Fn::Not, Fn::GetAtt,
Fn::Sub (plain ``${Name}`` / ``${Name.Attr}``) and Fn::Split; and, in Rules, the rule functions.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

log = logging.getLogger("local.template")

REPO_ROOT = Path(__file__).resolve().parent.parent
SAM_DEFAULT_TIMEOUT_SECONDS = 3
SAM_DEFAULT_MEMORY_MB = 128
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
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


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    function_name: str
    code_dir: Path
    handler_module: str
    handler_name: str
    layer_dirs: tuple[Path, ...]
    timeout_seconds: float
    memory_mb: int
    environment: dict[str, str] = field(hash=False)
    reserved_concurrency: int | None = None  # ReservedConcurrentExecutions: invocations at once (None: no cap)


@dataclass(frozen=True)
class SqsEventSource:
    """An SQS event of a function: what its event source mapping would do."""

    function_logical_id: str
    queue_logical_id: str
    queue_url: str
    queue_arn: str
    batch_size: int
    batching_window_seconds: float
    report_batch_item_failures: bool
    maximum_concurrency: int | None = None  # ScalingConfig: invocations at once (None: no cap)


def function_specs(stack: StackResources, extra_environment: dict[str, str]) -> dict[str, FunctionSpec]:
    """Every function of the template, with the environment it would have in Lambda plus ``extra_environment``."""
    global_properties = stack.template.get("Globals", {}).get("Function", {})
    specs = {}
    for logical_id, resource in stack.resources_of_type("AWS::Serverless::Function").items():
        own = resource.get("Properties", {})
        properties = {**global_properties, **own}
        module_name, _, handler_name = str(stack.resolve(properties["Handler"])).rpartition(".")
        function_name = f"{stack.stack_name}-{logical_id}"
        timeout = float(stack.resolve(properties.get("Timeout", SAM_DEFAULT_TIMEOUT_SECONDS)))
        memory = int(stack.resolve(properties.get("MemorySize", SAM_DEFAULT_MEMORY_MB)))
        reserved = stack.resolve(properties.get("ReservedConcurrentExecutions"))
        # SAM merges list-valued Globals by concatenation: global layers first.
        layers = [*global_properties.get("Layers", []), *own.get("Layers", [])]
        code_dir = REPO_ROOT / str(stack.resolve(properties["CodeUri"]))
        environment = {
            **stack.function_environment(logical_id),
            "AWS_LAMBDA_FUNCTION_NAME": function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "LAMBDA_TASK_ROOT": str(code_dir),
            "_HANDLER": str(properties["Handler"]),
            **extra_environment,
        }
        specs[logical_id] = FunctionSpec(
            logical_id=logical_id,
            function_name=function_name,
            code_dir=code_dir,
            handler_module=module_name,
            handler_name=handler_name,
            layer_dirs=tuple(_layer_dirs(stack, layers)),
            timeout_seconds=timeout,
            memory_mb=memory,
            environment=environment,
            reserved_concurrency=int(reserved) if reserved is not None else None,
        )
    return specs


def _layer_dirs(stack: StackResources, layers: list[Any]) -> list[Path]:
    directories = []
    for layer in layers:
        reference = layer.get("Ref") if isinstance(layer, dict) else None
        resource = stack.template["Resources"].get(reference or "", {})
        if resource.get("Type") == "AWS::Serverless::LayerVersion":
            directories.append(REPO_ROOT / str(stack.resolve(resource["Properties"]["ContentUri"])))
        else:
            # A published layer (an ARN): locally its packages come from the virtualenv.
            log.warning("layer %s is not built from this repository; using the virtualenv instead", layer)
    return directories


def sqs_event_sources(stack: StackResources) -> list[SqsEventSource]:
    """The SQS events of every function, with the queue resolved to its URL and ARN."""
    queue_ids_by_arn = {arn: logical_id for (logical_id, name), arn in stack.attributes.items() if name == "Arn"}
    sources = []
    for logical_id, resource in stack.resources_of_type("AWS::Serverless::Function").items():
        for event in resource.get("Properties", {}).get("Events", {}).values():
            if event.get("Type") != "SQS":
                continue
            properties = event.get("Properties", {})
            queue_arn = str(stack.resolve(properties["Queue"]))
            scaling = stack.resolve(properties.get("ScalingConfig")) or {}
            queue_id = queue_ids_by_arn[queue_arn]
            sources.append(
                SqsEventSource(
                    function_logical_id=logical_id,
                    queue_logical_id=queue_id,
                    queue_url=stack.physical_ids[queue_id],
                    queue_arn=queue_arn,
                    batch_size=int(stack.resolve(properties.get("BatchSize", 10))),
                    batching_window_seconds=float(stack.resolve(properties.get("MaximumBatchingWindowInSeconds", 0))),
                    report_batch_item_failures="ReportBatchItemFailures"
                    in (stack.resolve(properties.get("FunctionResponseTypes")) or []),
                    maximum_concurrency=int(scaling["MaximumConcurrency"]) if "MaximumConcurrency" in scaling else None,
                )
            )
    return sources


@dataclass(frozen=True)
class ScheduleSource:
    """A Schedule event of a function: the EventBridge rule SAM makes of it."""

    function_logical_id: str
    event_name: str
    expression: str  # rate(...) or cron(...)
    rule_name: str
    enabled: bool
    input: str | None = None  # the event's Input: sent instead of the Scheduled Event when set


def schedule_sources(stack: StackResources) -> list[ScheduleSource]:
    """The Schedule events of every function. The rule's name is SAM's logical id of it (function + event)
    under the stack's name, unless the event names it."""
    sources = []
    for logical_id, resource in stack.resources_of_type("AWS::Serverless::Function").items():
        for event_name, event in resource.get("Properties", {}).get("Events", {}).items():
            if event.get("Type") == "ScheduleV2":
                log.warning("%s.%s: ScheduleV2 (EventBridge Scheduler) is not run locally", logical_id, event_name)
            if event.get("Type") != "Schedule":
                continue
            properties = stack.resolve(event.get("Properties", {}))
            state = str(properties.get("State", "ENABLED")).upper()
            sources.append(
                ScheduleSource(
                    function_logical_id=logical_id,
                    event_name=event_name,
                    expression=str(properties["Schedule"]).strip(),
                    rule_name=str(properties.get("Name") or f"{stack.stack_name}-{logical_id}{event_name}"),
                    enabled=str(properties.get("Enabled", True)).lower() != "false" and state == "ENABLED",
                    input=properties.get("Input"),
                )
            )
    return sources


@dataclass(frozen=True)
class HttpRoute:
    """An HttpApi event of a function: API Gateway's route, matched like API Gateway matches it."""

    function_logical_id: str
    method: str  # "ANY" or an upper-case method
    path: str  # e.g. /flows/{flow_id}/runs, /{proxy+}
    authorizer: str | None = "JwtAuthorizer"  # None: open to anyone (SAM's Authorizer: NONE)

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """The path parameters when ``method path`` takes this route, else None."""
        if self.method not in ("ANY", method.upper()):
            return None
        parts = []
        for segment in self.path.strip("/").split("/"):
            parameter = re.fullmatch(r"\{(\w+)(\+?)\}", segment)
            if parameter is None:
                parts.append(re.escape(segment))
            else:  # {name} is one segment, {name+} the rest of the path
                parts.append(f"(?P<{parameter[1]}>{'.+' if parameter[2] else '[^/]+'})")
        pattern = "/" + "/".join(parts)
        found = re.fullmatch(pattern, path)
        return {name: unquote(value) for name, value in found.groupdict().items()} if found else None


def http_routes(stack: StackResources) -> list[HttpRoute]:
    """Every HttpApi route of the template; literal paths before templated ones, as API Gateway prefers.

    A route's authorizer is, as SAM decides it: the ``security`` its operation has in the API's
    ``DefinitionBody`` (intrinsics resolved: a parameter may open or close it), else the event's
    ``Auth.Authorizer``, else the API's ``DefaultAuthorizer``; ``NONE`` means open.
    """
    routes = []
    for logical_id, resource in stack.resources_of_type("AWS::Serverless::Function").items():
        for event in resource.get("Properties", {}).get("Events", {}).values():
            if event.get("Type") == "HttpApi":
                properties = event.get("Properties", {})
                method = str(stack.resolve(properties.get("Method", "ANY"))).upper()
                path = str(stack.resolve(properties.get("Path", "/{proxy+}")))
                authorizer = _route_authorizer(stack, properties, method, path)
                routes.append(HttpRoute(logical_id, method, path, None if authorizer == "NONE" else authorizer))
    return sorted(routes, key=lambda route: (route.path.count("{"), route.method == "ANY", -len(route.path)))


def _route_authorizer(stack: StackResources, event: dict[str, Any], method: str, path: str) -> str | None:
    api = stack.template["Resources"].get(str((event.get("ApiId") or {}).get("Ref", "")), {}).get("Properties", {})
    operation = (api.get("DefinitionBody") or {}).get("paths", {}).get(path, {}).get(method.lower())
    security = (stack.resolve(operation) or {}).get("security") if operation else None
    if security:
        return str(next(iter(security[0])))
    default = (api.get("Auth") or {}).get("DefaultAuthorizer")
    return (event.get("Auth") or {}).get("Authorizer", default)
