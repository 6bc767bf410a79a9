# The two commands a newcomer needs: `make run` and `make test` (`make check` while editing).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PCSC_STAMP := $(VENV)/.pcsc
# What the real PC/SC tests need (Debian names); pyscard builds against libpcsclite.
# tmux runs the terminal in a real terminal for one test.
PCSC_DEBS := pcscd vsmartcard-vpcd pcsc-tools opensc libpcsclite-dev swig pkg-config tmux
# The host's tests run a throw-away PostgreSQL cluster from Debian's server package.
DB_DEBS := postgresql
# The benchmark also runs vsmartcard's own virtual card, for comparison.
BENCH_DEBS := vsmartcard-vpicc python3-pycryptodome

# pytest-xdist: JOBS workers (default: one per CPU core, `-n auto`). The PC/SC tests share
# one worker (--dist loadgroup, pyproject.toml). Python caches bytecode in the venv even
# when PYTHONDONTWRITEBYTECODE is set: every test's subprocess imports the same modules.
JOBS ?= auto
PYTEST := env -u PYTHONDONTWRITEBYTECODE PYTHONPYCACHEPREFIX=$(CURDIR)/$(VENV)/pycache \
	$(BIN)/python -m pytest -n $(JOBS)

.PHONY: run test check lint pcsc db bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Best effort: without root/apt the PC/SC tests report themselves skipped (failed under CI=true).
pcsc: $(STAMP)
	@tools/system-deps.sh $(PCSC_DEBS)
	@if [ ! -f $(PCSC_STAMP) ]; then \
	  if test -f /usr/include/PCSC/winscard.h && \
	     $(BIN)/python -m pip install --quiet -e '.[test,pcsc]'; then touch $(PCSC_STAMP); \
	  else echo "pcsc: pyscard is not installed; the PC/SC tests will say so"; fi; \
	fi

# Best effort like pcsc: without it the PostgreSQL tests skip (fail under CI=true).
db:
	@tools/system-deps.sh $(DB_DEBS)

run: $(STAMP)
	$(BIN)/pos-terminal

# ruff (lint and format), the types (mypy --strict) and the layers (import-linter, pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy cardio host terminal
	$(BIN)/lint-imports

# Everything, the slow and the PC/SC tests too.
test: $(STAMP) pcsc db lint
	$(PYTEST)

# The edit-run loop: all but the `slow` and `pcsc` tests.
check: $(STAMP) lint
	$(PYTEST) -m "not slow and not pcsc"

bench: $(STAMP) pcsc db
	@tools/system-deps.sh $(BENCH_DEBS)
	$(BIN)/python bench/bench_verify.py
	$(BIN)/python bench/bench_pcsc.py
	$(BIN)/python bench/bench_terminal.py
	$(BIN)/python bench/bench_host.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis .bench
