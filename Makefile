# The README's two commands: `make demo` and `make test`. Both work from a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install install-test demo test test-load lint targets fuzz

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/pip install -q -e '.[html]'

install-test: $(BIN)/python
	$(BIN)/pip install -q -e '.[test,html]'

demo: install
	$(BIN)/memscope demo

lint: install-test
	$(BIN)/ruff check memscope tests fixtures bench
	$(BIN)/mypy

test: lint targets
	$(BIN)/pytest -q -ra

# The slow end-to-end tests with a CPU hog on every core beside them (CI's machine is loaded):
# they must hold there too. Needs stress-ng (Debian: apt-get install stress-ng).
test-load: install-test targets
	@command -v stress-ng >/dev/null || { echo "test-load needs stress-ng" >&2; exit 2; }
	@stress-ng --cpu 2 --quiet & hog=$$!; \
	  $(BIN)/pytest -q -ra -m slow; status=$$?; \
	  kill -INT $$hog; wait $$hog; exit $$status

# Target interpreters (pyenv CPython 3.8-3.13) get numpy for the numpy COW ground truth.
targets:
	@for py in /root/.pyenv/versions/3.*/bin/python3; do \
	  [ -x "$$py" ] || continue; \
	  "$$py" -c 'import sys; sys.exit(sys.version_info < (3, 8))' 2>/dev/null || continue; \
	  "$$py" -c 'import numpy' 2>/dev/null || "$$py" -m pip install -q numpy || true; \
	done

# Property-based tests at full size (docs/errors.md "Fuzzing"): 10,000 examples per property
# (the suite runs 60). Outcome counts are written to fuzz-counts.json.
FUZZ_EXAMPLES ?= 10000
fuzz: install-test
	rm -f fuzz-counts.json
	MEMSCOPE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) MEMSCOPE_FUZZ_REPORT=$(CURDIR)/fuzz-counts.json \
	  $(BIN)/pytest -q -p no:cacheprovider -o addopts= --timeout=0 \
	  tests/hardening/test_fuzz_procfs.py tests/hardening/test_fuzz_recordings.py
	cat fuzz-counts.json
