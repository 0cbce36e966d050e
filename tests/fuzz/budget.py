"""How many generated cases the fuzz tests run, and the figures they report.

`make test` runs a few hundred (FUZZ_EXAMPLES unset: the defaults below); `make fuzz` sets FUZZ_EXAMPLES=10000,
shared out by weight among the fuzz tests. Each test adds what it did to FIGURES; tests/fuzz/conftest.py prints
them at the end of the session."""

import os
from collections import Counter

_DEFAULT_TOTAL = 400
TOTAL = int(os.environ.get("FUZZ_EXAMPLES", _DEFAULT_TOTAL))
# make fuzz (FUZZ_EXAMPLES set): schemathesis runs every phase; make test: the examples and fuzzing phases only.
FULL_RUN = "FUZZ_EXAMPLES" in os.environ
# Shares of the total: the API (schemathesis's fuzzing phase; its other phases add their own cases) and the models.
SHARES = {"models_accepted": 0.12, "models_refused": 0.12, "models_unknown_fields": 0.06, "api": 0.7}

FIGURES: dict[str, Counter[str]] = {}


def examples(share: str, parts: int = 1) -> int:
    return max(10, round(TOTAL * SHARES[share] / parts))


def count(test: str, outcome: str, number: int = 1) -> None:
    FIGURES.setdefault(test, Counter())[outcome] += number
