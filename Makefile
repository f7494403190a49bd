# geventserve: `make run` serves the example app, `make test` runs the whole suite.
# Both create .venv and install what they need, so they work on a fresh clone.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 2
PYTEST_ARGS ?=

.PHONY: run test lint docs system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstalled whenever setup.cfg changes.
$(VENV)/.installed-run: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[examples]'
	touch $@

$(VENV)/.installed-test: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,examples]'
	touch $@

run: $(VENV)/.installed-run
	$(BIN)/geventserve -k gevent -w $(WORKERS) -b $(HOST):$(PORT) --chdir examples hello:app

# Programs the tests start for real, installed from Debian's packages when missing.
SYSTEM_PROGRAMS := nginx:nginx-light strace:strace
system-deps:
	@missing=""; for item in $(SYSTEM_PROGRAMS); do \
	  command -v $${item%%:*} >/dev/null 2>&1 || missing="$$missing $${item#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing Debian packages:$$missing (install them as root)"; exit 1; fi; fi

test: $(VENV)/.installed-test system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

docs: $(VENV)/.installed-run
	$(BIN)/python -m geventserve.docs > docs/settings.md

lint: $(VENV)/.installed-test
	$(BIN)/ruff check geventserve tests examples loadtests

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
