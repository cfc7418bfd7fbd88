# The template's own commands. A newcomer needs two: `make demo` and `make test`.
# Prerequisites: python3 (>= 3.11, with venv), git, make. Everything else is installed
# into .venv (the template's tools) or, by the generated project, into its own environment.
.DEFAULT_GOAL := help
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# Installed when requirements-dev.txt is newer than this stamp (or .venv is missing).
STAMP := $(VENV)/.installed-requirements-dev
DEMO := demo
# The task to bake, one of cookiecutter.json's `task` choices; empty: its default (binary).
TASK ?=
TASKS = $(shell $(PYTHON) -c 'import json; print(*json.load(open("cookiecutter.json"))["task"])')
PYTEST_ARGS ?=

export DVC_NO_ANALYTICS := 1
export DO_NOT_TRACK := 1
export BENTOML_DO_NOT_TRACK := true

.PHONY: help dev demo test lint bench clean lock

help: ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

$(STAMP): requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "$(PYTHON) is older than 3.11: set PYTHON=python3.11 (or newer)" >&2; exit 1; }
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

dev: $(STAMP) ## create .venv with the template's pinned test tools

demo: $(STAMP) ## bake the defaults into ./demo/ (TASK=multiclass|regression: that task), run setup and pipeline
	$(if $(TASK),$(if $(filter $(TASK),$(TASKS)),,$(error TASK=$(TASK) is not a task of cookiecutter.json: $(TASKS))))
	rm -rf $(DEMO)
	$(BIN)/cookiecutter --no-input --default-config --output-dir $(DEMO) . $(if $(TASK),task=$(TASK))
	@# The generated Makefile takes uv from PATH (the template's .venv has one; it goes last
	@# on PATH) or installs its own copy. VIRTUAL_ENV must not point at the template's .venv.
	project=$$(find $(DEMO) -mindepth 1 -maxdepth 1 -type d); \
	env -u VIRTUAL_ENV PATH="$$PATH:$(BIN)" $(MAKE) --no-print-directory -C "$$project" setup pipeline; \
	echo; \
	echo "Demo project: $$project (model card: $$project/docs/model_card.md)"; \
	echo "Next: cd $$project && make help"

test: lint ## lint, then run the template's whole test suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP) ## ruff on hooks/tests/benchmarks; schema, zizmor, actionlint+shellcheck on the template's CI
	$(BIN)/ruff check hooks tests benchmarks
	$(BIN)/ruff format --check hooks tests benchmarks
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(BIN)/zizmor --offline --quiet .github/workflows/
	$(BIN)/actionlint -shellcheck=$(BIN)/shellcheck .github/workflows/*.yml

bench: demo ## make demo (TASK= too), then time its pipeline, service, monitoring, batch scoring, explanations; needs hey
	project=$$(find $(DEMO) -mindepth 1 -maxdepth 1 -type d); \
	cd "$$project" && export PATH="$$PATH:$(BIN)" && unset VIRTUAL_ENV && \
	$(MAKE) --no-print-directory log-key-ready && \
	uv run python $(CURDIR)/benchmarks/pipeline.py . $(PIPELINE_BENCH_ARGS) && \
	uv run python $(CURDIR)/benchmarks/serving.py . $(SERVING_BENCH_ARGS) && \
	uv run python $(CURDIR)/benchmarks/monitoring.py . $(MONITORING_BENCH_ARGS) && \
	uv run python $(CURDIR)/benchmarks/batch.py . $(BATCH_BENCH_ARGS) && \
	uv run python $(CURDIR)/benchmarks/explain.py . $(EXPLAIN_BENCH_ARGS)

# The generated project's uv.lock, one per offered Python (the wheels differ): baked defaults,
# `uv lock` (keeping the locked versions that still satisfy the pins), and the project's name
# put back as the template variable. Run after moving a pin in
# {{cookiecutter.project_slug}}/pyproject.toml; tests/test_bake.py fails until you do.
PYTHONS := 3.11 3.12 3.13
DEFAULT_SLUG := credit-risk-model
lock: $(STAMP) ## regenerate the generated project's uv.lock (templates/uv-<python>.lock)
	scratch=$$(mktemp -d); trap 'rm -rf "$$scratch"' EXIT; \
	for version in $(PYTHONS); do \
	  touch templates/uv-$$version.lock; \
	  $(BIN)/cookiecutter --no-input --default-config --output-dir "$$scratch/$$version" . \
	    python_version=$$version; \
	  (cd "$$scratch/$$version/$(DEFAULT_SLUG)" && { [ -s uv.lock ] || rm -f uv.lock; } && $(BIN)/uv lock --quiet); \
	  sed 's/^name = "$(DEFAULT_SLUG)"$$/name = "{{ cookiecutter.project_slug }}"/' \
	    "$$scratch/$$version/$(DEFAULT_SLUG)/uv.lock" > templates/uv-$$version.lock; \
	  grep -q '^name = "{{ cookiecutter.project_slug }}"$$' templates/uv-$$version.lock; \
	done

clean: ## remove .venv, the shared project environment (.cache) and the demo
	rm -rf $(VENV) .cache $(DEMO) .pytest_cache .ruff_cache
	find hooks tests -name __pycache__ -type d -prune -exec rm -rf {} +
