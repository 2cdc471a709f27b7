"""What every ``ground`` subcommand shares: the global options, the client they describe, JSON output,
input arrays read from and outputs written to ``.npy``/``.npz`` files.

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

import numpy as np

from ground.client import GroundClient, GroundError
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
    signing_key = getattr(args, "signing_key", None)  # parsers built without add_global_options lack it
    signer = load_signer(signing_key) if signing_key is not None else None
    return GroundClient(args.broker, args.sat, key_id=args.key_id, key=command_key(args), timeout_s=args.timeout,
                        signer=signer, tls=tls_from_args(args))


def command_key(args: argparse.Namespace) -> bytes | None:
    """The command key: ``--key``, else ``ORBITD_COMMAND_KEY``, else none; AuthError when malformed."""
    key_hex = args.key or os.environ.get("ORBITD_COMMAND_KEY")
    return load_key(key_hex) if key_hex else None


def print_json(data: Any) -> None:
    """Print ``data`` as the ``--json`` output of a subcommand: indented, keys sorted, others as str."""
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def load_inputs(path: Path, input_name: str | None, model_inputs: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Arrays from an ``.npz`` (names are its keys) or an ``.npy`` (one input, named or the model's only one)."""
    if not path.is_file():
        raise GroundError(f"input file {path} does not exist")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    array = np.load(path, allow_pickle=False)
    if input_name is None:
        if not model_inputs or len(model_inputs) != 1:
            names = [i["name"] for i in model_inputs or []]
            raise GroundError(f"model takes inputs {names}: pass an .npz or --input-name")
        input_name = str(model_inputs[0]["name"])
    return {input_name: array}


def save_outputs(path: Path, outputs: dict[str, Any]) -> None:
    if len(outputs) == 1 and path.suffix != ".npz":
        np.save(path, next(iter(outputs.values())))
    else:
        np.savez(path, **outputs)
