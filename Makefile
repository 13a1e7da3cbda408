# People's interface to the project. `make run` and `make test` set everything up on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-chaos test-containers images lint bench schemas topology clean

# The bench extra is part of the dev setup: `make test` runs the benchmark's smoke variant.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	@touch $(STAMP)

# Starts a private broker (a node under var/rabbitmq/, else a container) when none answers, and stops it on Ctrl-C.
run: $(STAMP)
	$(BIN)/erasure keys generate --if-missing
	$(BIN)/erasure run all --start-broker

test: $(STAMP)
	$(BIN)/pytest -m "not chaos and not containers" -n 2 $(PYTEST_ARGS)

test-chaos: $(STAMP)
	$(BIN)/pytest tests/chaos -m chaos -p no:cacheprovider $(PYTEST_ARGS)

# Every container image without a registry (Debian base, RabbitMQ, PostgreSQL, Python, the project's); needs
# root for debootstrap and a running Docker engine. Base images that exist are kept (FORCE=1 rebuilds them);
# the project's image is rebuilt from the current tree every time.
images:
	deploy/images/build.sh

# A representative part of the suite against containers only (ERASURE_TEST_CONTAINERS=1): the broker runtime
# and the deployment files, plus the tests that run the images, compose, its cluster profile and
# ErasurePipelineContainer. Add tests/e2e for the end-to-end suite too (CONTAINER_TESTS=...); times in README.
CONTAINER_TESTS ?= tests/runtime tests/deploy/test_manifests.py tests/deploy/test_containers.py
test-containers: $(STAMP)
	ERASURE_TEST_CONTAINERS=1 TESTCONTAINERS_RYUK_DISABLED=$(or $(TESTCONTAINERS_RYUK_DISABLED),true) \
		$(BIN)/pytest $(CONTAINER_TESTS) -m "not chaos" -n 2 -p no:cacheprovider $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

# BENCH_SCALE=small (about 7 minutes) or full (the default; 57 minutes on a busy two-core machine, a third of
# it filling the million-request ledgers of section 5d); results go to bench/results/
bench: $(STAMP)
	BENCH_SCALE=$(or $(BENCH_SCALE),full) $(BIN)/python -m bench

schemas: $(STAMP)
	$(BIN)/erasure schemas generate

topology: $(STAMP)
	$(BIN)/erasure topology declare

clean:
	rm -rf $(VENV) var/*.db .pytest_cache
