"""factories.reset() forgets every cached client, service and setting: none can be missed."""

import importlib
import pkgutil
from functools import _lru_cache_wrapper
from typing import Any

import pytest

import hilos_runner
from hilos_runner import factories


def _layer_modules() -> list[Any]:
    return [
        importlib.import_module(f"hilos_runner.{info.name}") for info in pkgutil.iter_modules(hilos_runner.__path__)
    ]


def test_every_cached_function_of_the_layer_is_registered_for_reset():
    cached = {
        f"{module.__name__}.{name}": value
        for module in _layer_modules()
        for name, value in vars(module).items()
        if isinstance(value, _lru_cache_wrapper) and value.__module__ == module.__name__
    }
    assert "hilos_runner.settings.get_settings" in cached  # the scan sees what it must
    assert "hilos_runner.idempotency.idempotency_config" in cached
    missed = [name for name, value in cached.items() if not any(value is known for known in factories.CACHED_FACTORIES)]
    assert not missed, f"cached with functools, not factories.cached: reset() would miss {missed}"


def test_reset_clears_a_newly_cached_factory(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(factories, "CACHED_FACTORIES", list(factories.CACHED_FACTORIES))
    built: list[object] = []

    @factories.cached
    def new_service() -> object:
        built.append(object())
        return built[-1]

    first = new_service()
    assert new_service() is first  # cached
    factories.reset()
    assert new_service() is not first
    assert len(built) == 2


def test_reset_empties_every_cache(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HILOS_TOKEN_SECRET_ID", "hilos-token")
    factories.aws_client("sqs")
    factories.record_executor()
    assert factories.aws_client.cache_info().currsize == 1
    factories.reset()
    assert all(factory.cache_info().currsize == 0 for factory in factories.CACHED_FACTORIES)
