# The two commands of the README: `make run` and `make test`. Everything else is a
# step of those. Only Python 3.11, make and the package registries are needed.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
DURATION ?= 0
ARGS ?=

.PHONY: run test lint venv clean bench

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or make PYTHON=/path/to/python3.11)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

venv: $(STAMP)

## Start the embedded broker, a worker, connectors and demo traffic; Ctrl-C or DURATION=s stops.
run: $(STAMP)
	$(BIN)/rota run --duration $(DURATION) $(ARGS)

## Lint, type-check and run the whole test suite.
test: $(STAMP) lint
	$(BIN)/python -m pytest $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check orchestrator connectors tests
	$(BIN)/ruff format --check orchestrator connectors tests
	$(BIN)/mypy orchestrator connectors

bench: $(STAMP)
	$(BIN)/rota bench $(ARGS)

clean:
	rm -rf $(VENV) .rota .pytest_cache .mypy_cache .ruff_cache
