"""``hilos-runner``: the command line for people holding a contact file, and for maintainers.

    hilos-runner enqueue --flow-id UUID [--queue-url URL | --stack-name NAME] [--region REGION] [--chunk-size N]
                         [--has-priority] [--variables JSON] [--idempotency-key KEY]
                         [--on-duplicate drop|reject] [--dry-run] contacts.csv|.json
    hilos-runner events [--queue-url URL] [--run-id RUN_ID] [--wait SECONDS]
    hilos-runner contacts RUN_ID [--status FAILED[,EXPIRED]] [--api-url URL | --stack-name NAME] > contacts.csv
    hilos-runner retry RUN_ID [--status FAILED,EXPIRED] [--idempotency-key KEY] [--api-url URL | --stack-name NAME]
    hilos-runner schema [--event | --bulk-event] [--output schemas/queued-run.schema.json]

Not part of the Lambda layer (tools/check_build.py fails a build that ships it): it is installed with the project
(`.venv/bin/hilos-runner`, pyproject.toml's console script) and uses the layer's own readers and models, so a file
it accepts is one the bulk API accepts.

Modules, one job each:
- ``main``: the arguments, and what a problem becomes (one line on stderr, a non-zero exit; never a traceback);
- ``targets``: where a command goes (``.local/stack.json`` of ``make dev``, a CloudFormation stack's outputs, a URL)
  and the AWS clients that reach it (endpoint, region and credentials);
- ``queue_commands``: ``enqueue`` (a contact file onto the runs queue), ``events`` (completion events on a queue),
  ``schema``;
- ``api_commands``: ``contacts`` and ``retry``, through the run API.
"""
