"""What every ``ground`` subcommand shares: the global options, the client they describe, JSON output.

The global options come before the subcommand: ``ground [--broker URL] [--sat ID] [--timeout S]
[--signing-key FILE] [--tls-ca FILE --tls-cert FILE --tls-key FILE] [--key-id ID] [--key HEX]
<command> ...``; defaults from ``ORBITD_BROKER``, ``ORBITD_SAT``, ``ORBITD_SIGNING_KEY``,
``ORBITD_TLS_CA``, ``ORBITD_TLS_CERT``, ``ORBITD_TLS_KEY``, ``ORBITD_COMMAND_KEY_ID`` and
``ORBITD_COMMAND_KEY``. A subcommand's handler reads them as ``args.broker``, ``args.sat``,
``args.timeout`` (s), ``args.signing_key``, ``args.tls_ca``/``tls_cert``/``tls_key``, ``args.key_id``
and ``args.key``. ``--signing-key`` (an Ed25519 key of ``ground keys new``) signs every job, command
and upload (docs/security.md); ``--key`` is the legacy shared HMAC command key.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from ground.client import GroundClient
from ground.signer import load_signer
from ground.tls_options import add_tls_options, env_path, tls_from_args
from link.auth import load_key


def add_global_options(parser: argparse.ArgumentParser) -> None:
    """Add the global options (the module docstring) to ``parser``."""
    parser.add_argument("--broker", default=os.environ.get("ORBITD_BROKER", "mqtt://127.0.0.1:1883"))
    parser.add_argument("--sat", default=os.environ.get("ORBITD_SAT", "sat1"))
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for replies and results")
    parser.add_argument("--signing-key", type=Path, default=env_path("ORBITD_SIGNING_KEY"),
                        help="Ed25519 key file that signs jobs, commands and uploads (or ORBITD_SIGNING_KEY)")
    add_tls_options(parser)
    parser.add_argument("--key-id", default=os.environ.get("ORBITD_COMMAND_KEY_ID", "ground"))
    parser.add_argument("--key", help="legacy HMAC command key, 64 hex digits (or ORBITD_COMMAND_KEY)")


def client_from_args(args: argparse.Namespace) -> GroundClient:
    """The (not yet connected) client the global options describe; the HMAC key is ``--key``, else
    ``ORBITD_COMMAND_KEY``, else none. Raises :class:`link.auth.AuthError` for a malformed key,
    :class:`ground.signer.KeyFileError` (a ValueError) for an unusable signing key file."""
    key_hex = args.key or os.environ.get("ORBITD_COMMAND_KEY")
    key = load_key(key_hex) if key_hex else None
    signing_key = getattr(args, "signing_key", None)  # parsers built without add_global_options lack it
    signer = load_signer(signing_key) if signing_key is not None else None
    return GroundClient(args.broker, args.sat, key_id=args.key_id, key=key, timeout_s=args.timeout,
                        signer=signer, tls=tls_from_args(args))


def print_json(data: Any) -> None:
    """Print ``data`` as the ``--json`` output of a subcommand: indented, keys sorted, others as str."""
    print(json.dumps(data, indent=2, sort_keys=True, default=str))
