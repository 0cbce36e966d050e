# Every target creates the virtualenv and installs the pinned dependencies if needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
LOCAL_STAMP := $(VENV)/.local-stamp
STAMP := $(VENV)/.installed-stamp

.PHONY: venv dev test lint unit bench build deploy clean chaos fuzz checkov

# Two steps, so that `make dev` on a fresh clone waits only for what the stack needs: $(LOCAL_STAMP) installs
# requirements-local.txt, $(STAMP) (every other target) adds the rest of requirements-dev.txt to the same venv.
# The venv's own pip installs only uv (requirements-bootstrap.txt); uv installs the same exact pins
# (constraints.txt) in seconds where pip took most of a minute, and compiles the bytecode as pip did.
# uv reads PyPI, not pip's configuration: behind a mirror, export UV_DEFAULT_INDEX.
$(LOCAL_STAMP): requirements-bootstrap.txt requirements-local.txt constraints.txt layers/hilos_runner/requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-bootstrap.txt
	$(UV) pip install --quiet --compile-bytecode --python $(PY) -r requirements-local.txt -c constraints.txt -e .
	touch $(LOCAL_STAMP)

$(STAMP): $(LOCAL_STAMP) requirements-dev.txt
	$(UV) pip install --quiet --compile-bytecode --python $(PY) -r requirements-dev.txt -c constraints.txt -e .
	touch $(STAMP)

venv: $(STAMP)

## make dev: the whole stack on 127.0.0.1 (moto, Hilos sandbox, HTTP front, SQS poller); Ctrl-C stops it.
## Flags go in ARGS, e.g. make dev ARGS="--fault-rate 0.2 --visibility-timeout 5"; see python -m local --help
dev: $(LOCAL_STAMP)
	$(PY) -m local $(ARGS)

## make test: lint, type-check, then every test (unit, integration, template, e2e)
test: lint
	$(PY) -m pytest -n 2 --dist loadfile -q

## make lint: ruff, mypy and cfn-lint
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/cfn-lint template.yaml
	$(MAKE) --no-print-directory checkov

## make chaos: 1,000 queued runs through the local stack under a 30 % mix of Hilos faults; prints the
## figures and fails unless 0 runs are lost and 0 started twice (tests/reliability/chaos.py). RUNS=n for another size.
chaos: $(STAMP)
	$(PY) -m tests.reliability.chaos --runs $${RUNS:-1000}

## make fuzz: 10,000 generated cases: hypothesis properties of the run models (vs the Hilos schema) and
## schemathesis against the API's OpenAPI through the local stack's HTTP front; prints the figures.
fuzz: $(STAMP)
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-10000} $(PY) -m pytest -q -s tests/fuzz

## checkov lives in its own virtualenv (.venv/checkov): its dependency pins conflict with the project's.
CHECKOV_STAMP := $(VENV)/checkov/.installed-stamp
# Installed by the project venv's uv (7 s, against 48 s with pip).
$(CHECKOV_STAMP): requirements-checkov.txt $(LOCAL_STAMP)
	test -x $(VENV)/checkov/bin/python || $(PYTHON) -m venv --without-pip $(VENV)/checkov
	$(UV) pip install --quiet --python $(VENV)/checkov/bin/python -r requirements-checkov.txt
	touch $(CHECKOV_STAMP)

checkov: $(CHECKOV_STAMP)
	$(VENV)/checkov/bin/checkov --quiet --compact --skip-download --framework cloudformation -f template.yaml

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

## make bench: cold starts, warm overhead, waste counters, batch concurrency, 10,000 contacts end to end and
## layer size, each against a baseline measured in the same run: one table on stdout, the same as JSON in
## .local/bench.json, progress on stderr (a few minutes). Options in ARGS, e.g. ARGS="--only cold,warm --pairs 9"
bench: $(STAMP)
	$(PY) -m bench $(ARGS)

## make build / deploy: need the AWS SAM CLI on PATH (https://docs.aws.amazon.com/serverless-application-model/)
build:
	sam build

deploy: build
	sam deploy --config-env $${ENV:-dev}

clean:
	rm -rf $(VENV) .aws-sam .local .pytest_cache .mypy_cache .ruff_cache
