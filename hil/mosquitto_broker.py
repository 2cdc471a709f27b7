"""A real Mosquitto on a free loopback port with its own config file, for tests and benchmarks.

``set_tcp_nodelay true`` on the broker side matters as much as on the client: see
../shared/reference/boards-and-runtime.md ("MQTT here"). ``max_packet_size`` replaces the deprecated
``message_size_limit``.

With ``locked=`` (the ``broker`` directory of ``ground pki init``) it is the locked broker of
docs/security.md instead: two TLS listeners (space on ``port``, ground on ``ground_port``), client
certificates, the ACL, no anonymous access.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from ground.pki import BrokerListeners
from hil import child_process
from hil.embedded_broker import free_port


class MosquittoNotFound(RuntimeError):
    """The mosquitto binary is not installed (Debian: ``apt-get install -y mosquitto``)."""


def mosquitto_binary() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and Path(candidate).exists():
            return candidate
    raise MosquittoNotFound("mosquitto is not installed: apt-get install -y mosquitto")


class MosquittoBroker:
    """A mosquitto process; ``start()``/``stop()`` may be repeated on the same port (broker restarts).

    ``persistent``: keep sessions and queued messages in ``workdir`` across restarts (``persistence
    true``, saved after every change); ``extra_config``: lines appended to the config (e.g. a bridge from
    :func:`hil.link.bridge.bridge_config`); ``host``: the listener's address; ``launcher``: a command
    prefix that runs mosquitto elsewhere (``ip netns exec NAME``: see :mod:`hil.link.netns`), in which
    case ``host`` must be reachable from here for the readiness check; ``locked``: the ``broker``
    directory of ``ground pki init``, served on TLS listeners ``port`` (space) and ``ground_port``.
    """

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        max_packet_bytes: int = 64 * 1024 * 1024,
        persistent: bool = False,
        extra_config: Sequence[str] = (),
        host: str = "127.0.0.1",
        launcher: Sequence[str] = (),
        locked: Path | None = None,
        ground_port: int | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.launcher = tuple(launcher)
        self.port = port or free_port()
        self.max_packet_bytes = max_packet_bytes
        self.persistent = persistent
        self.extra_config = tuple(extra_config)
        self.locked = locked
        self.ground_port = (ground_port or free_port()) if locked is not None else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.config_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"

    @property
    def url(self) -> str:
        """The (space) listener: ``mqtts://`` when locked."""
        return f"{'mqtts' if self.locked else 'mqtt'}://{self.host}:{self.port}"

    @property
    def ground_url(self) -> str:
        """The ground listener of a locked broker (the only listener otherwise)."""
        return self.url if self.ground_port is None else f"mqtts://{self.host}:{self.ground_port}"

    def write_config(self) -> None:
        self.config_path.write_text(
            "\n".join(
                [
                    *self._run_as_invoker(),
                    "set_tcp_nodelay true",
                    f"max_packet_size {self.max_packet_bytes}",
                    "max_inflight_messages 1000",
                    "max_queued_messages 100000",
                    *self._persistence(),
                    "log_dest stderr",
                    "log_type error",
                    "log_type warning",
                    *self._listeners(),
                    *self.extra_config,
                    "",
                ]
            )
        )

    def _run_as_invoker(self) -> list[str]:
        # Started as root, mosquitto drops to the "mosquitto" user, which can neither write the test's
        # workdir (persistence) nor read the 0600 keys of a PKI directory (locked, or a bridge's TLS
        # files in extra_config): the broker runs as whoever started it.
        return ["user root"] if os.geteuid() == 0 else []

    def _listeners(self) -> list[str]:
        if self.locked is None:
            return [f"listener {self.port} {self.host}", "allow_anonymous true"]
        assert self.ground_port is not None
        return BrokerListeners(str(self.locked.resolve()), self.port, self.ground_port, self.host).lines()

    def _persistence(self) -> list[str]:
        if not self.persistent:
            return ["persistence false"]
        # saved whenever one change has happened (autosave_on_changes counts changes against the interval)
        return [
            "persistence true",
            f"persistence_location {self.workdir}/",
            "autosave_on_changes true",
            "autosave_interval 1",
        ]

    def start(self, timeout_s: float = 10.0) -> None:
        self.write_config()
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*self.launcher, mosquitto_binary(), "-c", str(self.config_path)],
            stdout=log,
            stderr=log,
            stdin=subprocess.PIPE,  # kept open: a remote launcher (ssh) stops mosquitto when it closes
        )
        deadline = time.monotonic() + timeout_s
        waiting = [p for p in (self.port, self.ground_port) if p is not None]
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {self.log_path.read_text()}")
            try:
                with socket.create_connection((self.host, waiting[0]), timeout=0.2):
                    waiting.pop(0)
                if not waiting:
                    return
            except OSError:
                time.sleep(0.02)
        raise TimeoutError(f"mosquitto did not listen on port(s) {waiting} within {timeout_s} s")

    def stop(self) -> None:
        child_process.stop(self.proc, 5.0)
        self.proc = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
