# The two commands of the README: `make demo` starts everything with demo data, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test run asyncapi

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/helpdesk run all --demo

run: $(STAMP)
	$(BIN)/helpdesk run all

test: $(STAMP)
	$(BIN)/python -m pytest

asyncapi: $(STAMP)
	$(BIN)/helpdesk asyncapi
