# The two commands the README promises: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 3000
export BENTOML_DO_NOT_TRACK := True

.PHONY: install install-runtime serve test test-fast lint ruff deps typecheck bench-serving \
	bench-batch bench-streaming bench-shadow soak clean

# Two installs into the one virtualenv: `serve` needs the runtime only (the [project]
# dependencies); lint, tests and benchmarks need the dev extra (dask, the test tools with their
# Redis and Kafka-protocol binaries, the benchmarks' baselines). Each has its own stamp, so
# `make serve` on a fresh clone never pulls the test tools.
install: $(VENV)/.installed-dev
install-runtime: $(VENV)/.installed-runtime

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-runtime: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# The dev extra includes the runtime, so it stamps both.
$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed-runtime

serve: install-runtime  ## train a model if the store has none, then serve it on :$(PORT)
	$(BIN)/python -m models.train --if-missing
	$(BIN)/bentoml serve service:ChurnService --port $(PORT)

lint: ruff deps typecheck  ## ruff (lint and format), the dependency check, the type checker

ruff: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# deptry (configured in pyproject.toml). The first run checks the whole tree: every third-party
# import declared, every declared package used. The others check that each part imports only
# what its install has, by marking the extras it may not use as dev groups (DEP004):
DEPTRY := $(BIN)/deptry --no-ansi
deps: install  ## every third-party import declared, in the extra of the code that imports it
	$(DEPTRY) .
	@# runtime code (models, serving, batch, streaming, service.py): [project] dependencies only
	$(DEPTRY) . --ignore DEP002 --optional-dependencies-dev-groups dask,test,bench,dev \
		--extend-exclude 'tests/' --extend-exclude 'benchmarks/' \
		--extend-exclude 'batch/dask_engine\.py' --extend-exclude 'batch/dags/'
	@# batch/dask_engine.py (--engine dask): the runtime and the dask extra
	$(DEPTRY) batch --ignore DEP002 --optional-dependencies-dev-groups test,bench,dev
	@# tests: the runtime, the test extra and the dask one (tests/batch/test_dask.py)
	$(DEPTRY) tests --ignore DEP002 --optional-dependencies-dev-groups bench,dev
	@# benchmarks: the runtime and the bench extra
	$(DEPTRY) benchmarks --ignore DEP002 --optional-dependencies-dev-groups dask,test,dev

typecheck: install  ## mypy (configured in pyproject.toml) over the code that ships
	$(BIN)/mypy

test: lint  ## lint, then every test (starts its own Redis and Kafka-protocol broker)
	$(BIN)/python -m pytest

# The tests that start no server (no bento, Redis, Kafka broker or Airflow): tests/models, the batch
# script in-process, the bridge's decoding and policy on fake clients; not batch/test_parity.py
# (it compares with a served bento) nor the slow Dask tests (LocalClusters). Under
# CHURN_TESTS_NO_SERVERS, tests/support.py refuses to start a server, so a test listed here
# that needs one fails instead of quietly making this slow.
FAST_TESTS := tests/models tests/batch tests/streaming/test_messages.py tests/streaming/test_policy.py \
	tests/streaming/test_bridge_step.py tests/streaming/test_logs.py tests/serving/test_auth_guard.py \
	tests/serving/test_cache_window.py tests/serving/test_coalesce.py tests/serving/test_heap.py \
	tests/serving/test_loop_lag.py tests/serving/test_bentoml_fixes.py tests/serving/test_oip_tensors.py \
	tests/test_support.py
FAST_EXCLUDE := --ignore=tests/batch/test_parity.py -m "not slow"
test-fast: lint  ## lint, then the tests that start no server (about a minute; for development)
	CHURN_TESTS_NO_SERVERS=1 $(BIN)/python -m pytest $(FAST_TESTS) $(FAST_EXCLUDE)

bench-serving: install  ## /predict and /predict/batch against hand-written baselines
	$(BIN)/python -m benchmarks.serving

bench-batch: install  ## the batch script against a pandas baseline and the I/O + model limit
	$(BIN)/python -m benchmarks.batch

bench-streaming: install  ## the Kafka bridge against per-message baselines and a pass-through
	$(BIN)/python -m benchmarks.streaming

bench-shadow: install  ## /predict with a candidate in the shadow against none (issue 20's 1.25x)
	$(BIN)/python -m benchmarks.shadow

soak: install  ## minutes of sustained load with Redis on, memory and p99 over time (not in CI)
	$(BIN)/python -m benchmarks.soak

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
