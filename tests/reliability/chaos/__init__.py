"""The fault run (`make chaos`): queued and API runs through the local stack while the Hilos sandbox misbehaves,
then until reconciliation has settled every run whose answer was lost.

The sandbox answers a share of all Hilos run calls (FAULT_RATE, 30 %) with an even mix of 500, 503, 429 with
Retry-After, and both sides of ambiguity: answers lost *after* Hilos created the execution (a connection reset,
an answer slower than the client's read timeout) and lost *before* it did (the same two, nothing created). The
same plan faults Hilos' list reads that reconciliation makes. A few runs are made to fail on purpose, so every
outcome shows up: some target a flow Hilos refuses (400: REJECTED), some are not valid QueuedRun messages
(REJECTED by the worker), some target a flow that is down for good (every call 503: they end in the DLQ).
API runs go in at the same time with an Idempotency-Key each, retried with the same key on 409/503 as a client
should.

Afterwards every run is looked up where it can be, not assumed:

- its execution record (DynamoDB; queued runs' record ids are derived from the SQS message id, as the worker
  does; API runs' come from the answer);
- its message: still on the runs queue or in the dead-letter queue (SQS);
- the sandbox's executions per contact list (each run has its own phone), with their ids;
- the completion events the status sync published (a rule on the bus feeds a local queue).

A run is **unknown** while its record awaits reconciliation (UNKNOWN, SENDING, or known not started and
waiting to be resent); **lost** when it has no final record, is not in the DLQ and its message is not on the
queue; a **duplicate** is a contact list Hilos started more than once; a run **started without a Hilos id** is
one Hilos created an execution for whose record does not hold that execution's id. The run holds when, after
settling, unknown = lost = duplicates = started without an id = 0, and every finished run was announced
exactly once.

`python -m tests.reliability.chaos --runs 1000` (what `make chaos` runs: __main__.py) starts its own stack on free
127.0.0.1 ports and stops it at the end; every wait is bounded by a deadline.

Its parts: plan.py (the runs and the faults), drive.py (through a running stack), report.py (the figures, and
whether the run holds).
"""
