"""template.yaml as SAM translates it (offline, with samtranslator), and ways to walk it: resources of a type,
the branches of an Fn::If, what a value refers to, the statements of every inline policy. Shared by the
template tests."""

import copy
import json
import re
import tomllib
from collections.abc import Iterator
from typing import Any

import pytest

from local.template import TEMPLATE_PATH, StackResources

ROOT = TEMPLATE_PATH.parent
SAMCONFIG_PATH = ROOT / "samconfig.toml"
# The stacks samconfig.toml deploys (dev and prod), possibly into one account.
DEPLOYED_STACKS = [
    tomllib.loads(SAMCONFIG_PATH.read_text())[environment]["global"]["parameters"]["stack_name"]
    for environment in ("dev", "prod")
]


class _NoManagedPolicies:
    """samtranslator's managed-policy loader, offline: the template names managed policies by ARN only."""

    def load(self) -> dict[str, str]:
        return {}


def translate(template: dict[str, Any], parameter_values: dict[str, Any] | None = None) -> dict[str, Any]:
    """The CloudFormation template SAM would deploy; local CodeUri/ContentUri become S3 URIs as `sam package` does."""
    from samtranslator.translator.transform import transform

    packaged = copy.deepcopy(template)
    for resource in packaged["Resources"].values():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str) and not properties[key].startswith("s3://"):
                properties[key] = f"s3://bucket/{properties[key]}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        return dict(transform(packaged, parameter_values or {}, _NoManagedPolicies()))


def resources_of(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == resource_type}


def alternatives(value: Any) -> Iterator[Any]:
    """Each value a property may take: both branches of every Fn::If."""
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        for branch in value["Fn::If"][1:]:
            yield from alternatives(branch)
    else:
        yield value


def references(value: Any) -> set[str]:
    """Logical ids and parameters a value refers to (Ref, Fn::GetAtt, Fn::Sub), pseudo parameters left out."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, argument in value.items():
            if key == "Ref":
                found.add(argument)
            elif key == "Fn::GetAtt":
                found.add(argument[0] if isinstance(argument, list) else argument.split(".")[0])
            elif key == "Fn::Sub":
                text, variables = (argument, {}) if isinstance(argument, str) else argument
                names = {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text)} - set(variables)
                found |= names | references(list(variables.values()))
            else:
                found |= references(argument)
    elif isinstance(value, list):
        for item in value:
            found |= references(item)
    return {name for name in found if not name.startswith("AWS::")}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def inline_statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for role_name, role in resources_of(template, "AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            for statement in as_list(policy["PolicyDocument"]["Statement"]):
                yield f"{role_name}/{policy['PolicyName']}/{statement.get('Sid', '')}", statement


def global_variable(source: dict[str, Any], name: str) -> Any:
    """A variable of every function's environment (the template's Globals)."""
    return source["Globals"]["Function"]["Environment"]["Variables"][name]


def stack(source: dict[str, Any], stack_name: str = "hilos-runner-test", **parameters: str) -> StackResources:
    """The template's intrinsics resolved against parameter values (defaults otherwise), no AWS involved."""
    defaults = {name: str(spec.get("Default", "")) for name, spec in source["Parameters"].items()}
    return StackResources(source, stack_name, {**defaults, **parameters})


def granted(translated: dict[str, Any], role: str) -> set[tuple[str, str]]:
    """(action, resource) of every inline statement of ``role``, both branches of every Fn::If."""
    grants = set()
    for where, statement in inline_statements(translated):
        if not where.startswith(f"{role}/"):
            continue
        for action in as_list(statement["Action"]):
            for resource in as_list(statement["Resource"]):
                for value in alternatives(resource):
                    grants.add((action, _resource_name(value)))
    return grants


def _resource_name(value: Any) -> str:
    text = json.dumps(value)
    if "event-bus/" in text:
        return "event-bus"
    names = references(value) - {"ExistingTokenSecretArn", "CompletionEventBusName"}
    (name,) = names or {"ExistingTokenSecret"}
    index = text.split("/index/")[1].split('"')[0] if "/index/" in text else None
    return f"{name}/index/{index}" if index else name


def role_of(translated: dict[str, Any], function: str) -> str:
    for name, resource in resources_of(translated, "AWS::Lambda::Function").items():
        if name == function:
            return str(resource["Properties"]["Role"]["Fn::GetAtt"][0])
    raise AssertionError(function)
