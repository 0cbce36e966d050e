"""run_api's SnapStart hooks (hilos_runner.priming): before the snapshot they build what a first request needs
but read no token, call no AWS API and open no connection; after a restore they read the token, fresh."""

from collections import Counter
from typing import Any

import pytest

from tests.fake_hilos import FakeHilos, reply
from tests.helpers import FLOW_ID, call_run_api, hilos_execution, run_body


@pytest.fixture
def aws_calls(aws: Any, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every AWS API request sent (not those the priming's Stubber answers), by operation name."""
    import botocore.endpoint

    calls: Counter[str] = Counter()
    original = botocore.endpoint.Endpoint.make_request

    def counting(self: Any, operation_model: Any, request_dict: dict[str, Any]) -> Any:
        calls[operation_model.name] += 1
        return original(self, operation_model, request_dict)

    monkeypatch.setattr(botocore.endpoint.Endpoint, "make_request", counting)
    return calls


def hooks() -> tuple[list[Any], list[Any]]:
    from snapshot_restore_py import get_after_restore, get_before_snapshot

    import run_api  # noqa: F401  (registers the hooks at import, as in Lambda's init)

    return get_before_snapshot(), get_after_restore()


def run(registered: list[Any]) -> None:
    for hook, args, kwargs in registered:
        hook(*args, **kwargs)


def test_run_api_registers_the_priming_and_the_restore_hooks():
    from hilos_runner import priming

    before, after = hooks()
    assert priming.prime_api in [hook for hook, _, _ in before]
    assert priming.after_restore in [hook for hook, _, _ in after]


def test_priming_calls_nothing_outside_and_the_restore_reads_the_token_once(aws_calls: Counter[str], hilos: FakeHilos):

    before, after = hooks()
    run(before)
    assert aws_calls == Counter()  # no token read, no AWS call
    assert len(hilos.calls) == 0  # no Hilos request (nor any other through requests)

    run(after)
    assert aws_calls == Counter({"GetSecretValue": 1})

    hilos.answer_runs(reply(201, hilos_execution()))
    assert call_run_api("POST", f"/flows/{FLOW_ID}/runs", run_body(1)).status == 201
    assert aws_calls["GetSecretValue"] == 1  # the first request used the token read at restore
