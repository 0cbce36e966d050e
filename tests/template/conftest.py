"""The template as written and as SAM translates it, once per test module."""

from typing import Any

import pytest

from local.template import load_template
from tests.template.sam_template import translate


@pytest.fixture(scope="module")
def source() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def translated(source: dict[str, Any]) -> dict[str, Any]:
    return translate(source)
