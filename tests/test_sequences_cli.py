"""``ground seq``: validate offline, upload signed, list, show, cancel; what flightd refuses and why."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from ground.cli import main as ground_main
from ground.seq import load_sequence_file
from hil.mosquitto_broker import MosquittoBroker
from tests.support import FlightdProcess, copy_bundled, wait_online

KEY = "11" * 32


def write(tmp_path: Path, sid: str = "night", model: str = "digits-int8", shape: tuple[int, ...] = (1, 1, 8, 8),
          delay_s: float = 3600.0) -> Path:
    np.savez(tmp_path / f"{sid}.npz", image=np.zeros(shape, np.float32))
    path = tmp_path / f"{sid}.toml"
    path.write_text(f"""
sequence_id = "{sid}"
[[entries]]
name = "mask"
trigger = {{ kind = "after", delay_s = {delay_s}, of = "start" }}
job = {{ model = "{model}", inputs = "{sid}.npz" }}
[[entries]]
name = "flood"
job = {{ model = "{model}", inputs = "{sid}.npz" }}
[entries.trigger]
kind = "event"
event = "region_entry"
region = {{ lat_min = 40, lat_max = 50, lon_min = 0, lon_max = 10 }}
""")
    return path


def test_validate_offline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    models = copy_bundled(tmp_path / "models", "digits-int8")
    good = write(tmp_path)
    assert ground_main(["seq", "validate", str(good)]) == 0
    assert ground_main(["seq", "validate", str(good), "--models", str(models)]) == 0
    assert "night (2 entries) is valid against the models" in capsys.readouterr().out
    assert ground_main(["seq", "validate", str(write(tmp_path, "n2", model="nope")), "--models", str(models)]) == 1
    assert "model nope is not onboard" in capsys.readouterr().out
    bad_shape = write(tmp_path, "n3", shape=(1, 3, 8, 8))
    assert ground_main(["seq", "validate", str(bad_shape), "--models", str(models)]) == 1
    assert "entry mask" in capsys.readouterr().out
    broken = tmp_path / "broken.toml"
    broken.write_text('sequence_id = "x"\n[[entries]]\nname = "a"\ntrigger = { kind = "at" }\n'
                      'job = { model = "m", inputs = "night.npz" }\n')
    assert ground_main(["seq", "validate", str(broken)]) == 1
    assert "exactly one of mission_s and utc" in capsys.readouterr().err
    seq = load_sequence_file(good)
    assert seq.entries[0].job.inputs["image"].shape == [1, 1, 8, 8]


def test_validate_warns_of_an_absolute_time_already_past(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.savez(tmp_path / "x.npz", image=np.zeros((1, 1, 8, 8), np.float32))
    path = tmp_path / "past.toml"
    entry = '[[entries]]\nname = "{n}"\nlate = "fail"\ntrigger = {{ kind = "at", utc = {t} }}\n' \
            'job = {{ model = "digits-int8", inputs = "x.npz" }}\n'
    path.write_text('sequence_id = "past"\n' + entry.format(n="old", t="2020-01-01T00:00:00Z")
                    + entry.format(n="new", t="2099-01-01T00:00:00Z"))
    assert ground_main(["seq", "validate", str(path)]) == 0  # a warning, not a refusal: the satellite decides
    out = capsys.readouterr().out
    assert "warning: entry old: at 2020-01-01T00:00:00+00:00 is" in out and "(late = fail)" in out
    assert "entry new" not in out


def test_upload_list_show_cancel_signed(mosquitto: MosquittoBroker, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "flightd.toml"
    config.write_text(f'[security]\ncommand_keys = {{ ground = "{KEY}" }}\n')
    proc = FlightdProcess(mosquitto.url, tmp_path / "data", copy_bundled(tmp_path / "models", "digits-int8"),
                          config=config)
    proc.start()
    base = ["--broker", mosquitto.url, "--timeout", "10"]
    signed = [*base, "--key", KEY]
    try:
        asyncio.run(wait_online(mosquitto.url, key_id="ground", key=bytes.fromhex(KEY)))
        path = write(tmp_path)
        assert ground_main([*base, "seq", "upload", str(path)]) == 1  # unsigned
        assert "not signed" in capsys.readouterr().err
        assert ground_main([*signed, "seq", "upload", str(path)]) == 0
        assert capsys.readouterr().out.strip() == "night armed (2 entries)"
        assert ground_main([*signed, "seq", "upload", str(path)]) == 1
        assert "onboard already" in capsys.readouterr().err
        assert ground_main([*signed, "seq", "upload", str(write(tmp_path, "other", model="nope"))]) == 1
        assert "entry mask" in capsys.readouterr().err
        assert ground_main([*signed, "seq", "list", "--json"]) == 0
        listing = json.loads(capsys.readouterr().out)
        assert [(s["sequence_id"], s["state"], s["handled"]) for s in listing] == [
            ("night", "armed", {"mask": 0, "flood": 0})]
        assert ground_main([*signed, "seq", "show", "night"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["sequence"]["entries"][1]["trigger"]["event"] == "region_entry" and shown["firings"] == []
        assert ground_main([*signed, "seq", "cancel", "night"]) == 0
        assert capsys.readouterr().out.strip() == "night cancelled"
        assert ground_main([*signed, "seq", "cancel", "night"]) == 1
        assert "nothing to cancel" in capsys.readouterr().err
        assert ground_main([*signed, "seq", "show", "ghost"]) == 1
        assert "unknown sequence 'ghost'" in capsys.readouterr().err
        proc.kill9()  # a cancelled sequence stays cancelled after a reset
        proc.start()
        asyncio.run(wait_online(mosquitto.url, key_id="ground", key=bytes.fromhex(KEY)))
        assert ground_main([*signed, "seq", "list", "--json"]) == 0
        assert [s["state"] for s in json.loads(capsys.readouterr().out)] == ["cancelled"]
    finally:
        proc.stop()
    log = proc.log()
    assert "re-armed" not in log
    assert "sequence night armed: 2 entries" in log and "sequence night cancelled by ground command" in log
