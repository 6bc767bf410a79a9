# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PCSC_STAMP := $(VENV)/.pcsc
# What the real PC/SC tests need (Debian names); pyscard builds against libpcsclite.
# tmux runs the terminal in a real terminal for one test.
PCSC_DEBS := pcscd vsmartcard-vpcd pcsc-tools opensc libpcsclite-dev swig pkg-config tmux
# The benchmark also runs vsmartcard's own virtual card, for comparison.
BENCH_DEBS := vsmartcard-vpicc python3-pycryptodome

.PHONY: run test lint pcsc bench clean

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

run: $(STAMP)
	$(BIN)/pos-terminal

# ruff, the types (mypy --strict) and the layers (import-linter, pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy cardio host terminal
	$(BIN)/lint-imports

test: $(STAMP) pcsc lint
	$(BIN)/python -m pytest

bench: $(STAMP) pcsc
	@tools/system-deps.sh $(BENCH_DEBS)
	$(BIN)/python bench/bench_verify.py
	$(BIN)/python bench/bench_pcsc.py
	$(BIN)/python bench/bench_terminal.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis .bench
