"""template.yaml's function settings, as written and as SAM translates it: every handler is a function of its code
directory, the Hilos path parameters are valid settings, each stack gives its functions its own service name, and a
refresh with every status read retry fits run_api's timeout."""

import os
import re
from typing import Any

import pytest

# Imported here, before any test applies a function's environment: Powertools' Logger takes its name from
# POWERTOOLS_SERVICE_NAME when first built, and one first built inside a test (after the token guard of
# tests/conftest.py attached its handler to the root logger) adds a filter that hides its records from
# that handler for the rest of that test.
from hilos_runner import observability
from hilos_runner.errors import ConfigurationError
from hilos_runner.settings import Settings
from local.stack_resources import create_stack_resources
from local.template import StackResources
from tests.template.sam_template import (
    DEPLOYED_STACKS,
)

FUNCTIONS = ["RunApiFunction", "BulkWorkerFunction", "StatusSyncFunction"]


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


def test_a_refresh_with_every_status_read_retry_fits_run_apis_timeout(source: dict[str, Any]):
    from hilos_runner.settings import Settings

    # GET /runs/{id}?refresh=true reads Hilos inside run_api: all its attempts must end before the
    # function's Timeout (itself under API Gateway's 30 s), or a slow Hilos becomes a gateway timeout.
    settings = Settings()
    worst_read = settings.hilos_status_read_budget_seconds - settings.worker_call_margin_seconds
    assert worst_read < source["Resources"]["RunApiFunction"]["Properties"]["Timeout"] < 30
