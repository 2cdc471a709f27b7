"""deploy/systemd/flightd.service.d/locked-broker.conf: the unit with this drop-in verifies, and the
TLS settings it gives flightd are the ones flight.settings reads (the private key as a credential)."""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from flight.settings import FlightSettings
from tests.test_systemd_unit import BOARD_BINARY, UNIT, flightd_executable

DROP_IN = UNIT.parent / "flightd.service.d" / "locked-broker.conf"


def verify_with(drop_in: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: install the Debian package systemd"
    (tmp_path / "flightd.service.d").mkdir()
    (tmp_path / "flightd.service").write_text(UNIT.read_text().replace(BOARD_BINARY, flightd_executable()))
    (tmp_path / "flightd.service.d" / DROP_IN.name).write_text(drop_in)
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp_path}:"}  # the trailing colon keeps the default path too
    return subprocess.run([analyze, "verify", "--man=no", str(tmp_path / "flightd.service")], capture_output=True,
                          text=True, check=False, env=env)


def test_the_unit_with_the_drop_in_verifies(tmp_path: Path) -> None:
    done = verify_with(DROP_IN.read_text(), tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "" and done.stderr.strip() == "", done.stderr


def test_the_drop_in_is_read_by_the_check(tmp_path: Path) -> None:
    done = verify_with(DROP_IN.read_text().replace("LoadCredential=", "LoadCredentail="), tmp_path)
    assert "Unknown key 'LoadCredentail'" in done.stderr


def test_the_environment_names_flightds_tls_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(DROP_IN.read_text().replace("Environment=", "Environment_=", 1))
    service = unit["Service"]
    credential, _, source = service["LoadCredential"].partition(":")
    assert source.startswith("/etc/orbitd/")
    for key in list(os.environ):
        if key.startswith("ORBITD_"):
            monkeypatch.delenv(key)
    for line in (service["Environment_"], service["Environment"]):
        for assignment in shlex.split(line.replace("%d", str(tmp_path))):
            name, _, value = assignment.partition("=")
            monkeypatch.setenv(name, value)
    tls = FlightSettings.load().link.tls()
    assert tls is not None and tls.key == tmp_path / credential  # the key is the credential, nothing else
    assert tls.ca == Path("/etc/orbitd/tls/ca.pem") and tls.cert == Path("/etc/orbitd/tls/flightd.pem")
