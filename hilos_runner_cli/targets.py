"""Where a command goes, and the AWS clients that reach it.

A queue or API is given (``--queue-url``, ``--api-url``), read from a deployed stack's outputs (``--stack-name``), or
taken from the local stack's ``.local/stack.json`` (``make dev`` writes it). A queue on the local stack's AWS
endpoint is reached with the endpoint, region and credentials the stack file names, so the local stack needs no
AWS configuration on this machine; any other queue with the AWS configuration's (the region read from an
``sqs.REGION.amazonaws.com`` URL when none is configured).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_STACK_FILE = Path(".local/stack.json")
_SQS_HOST = re.compile(r"^sqs[.-](?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")
_NO_REGION = "no AWS region: give --region, or set AWS_REGION (or a region in your AWS configuration)"


class CliError(Exception):
    """A problem to tell the user in one line (exit status 2)."""


def read_local_stack(path: Path) -> dict[str, Any] | None:
    """The local stack's description, None when there is none."""
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        raise CliError(f"{path} is not valid JSON") from None
    return dict(info) if isinstance(info, dict) else None


def require_local_stack(path: Path, needs: str, given: str) -> dict[str, Any]:
    """The local stack's description, which must name ``needs``; ``given`` says what else the user could pass."""
    info = read_local_stack(path)
    if info is None:
        raise CliError(f"no {given} given and no local stack ({path}); start it with make dev")
    if not info.get(needs):
        raise CliError(f"{path} names no {needs}")
    return info


@dataclass(frozen=True)
class Aws:
    """How to reach AWS: a region, and for the local stack its endpoint and fake credentials."""

    region: str | None
    endpoint_url: str | None = None
    credentials: dict[str, str] = field(default_factory=dict)  # aws_access_key_id, aws_secret_access_key

    def client(self, service: str) -> Any:
        import boto3

        if not self.region:
            raise CliError(_NO_REGION)
        return boto3.client(service, region_name=self.region, endpoint_url=self.endpoint_url, **self.credentials)


def configured_region(given: str | None) -> str | None:
    """--region, else the AWS configuration's (AWS_REGION, AWS_DEFAULT_REGION, the profile's)."""
    if given:
        return given
    import boto3

    region: str | None = boto3.session.Session().region_name
    return region


def local_aws(info: dict[str, Any], region: str | None = None) -> Aws:
    """The local stack's AWS endpoint (moto, or its AWS_ENDPOINT_URL), as its stack file describes it."""
    credentials = info.get("aws_credentials") or {}
    return Aws(region or info.get("aws_region"), info.get("aws_endpoint_url"), dict(credentials))


def aws_for_url(url: str, region: str | None, stack_file: Path) -> Aws:
    """How to reach the queue at ``url``: through the local stack when it is on its endpoint, else AWS."""
    info = read_local_stack(stack_file)
    endpoint = (info or {}).get("aws_endpoint_url")
    if info is not None and endpoint and urlsplit(url).netloc == urlsplit(endpoint).netloc:
        return local_aws(info, region)
    found = _SQS_HOST.match(urlsplit(url).hostname or "")
    return Aws(region or configured_region(None) or (found["region"] if found else None))


def stack_output(stack_name: str, region: str | None, key: str) -> str:
    """Output ``key`` of the deployed CloudFormation stack ``stack_name``."""
    from botocore.exceptions import BotoCoreError, ClientError

    region = configured_region(region)
    if not region:
        raise CliError(f"--stack-name {stack_name} needs a region: give --region, or set AWS_REGION")
    try:
        (stack,) = Aws(region).client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    except (ClientError, BotoCoreError) as exc:
        raise CliError(f"cannot read stack {stack_name!r}: {exc}") from None
    for output in stack.get("Outputs", []):
        if output["OutputKey"] == key:
            return str(output["OutputValue"])
    raise CliError(f"stack {stack_name!r} has no {key} output")


def queue(queue_url: str | None, stack_name: str | None, region: str | None, stack_file: Path) -> tuple[str, Aws]:
    """The runs queue's URL and how to reach it: --queue-url, --stack-name's RunsQueueUrl, or the local stack's."""
    if queue_url:
        return queue_url, aws_for_url(queue_url, region, stack_file)
    if stack_name:
        url = stack_output(stack_name, region, "RunsQueueUrl")
        return url, aws_for_url(url, region, stack_file)
    info = require_local_stack(stack_file, "queue_url", "--queue-url or --stack-name")
    return str(info["queue_url"]), local_aws(info, region)


def aws_problem(exc: Exception) -> str | None:
    """An AWS error as one line for a person, or None when ``exc`` is not one."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"AWS refused {exc.operation_name}: {error.get('Code', 'error')}: {error.get('Message', '')}".strip()
    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials: configure them (aws configure, AWS_PROFILE, or AWS_ACCESS_KEY_ID and its secret)"
    if isinstance(exc, NoRegionError):
        return _NO_REGION
    if isinstance(exc, BotoCoreError):
        return f"AWS: {exc}"
    return None
