#!/usr/bin/env bash
# The one check developers and CI run: lint, formatting, types, then the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ruff"
ruff check monitor tests bench scripts
ruff format --check monitor tests bench scripts
echo "== mypy"
mypy
echo "== pytest"
pytest -q "$@"
