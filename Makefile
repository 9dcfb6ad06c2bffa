# The two commands of the README: `make demo` starts everything with demo data, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test run asyncapi lock system

# Debian packages the tests use, as command:package; installed when the command is missing
SYSTEM_TOOLS := promtool:prometheus chromium:chromium chromedriver:chromium-driver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

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

system:
	@missing=""; for pair in $(SYSTEM_TOOLS); do command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $(SUDO) apt-get install -y -q --no-install-recommends $$missing >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q --no-install-recommends $$missing >/dev/null; }; \
	fi

test: $(STAMP) system
	$(BIN)/python -m pytest

asyncapi: $(STAMP)
	$(BIN)/helpdesk asyncapi
