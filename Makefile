# The two commands of the README: `make demo` starts everything with demo data, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test run asyncapi lock system

# Debian packages the tests use, as command:package; installed when the command is missing
SYSTEM_TOOLS := promtool:prometheus chromium:chromium chromedriver:chromium-driver dovecot:dovecot-imapd
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

# Two processes at once: the SQLite half (with every test that needs no database) and the PostgreSQL
# half; most of a test's time is waiting on the broker, so the halves overlap well on two cores.
# HELPDESK_TEST_DATABASES=sqlite (or postgresql) runs just that half, in one process.
test: $(STAMP) system
ifdef HELPDESK_TEST_DATABASES
	$(BIN)/python -m pytest $(PYTEST_ARGS)
else
	@log=$$(mktemp); \
	HELPDESK_TEST_DATABASES=postgresql HELPDESK_TEST_DATABASE_TESTS_ONLY=1 \
	  $(BIN)/python -m pytest -p no:cacheprovider $(PYTEST_ARGS) >$$log 2>&1 & pg=$$!; \
	echo "== SQLite half (and the tests without a database); the PostgreSQL half runs beside it"; \
	HELPDESK_TEST_DATABASES=sqlite $(BIN)/python -m pytest $(PYTEST_ARGS); sqlite=$$?; \
	wait $$pg; postgresql=$$?; \
	echo "== PostgreSQL half"; cat $$log; rm -f $$log; \
	echo "== SQLite half: exit $$sqlite; PostgreSQL half: exit $$postgresql"; \
	[ $$sqlite -eq 0 ] && { [ $$postgresql -eq 0 ] || [ $$postgresql -eq 5 ]; }  # 5: no database test selected
endif

asyncapi: $(STAMP)
	$(BIN)/helpdesk asyncapi
