"""Command-line options for a client's TLS identity, shared by ``ground`` and ``hil plant``.

Kept apart from :mod:`ground.options` so that a command can offer them without importing the ground
client. The files come from ``ground pki init`` (docs/security.md).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from link.transport import TlsFiles


def add_tls_options(parser: argparse.ArgumentParser) -> None:
    """``--tls-ca``, ``--tls-cert``, ``--tls-key`` (defaults ``ORBITD_TLS_CA|CERT|KEY``), read by
    :func:`tls_from_args`."""
    parser.add_argument("--tls-ca", type=Path, default=env_path("ORBITD_TLS_CA"),
                        help="CA certificate that verifies an mqtts:// broker (or ORBITD_TLS_CA)")
    parser.add_argument("--tls-cert", type=Path, default=env_path("ORBITD_TLS_CERT"),
                        help="this client's certificate (or ORBITD_TLS_CERT)")
    parser.add_argument("--tls-key", type=Path, default=env_path("ORBITD_TLS_KEY"),
                        help="this client's TLS private key (or ORBITD_TLS_KEY)")


def env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def tls_from_args(args: argparse.Namespace) -> TlsFiles | None:
    """The TLS files of the global options (None without ``--tls-ca``, or for a parser without them)."""
    ca, cert, key = (getattr(args, name, None) for name in ("tls_ca", "tls_cert", "tls_key"))
    if ca is None:
        if cert is not None or key is not None:
            raise ValueError("--tls-cert and --tls-key need --tls-ca")
        return None
    return TlsFiles(ca, cert, key)
