"""flight.settings.FlightSettings: defaults < TOML file < ORBITD_* environment < explicit overrides,
nested environment keys with ``__``, and invalid configuration refused with the field named."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from flight.cli import main as flightd_main
from flight.settings import FlightSettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("ORBITD_"):
            monkeypatch.delenv(key)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "flightd.toml"
    path.write_text(text)
    return path


def test_defaults() -> None:
    s = FlightSettings.load()
    assert (s.broker, s.sat, s.control_period_s) == ("mqtt://127.0.0.1:1883", "sat1", 1.0)
    assert s.executor.providers[-1] == "CPUExecutionProvider"
    assert s.security.command_keys == {} and s.governor is None


def test_precedence_file_then_env_then_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(tmp_path, """
sat = "from-file"
broker = "mqtt://file:1"
control_period_s = 0.5
[executor]
max_concurrency = 3
intra_op_threads = 4
""")
    s = FlightSettings.load(config)
    assert (s.sat, s.broker, s.control_period_s, s.executor.max_concurrency) == ("from-file", "mqtt://file:1", 0.5, 3)

    monkeypatch.setenv("ORBITD_SAT", "from-env")
    monkeypatch.setenv("ORBITD_BROKER", "mqtt://env:2")
    monkeypatch.setenv("ORBITD_EXECUTOR__INTRA_OP_THREADS", "7")
    s = FlightSettings.load(config)
    assert (s.sat, s.broker) == ("from-env", "mqtt://env:2")
    assert s.executor.intra_op_threads == 7
    assert s.executor.max_concurrency == 3  # the file's sibling key in the same table survives
    assert s.control_period_s == 0.5

    s = FlightSettings.load(config, sat="from-cli", broker=None)  # None: not given on the command line
    assert (s.sat, s.broker) == ("from-cli", "mqtt://env:2")


def test_nested_env_without_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORBITD_SECURITY__COMMAND_WINDOW_S", "30")
    monkeypatch.setenv("ORBITD_LINK__HEARTBEAT_S", "0.25")
    monkeypatch.setenv("ORBITD_GOVERNOR", '{"telemetry_period_s": 0.2}')
    s = FlightSettings.load()
    assert s.security.command_window_s == 30.0
    assert s.link.heartbeat_s == 0.25
    assert s.governor == {"telemetry_period_s": 0.2}


def test_command_keys_table_from_toml(tmp_path: Path) -> None:
    key = "ab" * 32
    s = FlightSettings.load(write(tmp_path, f'[security]\ncommand_keys = {{ ground = "{key}" }}\n'))
    assert s.security.command_keys == {"ground": key}


@pytest.mark.parametrize(
    ("text", "field", "why"),
    [
        ("[executor]\nintra_op_threads = 0\n", "executor.intra_op_threads", "greater than or equal to 1"),
        ("colour = 'red'\n", "colour", "Extra inputs are not permitted"),
        ("[journal]\nsynchronous = 'SOMETIMES'\n", "journal.synchronous", "one of OFF, NORMAL, FULL, EXTRA"),
        ("sat = 'a/b'\n", "sat", "should match pattern"),
        ("control_period_s = 0\n", "control_period_s", "greater than 0"),
    ],
)
def test_invalid_config_is_refused_naming_the_field(tmp_path: Path, text: str, field: str, why: str) -> None:
    with pytest.raises(ValidationError) as info:
        FlightSettings.load(write(tmp_path, text))
    errors = {".".join(str(p) for p in e["loc"]): e["msg"] for e in info.value.errors()}
    assert field in errors and why in errors[field], errors


def test_invalid_env_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORBITD_EXECUTOR__MAX_CONCURRENCY", "lots")
    with pytest.raises(ValidationError, match="max_concurrency"):
        FlightSettings.load()


def test_missing_config_file() -> None:
    with pytest.raises(FileNotFoundError, match=r"config file /no/such\.toml does not exist"):
        FlightSettings.load(Path("/no/such.toml"))


def test_flightd_cli_exits_2_with_a_one_line_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert flightd_main(["--config", str(write(tmp_path, "[executor]\nintra_op_threads = 0\n"))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flightd: invalid configuration: executor.intra_op_threads:")
    assert flightd_main(["--config", str(tmp_path / "absent.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
