# The two commands the README promises: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 3000
export BENTOML_DO_NOT_TRACK := True

.PHONY: install serve test lint bench-serving bench-batch bench-streaming soak clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

serve: install  ## train a model if the store has none, then serve it on :$(PORT)
	$(BIN)/python -m models.train --if-missing
	$(BIN)/bentoml serve service:ChurnService --port $(PORT)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint  ## lint, then every test (starts its own Redis and Kafka-protocol broker)
	$(BIN)/python -m pytest

bench-serving: install  ## /predict and /predict/batch against hand-written baselines
	$(BIN)/python -m benchmarks.serving

bench-batch: install  ## the batch script against a pandas baseline and the I/O + model limit
	$(BIN)/python -m benchmarks.batch

bench-streaming: install  ## the Kafka bridge against per-message baselines and a pass-through
	$(BIN)/python -m benchmarks.streaming

soak: install  ## minutes of sustained load with Redis on, memory and p99 over time (not in CI)
	$(BIN)/python -m benchmarks.soak

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
