"""Shared code of hilos-runner, the layer of every function.

From a handler to the logic in two named hops: ``functions/*/<handler>.py`` → a service (``runs``, ``bulk``,
``worker``, ``sync``, ``retries``, behind ``idempotency`` for keyed work) → data access (``execution_store``,
``hilos``, ``queue_sender``). Handlers get services from ``factories``. The ``hilos-runner`` CLI is outside the layer
(``hilos_runner_cli``).

Module map, one line each:

Entry support
- ``api``: run_api's HTTP side alone: JSON answers, the error shape and status table, body guard, OpenAPI/Swagger.
- ``factories``: where every client and service is built, once per process; ``reset()`` clears them all.
- ``idempotency``: a keyed run or bulk submit happens at most once (Powertools idempotency, its errors mapped).
- ``priming``: SnapStart hooks (what a first request builds, before the snapshot; the token after a restore).
- ``observability``: Powertools Logger, Metrics and Tracer, and log keys per record.
- ``settings``: the environment, read once into a validated ``Settings``.

Services (logic)
- ``runs``: start one run: record (SENDING), call Hilos, record the outcome.
- ``bulk``: split a bulk run into queued chunks, and follow its chunks' progress.
- ``worker``: one SQS record: validate, start (once), acknowledge or retry later.
- ``sync``: the status sync: bring records up to date with Hilos and announce finished runs.
- ``reconcile``: settle runs whose answer from Hilos was lost, from Hilos' own lists.
- ``retries``: a new run (or bulk run) for the failed contacts of a finished one.
- ``contact_outcomes``: each contact's outcome of a finished run, read from Hilos once and kept.
- ``intake``: API requests as commands, and dry runs.
- ``completion_events``: the EventBridge events of finished runs and bulk runs.
- ``lease``: one holder at a time for a job (the status sync's pass).
- ``scheduling``: runs with a ``start_at``: recorded SCHEDULED, started by a one-time EventBridge Scheduler schedule
  through the guarded path, canceled before their time (``ScheduleClient`` is its data access).

Contracts and input
- ``models``: Hilos' request and response models, and the run options and key pattern every entry shares.
- ``messages``: the queued message (``QueuedRun``) and a bulk contact list (``BulkRunRequest``).
- ``execution_records``: the execution record model, its statuses, and the one way to change it.
- ``errors``: domain errors (retryable or not, outcome unknown or not) and validation details.
- ``contacts_input``: a bulk contact list read from JSON or CSV, every contact checked first.
- ``json_input``: a strict JSON reader (depth, NaN, big numbers, duplicate keys, NUL refused).
- ``duplicates``: repeated contacts (same phone or id) dropped or refused.
- ``chunking``: contact lists in chunks, and messages packed into SQS batches.
- ``matching``: a run's contacts as a digest comparable with Hilos' executions.
- ``phones``, ``phone_data``: phone numbers checked and normalised (E.164).
- ``cursors``: opaque cursors of paged listings.

Data access
- ``execution_store``: the executions table in DynamoDB (records, kept bodies, listings, sync index).
- ``hilos``: ``HilosClient``: one pooled session, timeouts, Hilos' answers as domain errors.
- ``credentials``: the Hilos token from Secrets Manager, cached, refreshed once on a 401.
- ``queue_sender``: messages onto the runs queue (SendMessageBatch), and a record's redelivery delayed.
"""
