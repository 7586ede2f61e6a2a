# Two commands: `make run` and `make test`. Both create/refresh .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# Pinned CPU build of torch first, so nothing pulls a multi-GB CUDA build (see README for GPU)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/bitseek demo --if-missing
	$(BIN)/bitseek serve

lint: $(STAMP)
	$(BIN)/ruff check models training service tests benchmarks
	$(BIN)/ruff format --check models training service tests benchmarks
	$(BIN)/mypy
	$(BIN)/hadolint --failure-threshold warning Dockerfile

# tests run many tiny models: one BLAS/torch thread each avoids oversubscribing 2 cores
test: $(STAMP) lint
	OMP_NUM_THREADS=1 $(BIN)/pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
