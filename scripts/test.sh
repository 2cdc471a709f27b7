#!/usr/bin/env bash
# README's test command: a virtual environment with the test extras, lint, types, the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[test]"
.venv/bin/ruff check link flight ground hil tests bench tools
.venv/bin/mypy link flight ground
exec .venv/bin/pytest -q -p no:cacheprovider "$@"
