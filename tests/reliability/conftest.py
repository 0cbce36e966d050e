"""The reliability tests use the integration tests' fixtures (moto stack from template.yaml, worker env)."""

from tests.integration.conftest import runs_queue, worker

__all__ = ["runs_queue", "worker"]
