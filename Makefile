# fedhealth: two commands matter, `make demo` and `make test`.
PY_BOOT ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
PIP     := $(VENV)/bin/pip
STAMP   := $(VENV)/.fedhealth-installed

.PHONY: setup demo test test-fast lint format bench-heart bench-faults bench-compression bench-scale clean

setup: $(STAMP)

# torch first: the CPU build on this machine's disk; a plain `torch` requirement may pull CUDA.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PY_BOOT) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(VENV)/bin/fedhealth demo

# Lint first (fast), then every test: unit and the real POC federations (marked slow).
test: setup
	$(VENV)/bin/ruff check custom tests scripts
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check custom tests scripts
	$(VENV)/bin/ruff format --check custom tests scripts

format: setup
	$(VENV)/bin/ruff format custom tests scripts
	$(VENV)/bin/ruff check --fix custom tests scripts

bench-heart: setup
	$(PY) scripts/bench_heart.py --out results/bench_heart.json

bench-faults: setup
	$(PY) scripts/bench_faults.py --out results/bench_faults.json

bench-compression: setup
	$(PY) scripts/bench_compression.py --out results/bench_compression.json

bench-scale: setup
	$(PY) scripts/bench_scale.py --out results/bench_scale.json

clean:
	rm -rf workspace results/demo
