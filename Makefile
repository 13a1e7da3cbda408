# People's interface to the project. `make run` and `make test` set everything up on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-chaos lint bench schemas topology clean

# The bench extra is part of the dev setup: `make test` runs the benchmark's smoke variant.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	@touch $(STAMP)

# Starts a private broker (a node under var/rabbitmq/, else a container) when none answers, and stops it on Ctrl-C.
run: $(STAMP)
	$(BIN)/erasure run all --start-broker

test: $(STAMP)
	$(BIN)/pytest -m "not chaos" -n 2 $(PYTEST_ARGS)

test-chaos: $(STAMP)
	$(BIN)/pytest tests/chaos -m chaos -p no:cacheprovider $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

# BENCH_SCALE=small (about 7 minutes) or full (the default, about 13 minutes); results go to bench/results/.
bench: $(STAMP)
	BENCH_SCALE=$(or $(BENCH_SCALE),full) $(BIN)/python -m bench

schemas: $(STAMP)
	$(BIN)/erasure schemas generate

topology: $(STAMP)
	$(BIN)/erasure topology declare

clean:
	rm -rf $(VENV) var/*.db .pytest_cache
