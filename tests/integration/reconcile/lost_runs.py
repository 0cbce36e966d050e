"""What the reconciliation tests share: the functions' short timeouts, a run's record, waiting past one call budget,
and a run whose answer Hilos lost."""

import time
from typing import Any

from tests.fake_hilos import FakeHilos
from tests.helpers import FLOW_ID, call_run_api, run_body

# Short timeouts: one call budget is 0.2 s, and the grace period before a resend is over at once.
QUICK = {
    "HILOS_CONNECT_RETRIES": "0",
    "HILOS_CONNECT_TIMEOUT_SECONDS": "0.1",
    "HILOS_READ_TIMEOUT_SECONDS": "0.1",
    "HILOS_STATUS_READ_TIMEOUT_SECONDS": "0.1",
    "WORKER_CALL_MARGIN_SECONDS": "0",
    "RECONCILE_GRACE_SECONDS": "0",
}
CALL_BUDGET_SECONDS = 0.2


def record(run_id: str) -> Any:
    from hilos_runner import factories

    found = factories.execution_store().get(run_id)
    assert found is not None
    return found


def past_the_call_budget() -> None:
    time.sleep(CALL_BUDGET_SECONDS + 0.05)


def lost_run(fake: FakeHilos, fate: str, body: dict[str, Any] | None = None, **headers: str) -> str:
    """Start a run through the API (one contact unless ``body``) whose answer Hilos loses (``fate``); its run id."""
    fake.lose_next.append(fate)
    answer = call_run_api("POST", f"/flows/{FLOW_ID}/runs", body or run_body(), headers=headers or None)
    assert answer.status == 504, answer.body
    assert answer.body["code"] == "hilos_outcome_unknown"
    return str(answer.body["run_id"])
