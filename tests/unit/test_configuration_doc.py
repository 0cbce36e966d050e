"""docs/configuration.md is generated from the Settings model and template.yaml: it must be current, and
every setting and parameter must say what it is for."""

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tools"))

import configuration_doc  # noqa: E402  (tools/ is not a package)


def test_the_configuration_doc_is_current():
    written = (REPO_ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert written == configuration_doc.document_text(), "docs/configuration.md is stale: run `make docs`"


def test_every_setting_has_a_description():
    settings = configuration_doc.load_settings_model()
    missing = [name for name, field in settings.model_fields.items() if not (field.description or "").strip()]
    assert missing == []


def test_every_template_parameter_has_a_description():
    parameters = configuration_doc.load_template()["Parameters"]
    assert [name for name, spec in parameters.items() if not spec.get("Description", "").strip()] == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"Ref": "RecordTtlDays"}, "parameter `RecordTtlDays`"),
        ({"Ref": "ExecutionsTable"}, "the stack's `ExecutionsTable`"),
        ({"Ref": "AWS::StackName"}, "`AWS::StackName`"),
        ({"Fn::If": ["On", "a", {"Ref": "RecordTtlDays"}]}, "`a` if `On`, else parameter `RecordTtlDays`"),
        ("INFO", "`INFO`"),
    ],
)
def test_how_the_template_sets_a_variable_is_said_in_words(value: object, expected: str):
    assert configuration_doc.source_of(value, {"RecordTtlDays": {}}) == expected


def test_a_variable_set_for_one_function_names_it():
    template = {
        "Parameters": {"WorkerConcurrency": {}},
        "Globals": {"Function": {"Environment": {"Variables": {"A": "1"}}}},
        "Resources": {
            "Worker": {
                "Type": "AWS::Serverless::Function",
                "Properties": {"Environment": {"Variables": {"B": {"Ref": "WorkerConcurrency"}}}},
            }
        },
    }
    assert configuration_doc.template_variables(template) == {
        "A": ("`1`", []),
        "B": ("parameter `WorkerConcurrency`", ["Worker"]),
    }
