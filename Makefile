# Two entry points for a fresh machine with Python 3.11+ and make:
#   make run   install everything into .venv and start the daemon on ./feeds.yaml
#   make test  install everything into .venv and run lint, types and the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test check bench bench-match bench-poll clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/monitor -c feeds.yaml run

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/check.sh

check: test

bench: bench-poll bench-match

bench-poll: $(STAMP)
	$(BIN)/python bench/bench_poll.py

bench-match: $(STAMP)
	$(BIN)/python bench/bench_match.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
