# Every target installs what it needs first, from the lock files, in a second or two when nothing changed.
# Python 3.13, the Lambda runtime's, for everything: tools/find-python finds it (PATH, pyenv, uv) or says how
# to get it; `make test PYTHON=/path/to/python3.13` picks one.
PYTHON313 := $(shell PYTHON='$(PYTHON)' tools/find-python 2>/dev/null)
# uv installs every environment from a lock: .venv from uv.lock (pyproject.toml's dependency groups),
# .tools/checkov and .tools/sam from tools/*/uv.lock. It is installed once, at the version pyproject.toml requires.
UV_VERSION := $(shell sed -n 's/^required-version = "==\(.*\)"/\1/p' pyproject.toml)
UV_HOME := .tools/uv-$(UV_VERSION)
UV := $(UV_HOME)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
SAM := .tools/sam/bin/sam
# uv reads PyPI, not pip's configuration: behind a mirror, export UV_DEFAULT_INDEX.
export UV_PYTHON := $(PYTHON313)
export UV_PYTHON_DOWNLOADS := never
export UV_COMPILE_BYTECODE := 1
export SAM_CLI_TELEMETRY := 0
SYNC = $(UV) sync --locked --quiet
# A tool's own environment from its own lock: $(call tool_env,checkov)
tool_env = UV_PROJECT_ENVIRONMENT=$(CURDIR)/.tools/$(1) $(SYNC) --project tools/$(1)

.PHONY: venv dev test lint unit bench build deploy clean chaos fuzz checkov sam-check lock python openapi docs

python:
	@test -n "$(PYTHON313)" || { PYTHON='$(PYTHON)' tools/find-python; exit 1; }

$(UV): | python
	$(PYTHON313) -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
		--target $(UV_HOME) uv==$(UV_VERSION)

## make venv: .venv with every dependency group (uv sync: exactly the lock; a venv of another Python is remade)
venv: python $(UV)
	$(SYNC)

## make dev: the whole stack on 127.0.0.1 (moto, Hilos sandbox, HTTP front, SQS poller); Ctrl-C stops it.
## Flags go in ARGS, e.g. make dev ARGS="--fault-rate 0.2 --visibility-timeout 5"; see python -m local --help
## Installs only the local group (and keeps what else .venv has), so a fresh clone is up in seconds.
dev: python $(UV)
	$(SYNC) --inexact --no-default-groups --group local
	$(PY) -m local $(ARGS)

## make test: lint, type-check, SAM (validate, build, checks of the build), then every test
test: lint sam-check
	$(PY) -m pytest -n 2 --dist loadfile -q

## make lint: ruff, mypy, cfn-lint and checkov
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/cfn-lint template.yaml
	$(MAKE) --no-print-directory checkov

## make chaos: 1,000 queued runs through the local stack under a 30 % mix of Hilos faults; prints the
## figures and fails unless 0 runs are lost and 0 started twice (tests/reliability/chaos/). RUNS=n for another size.
chaos: venv
	$(PY) -m tests.reliability.chaos --runs $${RUNS:-1000}

## make fuzz: 10,000 generated cases: hypothesis properties of the run models (vs the Hilos schema) and
## schemathesis against the API's OpenAPI through the local stack's HTTP front; prints the figures.
fuzz: venv
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-10000} $(PY) -m pytest -q -s tests/fuzz

## checkov in its own environment (.tools/checkov, tools/checkov/uv.lock): its pins conflict with the project's.
checkov: python $(UV)
	$(call tool_env,checkov)
	.tools/checkov/bin/checkov --quiet --compact --skip-download --framework cloudformation -f template.yaml

unit: venv
	$(PY) -m pytest -q tests/unit

## make bench: cold starts (venv and as deployed), SnapStart, warm overhead, waste counters, batch concurrency,
## 10,000 contacts end to end and layer size, each against a baseline measured in the same run: one table on
## stdout, the same as JSON in .local/bench.json, progress on stderr (a few minutes). Options in ARGS, e.g.
## ARGS="--only cold,warm --pairs 9"
bench: venv
	$(PY) -m bench $(ARGS)

## make lock: after editing a dependency in pyproject.toml or tools/*/pyproject.toml: the lock files and the
## layer's requirements.txt (what `sam build` installs), generated from uv.lock.
lock: python $(UV)
	$(UV) lock --quiet
	$(UV) lock --quiet --project tools/checkov
	$(UV) lock --quiet --project tools/sam
	$(UV) export --quiet --frozen --no-default-groups --no-emit-project --format requirements-txt --no-annotate \
		-o layers/hilos_runner/requirements.txt

## The pinned AWS SAM CLI (tools/sam/uv.lock) in .tools/sam. `sam build` runs the layer's Makefile
## (layers/hilos_runner/Makefile) and finds python3.13 on PATH for the functions, so both get this Python.
SAM_RUN = PATH="$(dir $(PYTHON313)):$$PATH" AWS_REGION=$${AWS_REGION:-us-east-1} $(SAM)

## make build / deploy: sam build with the pinned SAM CLI; deploy needs AWS credentials. ENV=dev|prod
build: python $(UV)
	$(call tool_env,sam)
	$(SAM_RUN) build

deploy: build
	$(SAM_RUN) deploy --config-env $${ENV:-dev}

## make sam-check: sam validate --lint, sam build, then the build's checks (tools/check_build.py: arm64
## binaries only, a cp313 .pyc for every .py of the layer, function folders with only their code, layer size)
sam-check: venv
	$(call tool_env,sam)
	$(SAM_RUN) validate --lint
	$(SAM_RUN) build
	$(PY) tools/check_build.py .aws-sam/build

## make openapi: schemas/openapi.json from run_api's routes (what /openapi.json serves; a test fails when it is stale)
openapi: venv
	$(PY) tools/export_openapi.py

## make docs: docs/configuration.md from the Settings model and template.yaml (a test fails when it is stale)
docs: venv
	$(PY) tools/configuration_doc.py

clean:
	rm -rf $(VENV) .tools .aws-sam .local .pytest_cache .mypy_cache .ruff_cache layers/hilos_runner/build
