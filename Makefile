# The two commands of the README: `make demo` starts everything with demo data, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test run asyncapi lock

# requirements.lock pins every package, transitive ones too (regenerate: `make lock`)
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[test]'
	touch $(STAMP)

lock: $(STAMP)
	$(BIN)/pip freeze --all --exclude-editable | grep -v -i -e '^pip==' -e py-spy > requirements.lock

demo: $(STAMP)
	$(BIN)/helpdesk run all --demo

run: $(STAMP)
	$(BIN)/helpdesk run all

test: $(STAMP)
	$(BIN)/python -m pytest

asyncapi: $(STAMP)
	$(BIN)/helpdesk asyncapi
