"""What every ``ground`` subcommand shares: the global options, the client they describe, JSON output.

The global options come before the subcommand: ``ground [--broker URL] [--sat ID] [--timeout S]
[--key-id ID] [--key HEX] <command> ...``; defaults from ``ORBITD_BROKER``, ``ORBITD_SAT``,
``ORBITD_COMMAND_KEY_ID`` and ``ORBITD_COMMAND_KEY``. A subcommand's handler reads them as
``args.broker``, ``args.sat``, ``args.timeout`` (s), ``args.key_id`` and ``args.key``.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from ground.client import GroundClient
from link.auth import load_key


def add_global_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--broker``, ``--sat``, ``--timeout``, ``--key-id`` and ``--key`` to ``parser``."""
    parser.add_argument("--broker", default=os.environ.get("ORBITD_BROKER", "mqtt://127.0.0.1:1883"))
    parser.add_argument("--sat", default=os.environ.get("ORBITD_SAT", "sat1"))
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for replies and results")
    parser.add_argument("--key-id", default=os.environ.get("ORBITD_COMMAND_KEY_ID", "ground"))
    parser.add_argument("--key", help="command key, 64 hex digits (or ORBITD_COMMAND_KEY)")


def client_from_args(args: argparse.Namespace) -> GroundClient:
    """The (not yet connected) client the global options describe; the key is ``--key``, else
    ``ORBITD_COMMAND_KEY``, else none. Raises :class:`link.auth.AuthError` for a malformed key."""
    key_hex = args.key or os.environ.get("ORBITD_COMMAND_KEY")
    key = load_key(key_hex) if key_hex else None
    return GroundClient(args.broker, args.sat, key_id=args.key_id, key=key, timeout_s=args.timeout)


def print_json(data: Any) -> None:
    """Print ``data`` as the ``--json`` output of a subcommand: indented, keys sorted, others as str."""
    print(json.dumps(data, indent=2, sort_keys=True, default=str))
