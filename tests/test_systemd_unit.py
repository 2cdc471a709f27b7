"""deploy/systemd/flightd.service: accepted by ``systemd-analyze verify`` and saying what it must.

``systemd-analyze verify`` refuses a unit whose ExecStart binary does not exist, and the unit
names the board's install path (/opt/orbitd/venv/bin/flightd). So the test verifies a copy in
which only that path is rewritten to this environment's own ``flightd`` entry point, which is a
real executable of the same program. Everything else is verified as shipped. ``verify`` exits 0
even for unknown keys and bad values (it prints them), so its output must also be empty.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "deploy/systemd/flightd.service"
BOARD_BINARY = "/opt/orbitd/venv/bin/flightd"


def flightd_executable() -> str:
    here = Path(sys.executable).parent / "flightd"
    found = str(here) if here.exists() else shutil.which("flightd")
    assert found, "the flightd entry point is not installed in this environment (pip install -e .)"
    return found


def verify(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: install the Debian package systemd"
    copy = tmp_path / "flightd.service"
    copy.write_text(text)
    return subprocess.run([analyze, "verify", "--man=no", str(copy)], capture_output=True, text=True, check=False)


def test_unit_verifies(tmp_path: Path) -> None:
    text = UNIT.read_text()
    assert BOARD_BINARY in text
    done = verify(text.replace(BOARD_BINARY, flightd_executable()), tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "" and done.stderr.strip() == "", done.stderr


def test_verification_catches_a_mistake(tmp_path: Path) -> None:
    text = UNIT.read_text().replace(BOARD_BINARY, flightd_executable()).replace("Type=notify", "Type=notfy")
    done = verify(text, tmp_path)
    assert "Failed to parse service type" in done.stderr


def test_unit_supervises_as_required() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    unit.read(UNIT)
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert service["WatchdogSec"].endswith("s") and int(service["WatchdogSec"][:-1]) > 0
    assert service["Restart"] == "on-failure"
    assert int(unit["Unit"]["StartLimitBurst"]) > 0 and int(unit["Unit"]["StartLimitIntervalSec"]) > 0
    assert service["User"] == "orbitd" and service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict" and service["StateDirectory"] == "orbitd"
    assert "%S/orbitd/flightd" in service["ExecStart"]  # the journal lives in the writable state directory
    assert "MemoryDenyWriteExecute" not in service and "PrivateDevices" not in service
    sysusers = (REPO / "deploy/systemd/orbitd.sysusers.conf").read_text()
    assert any(line.split()[:2] == ["u", "orbitd"] for line in sysusers.splitlines())
