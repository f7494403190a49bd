# geventserve: `make run` serves the example app, `make test` runs the whole suite.
# Both create .venv and install what they need, so they work on a fresh clone.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 2
PYTEST_ARGS ?=

.PHONY: run test lint docs bench system-deps bench-deps clean loadtest loadtest-compare \
	loadtest-seeds loadtest-chat fleet fuzz

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstalled whenever setup.cfg changes.
$(VENV)/.installed-run: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[examples]'
	touch $@

$(VENV)/.installed-test: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,examples,fuzz]'
	touch $@

$(VENV)/.installed-bench: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $@

run: $(VENV)/.installed-run
	$(BIN)/geventserve -k gevent -w $(WORKERS) -b $(HOST):$(PORT) --chdir examples hello:app

$(VENV)/.installed-load: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[load]'
	touch $@

# Programs the tests (and the benchmark) start for real, from Debian's packages when missing.
# (wrk for the benchmark's short form, tests/test_bench.py)
TEST_PROGRAMS := nginx:nginx-light strace:strace openssl:openssl haproxy:haproxy \
	prometheus:prometheus wrk:wrk pg_ctlcluster:postgresql redis-server:redis-server
BENCH_PROGRAMS := $(TEST_PROGRAMS)
define install_programs
	@missing=""; for item in $(1); do \
	  command -v $${item%%:*} >/dev/null 2>&1 || missing="$$missing $${item#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing Debian packages:$$missing (install them as root)"; exit 1; fi; fi
endef

system-deps:
	$(call install_programs,$(TEST_PROGRAMS))

bench-deps:
	$(call install_programs,$(BENCH_PROGRAMS))

# The test files run on TEST_JOBS processes (each file in one of them, its tests in order).
TEST_JOBS ?= 2
test: $(VENV)/.installed-test system-deps
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadfile $(PYTEST_ARGS)

docs: $(VENV)/.installed-run
	$(BIN)/python -m geventserve.docs > docs/settings.md

lint: $(VENV)/.installed-test
	$(BIN)/ruff check geventserve tests examples loadtests bench harness fuzz

# -- fuzzing: atheris on the HTTP layer in-process (fuzz/run.py); a crash is saved in
# tests/fuzz_regressions/ and fails the run. `make test` runs 30 s of it (tests/test_fuzz.py).
FUZZ_SECONDS ?= 300
fuzz: $(VENV)/.installed-test
	$(BIN)/python -m fuzz.run --seconds $(FUZZ_SECONDS)

# -- benchmark: geventserve beside gunicorn -k gevent and granian, one worker each
# (bench/bench.py); the table, the JSON and a chart per workload go to bench/results/.
# BENCH_QUICK=1 for short runs; BENCH_ARGS="--workloads plain,flask" for a part.
BENCH_ARGS ?=
bench: $(VENV)/.installed-bench bench-deps
	$(BIN)/python bench/bench.py $(BENCH_ARGS)

# -- load tests with locust (loadtests/README.md)
USERS ?= 1000
SPAWN_RATE ?= 100
RUN_TIME ?= 30s
SEEDS_RUN_TIME ?= 10s
LOAD_WORKERS ?= 4
LOAD_ARGS = -u $(USERS) -r $(SPAWN_RATE) -w $(LOAD_WORKERS)

loadtest: $(VENV)/.installed-load
	$(BIN)/python loadtests/run.py run $(LOAD_ARGS) -t $(RUN_TIME)

loadtest-compare: $(VENV)/.installed-load
	$(BIN)/python loadtests/run.py compare $(LOAD_ARGS) -t $(RUN_TIME)

loadtest-seeds: $(VENV)/.installed-load system-deps
	$(BIN)/python loadtests/run.py seeds $(LOAD_ARGS) -t $(SEEDS_RUN_TIME)

# Chat users on open WebSockets, one worker (each user hears its whole room: a few hundred).
CHAT_USERS ?= 200
CHAT_SPAWN_RATE ?= 50
loadtest-chat: $(VENV)/.installed-load
	$(BIN)/python loadtests/run.py chat -u $(CHAT_USERS) -r $(CHAT_SPAWN_RATE) -t $(RUN_TIME)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache .fuzz-corpus

# -- the fleet: three hosts (network namespaces) behind HAProxy, then nginx, rolled, upgraded,
# recycled and one killed under load; the table goes into loadtests/README.md. As root (the
# namespaces); FLEET_ARGS for options, e.g. FLEET_ARGS="-u 100 --hosts loopback".
FLEET_ARGS ?=
fleet: $(VENV)/.installed-load system-deps
	$(BIN)/python loadtests/run.py fleet $(FLEET_ARGS)
