# The two commands a person needs: `make demo` and `make test`. Both set themselves up.
# Python 3.11, 3.12 or 3.13: the first of python3.11, python3.12, python3.13 that runs here (a pyenv shim
# that cannot run counts as absent), unless PYTHON=/path/to/python says otherwise. VENV=... picks the venv
# folder, e.g. one per Python version (`.ci/run` uses .venv-3.12 and .venv-3.13 beside .venv).
SUPPORTED_PYTHONS := 3.11 3.12 3.13
ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell for v in $(SUPPORTED_PYTHONS); do python$$v -c '' >/dev/null 2>&1 && { echo python$$v; break; }; done)
endif
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LINTED := orderspace_pipelines devtools tests bench

.PHONY: install test demo dev sandbox lint bench clean

$(STAMP): pyproject.toml devtools/pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11, 3.12 or 3.13 is required: none of $(addprefix python,$(SUPPORTED_PYTHONS)) runs here; set PYTHON=/path/to/python3.x"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))' 2>/dev/null || { echo "Python 3.11, 3.12 or 3.13 is required; PYTHON=$(PYTHON) is not one of them (or does not run)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ./devtools -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/mypy
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/orderspace-pipelines demo

# e.g. make dev DEV_ARGS='--activity 30 --scale tiny' (see orderspace-pipelines dev --help)
DEV_ARGS ?=
dev: $(STAMP)
	$(BIN)/orderspace-pipelines dev $(DEV_ARGS)

sandbox: $(STAMP)
	$(BIN)/orderspace-pipelines sandbox

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/mypy
	$(BIN)/ruff format --check $(LINTED)

bench: $(STAMP)
	$(BIN)/python bench/bench_pull.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
