"""Prints the fuzz figures (cases per test and outcome) at the end of the session."""

from typing import Any

from tests.fuzz.budget import FIGURES, TOTAL


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section(f"fuzz figures (budget FUZZ_EXAMPLES={TOTAL})")
    for test, outcomes in sorted(FIGURES.items()):
        details = ", ".join(f"{outcome} {number}" for outcome, number in sorted(outcomes.items()))
        terminalreporter.write_line(f"{test}: {sum(outcomes.values())} cases ({details})")
    api = [outcomes for test, outcomes in FIGURES.items() if test.startswith("api:")]
    if api:
        requests = sum(sum(outcomes.values()) for outcomes in api)
        server_errors = sum(
            number for outcomes in api for outcome, number in outcomes.items() if str(outcome).startswith("5")
        )
        terminalreporter.write_line(f"api total: {requests} requests, {server_errors} 5xx")
