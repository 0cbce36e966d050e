# Every target creates the virtualenv and installs the pinned dependencies if needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: venv dev test lint unit build deploy clean

$(STAMP): requirements-dev.txt constraints.txt layers/hilos_runner/requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

## make dev: the whole stack on 127.0.0.1 (moto, Hilos sandbox, HTTP front, SQS poller); Ctrl-C stops it.
## Flags go in ARGS, e.g. make dev ARGS="--fault-rate 0.2 --visibility-timeout 5"; see python -m local --help
dev: $(STAMP)
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

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

## make build / deploy: need the AWS SAM CLI on PATH (https://docs.aws.amazon.com/serverless-application-model/)
build:
	sam build

deploy: build
	sam deploy --config-env $${ENV:-dev}

clean:
	rm -rf $(VENV) .aws-sam .local .pytest_cache .mypy_cache .ruff_cache
