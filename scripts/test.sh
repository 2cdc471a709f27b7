#!/usr/bin/env bash
# README's test command: a virtual environment with the test extras, lint, types, the whole suite; and,
# where a Python 3.10 interpreter is found, the link/flight tests in a board install under Python 3.10.
set -euo pipefail
cd "$(dirname "$0")/.."

# Python 3.10 (JetPack 6's Python): $ORBITD_PYTHON310, else python3.10 on PATH (pyenv's shim works only
# where pyenv selects 3.10), else the newest 3.10 that pyenv has installed (pyenv root, else ~/.pyenv).
find_python310() {
    local root candidate
    root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
    for candidate in "${ORBITD_PYTHON310:-}" python3.10 $(ls -d "$root"/versions/3.10*/bin/python3.10 2>/dev/null | sort -rV); do
        [ -n "$candidate" ] || continue
        if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[test]"
.venv/bin/ruff check link flight ground hil tests bench tools
.venv/bin/mypy link flight ground
.venv/bin/mypy --python-version 3.10 link flight  # the board install's code, as Python 3.10 sees it

if py310=$(find_python310); then
    # The board install alone (no ground, simulator or model-building packages) plus the test runner.
    [ -x .venv310/bin/python ] || "$py310" -m venv .venv310
    .venv310/bin/pip install -q --upgrade pip
    .venv310/bin/pip install -q -e ".[board-test]"
    echo "test: link/flight tests on $(.venv310/bin/python -V) in a board install (.venv310)" >&2
    ORBITD_BOARD_TESTS=1 .venv310/bin/pytest -q -p no:cacheprovider
    export ORBITD_BOARD_PYTHON="$PWD/.venv310/bin/python"  # tests/test_board_install.py runs flightd with it
else
    echo "test: no Python 3.10 found (set ORBITD_PYTHON310): the board install is tested on $(python3 -V) only" >&2
fi
exec .venv/bin/pytest -q -p no:cacheprovider "$@"
