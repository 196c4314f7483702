# Quick start:  make demo   |   make test
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: demo test bench clean venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# The versions the tests were run with; torch is pinned so pip takes the CPU wheel.
	$(PIP) install --quiet "torch==2.13.0" "jax==0.10.2" "jaxlib==0.10.2" "keras==3.15.1" "optax==0.2.8" "triton==3.9.0"
	$(PIP) install --quiet -e ".[torch,jax,fast,test,bench]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/probloss demo

# Every backend is required in the test run: a missing one fails instead of skipping.
test: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks docs
	KERAS_BACKEND=jax PROBLOSS_TEST_BACKENDS=numpy,array_api_strict,torch,jax $(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache build dist
