"""``ground pki init|revoke`` (the locked broker) and ``ground keys new|show`` (request signing keys).

Mounted by the ``ground`` command through :func:`add_security_parsers`; these work on local files
only and need none of the global options. docs/security.md explains the files and where each goes.

    ground pki init --out secrets/pki --sat sat1 [--sat sat2 ...] [--host broker.example ...]
    ground pki revoke --out secrets/pki secrets/pki/sat2/flightd.pem
    ground keys new ops-alice --role operator [--dir ~/.orbitd/keys] [--config secrets/pki/sat1/flightd.toml]
    ground keys new lab-bob --role user --priority-cap 5
    ground keys show ~/.orbitd/keys/ops-alice.key
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from flight.keyring import DEFAULT_USER_PRIORITY_CAP, MAX_PRIORITY
from ground.pki import DEFAULT_HOSTS, GROUND_PORT, SPACE_PORT, BrokerListeners, PkiError, init_pki, revoke_identity
from ground.signer import generate_key, load_signer, read_public_key
from link.envelope import fingerprint
from link.messages import Role

DEFAULT_KEY_DIR = Path(os.environ.get("ORBITD_KEY_DIR", Path.home() / ".orbitd" / "keys"))


def cmd_pki_init(args: argparse.Namespace) -> int:
    ground: dict[str, str] | None = None
    if args.ground:
        ground = {}
        for item in args.ground:
            name, sep, role = item.partition("=")
            if not sep:
                raise PkiError(f"--ground takes NAME=ROLE, got {item!r}")
            ground[name] = role
    out: Path = args.out
    config_dir = args.config_dir or str((out / "broker").resolve())
    listeners = BrokerListeners(config_dir, args.space_port, args.ground_port, args.bind)
    # Mosquitto's store: the container's volume where the broker runs in one (--config-dir), else
    # beside its files on this machine (made with them).
    persistence = "/mosquitto/data/" if args.config_dir else f"{(out / 'broker' / 'data').resolve()}/"
    pki = init_pki(out, args.sat, hosts=args.host or DEFAULT_HOSTS, ground=ground, listeners=listeners,
                   persistence_dir=persistence)
    if not args.config_dir:
        (out / "broker" / "data").mkdir(mode=0o700, exist_ok=True)
    print(f"wrote {pki.root}:")
    print("  ca/          the two certificate authorities: keep their .key files offline")
    print(f"  broker/      Mosquitto: mosquitto.conf (TLS on {args.space_port} space, {args.ground_port} ground), acl")
    for sat in args.sat:
        print(f"  {sat + '/':<12} flightd and plant identities: copy to {sat}'s board")
    print("  ground/      ground identities and ca.pem: copy to the ground machines")
    return 0


def cmd_pki_revoke(args: argparse.Namespace) -> int:
    name = revoke_identity(args.out, args.certificate)
    print(f"revoked {name}: restart the broker (it reads the CRL when it starts)")
    return 0


def _satellite_entry(name: str, role: str, public_key: bytes, priority_cap: int | None) -> str:
    lines = ["[[security.keys]]", f'name = "{name}"', f'role = "{role}"', f'public_key = "{public_key.hex()}"']
    if priority_cap is not None:
        lines.append(f"priority_cap = {priority_cap}")
    return "\n".join(lines)


def cmd_keys_new(args: argparse.Namespace) -> int:
    signer = generate_key(args.dir, args.name)
    cap = args.priority_cap
    if cap is None and args.role == Role.USER.value:
        cap = DEFAULT_USER_PRIORITY_CAP
    entry = _satellite_entry(args.name, args.role, signer.public_key, cap)
    print(f"key {args.name}: fingerprint {signer.fingerprint}; private key {args.dir / (args.name + '.key')}")
    if args.config is not None:
        with args.config.open("a") as f:
            f.write(f"\n{entry}\n")
        print(f"appended to {args.config}")
        return 0
    print("Give the satellite the public key: in flightd's configuration (before launch, or --config),")
    print("or later with a signed `add_key` command from an operator key. Configuration entry:\n")
    print(entry)
    return 0


def cmd_keys_show(args: argparse.Namespace) -> int:
    path: Path = args.file
    public = load_signer(path).public_key if path.suffix == ".key" else read_public_key(path)
    print(f"{path.stem} fingerprint {fingerprint(public)} public key {public.hex()}")
    return 0


def add_security_parsers(subparsers: Any) -> None:
    """Add ``pki`` and ``keys`` to the ``ground`` command's subparsers."""
    pki = subparsers.add_parser("pki", help="the locked broker's certificates and configuration")
    sub = pki.add_subparsers(dest="pki_command", required=True)
    s = sub.add_parser("init", help="make CAs, broker and client certificates, mosquitto.conf and the ACL")
    s.add_argument("--out", type=Path, required=True, help="directory to write (must not hold a PKI yet)")
    s.add_argument("--sat", action="append", required=True, help="a satellite id (repeat for each)")
    s.add_argument("--host", action="append", default=None,
                   help=f"a name or address clients use for the broker (repeat; default {', '.join(DEFAULT_HOSTS)})")
    s.add_argument("--ground", action="append", metavar="NAME=ROLE",
                   help="a ground identity, role operator|user|observer (repeat; default one of each)")
    s.add_argument("--space-port", type=int, default=SPACE_PORT)
    s.add_argument("--ground-port", type=int, default=GROUND_PORT)
    s.add_argument("--bind", default="0.0.0.0", help="address the listeners bind")
    s.add_argument("--config-dir", help="the broker directory as Mosquitto sees it (e.g. /mosquitto/config)")
    s.set_defaults(handler=cmd_pki_init)
    s = sub.add_parser("revoke", help="revoke an identity (its certificate joins the CRL)")
    s.add_argument("--out", type=Path, required=True, help="the PKI directory")
    s.add_argument("certificate", type=Path)
    s.set_defaults(handler=cmd_pki_revoke)

    keys = subparsers.add_parser("keys", help="Ed25519 keys that sign jobs, commands and uploads")
    sub = keys.add_subparsers(dest="keys_command", required=True)
    s = sub.add_parser("new", help="make a signing key")
    s.add_argument("name")
    s.add_argument("--role", choices=[r.value for r in Role], required=True)
    s.add_argument("--priority-cap", type=int, choices=range(MAX_PRIORITY + 1), metavar="0..9",
                   help=f"highest job priority of a user key (default {DEFAULT_USER_PRIORITY_CAP})")
    s.add_argument("--dir", type=Path, default=DEFAULT_KEY_DIR, help=f"key directory (default {DEFAULT_KEY_DIR})")
    s.add_argument("--config", type=Path, help="append the satellite's entry to this flightd configuration file")
    s.set_defaults(handler=cmd_keys_new)
    s = sub.add_parser("show", help="fingerprint and public key of a .key or .pub file")
    s.add_argument("file", type=Path)
    s.set_defaults(handler=cmd_keys_show)
