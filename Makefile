# The two commands a person needs: `make demo` and `make test`. Both set themselves up.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test demo dev sandbox lint bench clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is required ($(PYTHON) not found); set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check orderspace_pipelines tests bench
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/orderspace-pipelines demo

dev: $(STAMP)
	$(BIN)/orderspace-pipelines dev

sandbox: $(STAMP)
	$(BIN)/orderspace-pipelines sandbox

lint: $(STAMP)
	$(BIN)/ruff check orderspace_pipelines tests bench
	$(BIN)/ruff format --check orderspace_pipelines tests bench

bench: $(STAMP)
	$(BIN)/python bench/bench_pull.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
