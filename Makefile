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

# The service tests again with the milvus backend on Milvus Lite: every test that runs on the
# configured backend, less those marked local_backend (they read SQLite, or need several processes
# on one store). The index, fuzz, store-contract, agreement and storage tests run both backends,
# or need none, in the first pass.
MILVUS_PASS := tests/service -m "not local_backend" \
	--ignore=tests/service/test_index.py --ignore=tests/service/test_index_paths.py \
	--ignore=tests/service/test_fuzz.py --ignore=tests/service/test_store_contract.py \
	--ignore=tests/service/test_backends_agree.py --ignore=tests/service/test_storage.py

# tests run many tiny models: one BLAS/torch thread each avoids oversubscribing 2 cores
test: $(STAMP) lint
	OMP_NUM_THREADS=1 $(BIN)/pytest -q
	BITSEEK_TEST_BACKEND=milvus OMP_NUM_THREADS=1 $(BIN)/pytest -q $(MILVUS_PASS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
