"""flightd's [security] keys, replay window, unsigned policy and [link] TLS files (flight.settings)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from flight.settings import FlightSettings
from ground.cli import main
from ground.pki import init_pki
from ground.signer import load_signer
from link.messages import Role


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("ORBITD_"):
            monkeypatch.delenv(key)


PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"


def load(tmp_path: Path, text: str) -> FlightSettings:
    path = tmp_path / "flightd.toml"
    path.write_text(text)
    return FlightSettings.load(path)


def test_keys_as_ground_keys_new_prints_them(tmp_path: Path) -> None:
    s = load(tmp_path, f"""
[link]
tls_ca = "/etc/orbitd/tls/ca.pem"
tls_cert = "/etc/orbitd/tls/flightd.pem"
tls_key = "/etc/orbitd/tls/flightd.key"

[security]
replay_window = 128

[[security.keys]]
name = "ops"
role = "operator"
public_key = "{PUBLIC}"

[[security.keys]]
name = "lab"
role = "user"
public_key = "{PUBLIC.replace('d', 'e')}"
priority_cap = 3
""")
    ops, lab = (k.entry() for k in s.security.keys)
    assert (ops.role, ops.priority_cap, ops.fingerprint) == (Role.OPERATOR, 9, "21fe31dfa154a261")
    assert (lab.role, lab.priority_cap) == (Role.USER, 3)
    assert s.security.replay_window == 128
    assert s.security.unsigned_kinds() == frozenset()  # keys configured: everything must be signed
    tls = s.link.tls()
    assert tls is not None and tls.key == Path("/etc/orbitd/tls/flightd.key")


def test_unsigned_defaults_and_explicit_policy(tmp_path: Path) -> None:
    assert FlightSettings.load().security.unsigned_kinds() == {"job", "command", "upload"}  # lab set-up
    assert FlightSettings.load().link.tls() is None
    s = load(tmp_path, f'[security]\naccept_unsigned = ["job"]\n[[security.keys]]\nname = "o"\nrole = "operator"\n'
                       f'public_key = "{PUBLIC}"\n')
    assert s.security.unsigned_kinds() == {"job"}


@pytest.mark.parametrize(
    ("text", "field", "why"),
    [
        ('[security]\naccept_unsigned = ["jobs"]\n', "security.accept_unsigned", "unknown request kinds ['jobs']"),
        ("[security]\nreplay_window = 0\n", "security.replay_window", "greater than or equal to 1"),
        ('[[security.keys]]\nname = "x"\nrole = "admin"\npublic_key = "' + PUBLIC + '"\n', "security.keys.0.role",
         "Input should be 'operator' or 'user'"),
        ('[[security.keys]]\nname = "x"\nrole = "user"\npublic_key = "abc"\n', "security.keys.0.public_key",
         "should match pattern"),
    ],
)
def test_bad_security_settings_are_refused_naming_the_field(tmp_path: Path, text: str, field: str, why: str) -> None:
    with pytest.raises(ValidationError) as info:
        load(tmp_path, text)
    errors = {".".join(str(p) for p in e["loc"]): e["msg"] for e in info.value.errors()}
    assert field in errors and why in errors[field], errors


def test_pki_init_and_keys_new_write_a_configuration_flightd_loads(tmp_path: Path) -> None:
    pki = init_pki(tmp_path / "pki", ["sat1"], hosts=["broker.example"], persistence_dir=None)
    config = pki.root / "sat1" / "flightd.toml"
    assert main(["keys", "new", "ops", "--role", "operator", "--dir", str(tmp_path / "keys"),
                 "--config", str(config)]) == 0
    s = FlightSettings.load(config)
    assert (s.broker, s.sat) == ("mqtts://broker.example:8883", "sat1")
    tls = s.link.tls()
    assert tls is not None and tls == pki.flightd("sat1") and tls.context() is not None
    assert [k.entry().fingerprint for k in s.security.keys] == [load_signer(tmp_path / "keys" / "ops.key").fingerprint]
