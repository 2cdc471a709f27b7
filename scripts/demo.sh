#!/usr/bin/env bash
# README's main command: install, then the software-in-the-loop run on the embedded broker (no setup).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[hil]"  # the simulator and the ground tools (flightd alone: pip install .)
exec .venv/bin/hil sil --scenario nominal-550km --orbits 2 "$@"
