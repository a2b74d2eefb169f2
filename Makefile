# Two commands for a newcomer: `make sample` and `make test`. Each creates or refreshes .venv itself.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install sample replay test lint typecheck fmt bench clean torture

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# `make bench` also installs the bench extra (the eventsourcing peer, matplotlib for the chart).
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) -m bench --out bench_results

sample: $(STAMP)
	$(PY) -m samples.cart

# The seed's replay: a match stored as events, consumers built from the log alone; the carts.
replay: $(STAMP)
	$(PY) -m samples.replay

# The suite runs on TEST_WORKERS pytest-xdist workers (each test still starts and shuts down
# its own actor systems); `make test TEST_WORKERS=0` runs it in one process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest -q -n $(TEST_WORKERS)

CYCLES ?= 500
torture: $(STAMP)
	$(PY) -m tests.crash_torture $(CYCLES)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(STAMP)
	$(PY) -m mypy

fmt: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
