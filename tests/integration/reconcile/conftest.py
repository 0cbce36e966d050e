"""The reconciliation tests' Hilos: the fake, listing two per page, behind the functions' short timeouts (QUICK)."""

from typing import Any

import pytest

from tests.fake_hilos import FakeHilos
from tests.integration.reconcile.lost_runs import QUICK


@pytest.fixture
def hilos_lists(aws: Any, hilos: FakeHilos, monkeypatch: pytest.MonkeyPatch) -> FakeHilos:
    from hilos_runner import factories

    for name, value in QUICK.items():
        monkeypatch.setenv(name, value)
    factories.reset()
    hilos.page_size = 2
    return hilos
