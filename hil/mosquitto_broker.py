"""A real Mosquitto on a free loopback port with its own config file, for tests and benchmarks.

``set_tcp_nodelay true`` on the broker side matters as much as on the client: see
../shared/reference/boards-and-runtime.md ("MQTT here"). ``max_packet_size`` replaces the deprecated
``message_size_limit``.

With ``locked=`` (the ``broker`` directory of ``ground pki init``) it is the locked broker of
docs/security.md instead: two TLS listeners (space on ``port``, ground on ``ground_port``), client
certificates, the ACL, no anonymous access.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from ground.pki import BrokerListeners
from hil.embedded_broker import free_port


class MosquittoNotFound(RuntimeError):
    """The mosquitto binary is not installed (Debian: ``apt-get install -y mosquitto``)."""


def mosquitto_binary() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and Path(candidate).exists():
            return candidate
    raise MosquittoNotFound("mosquitto is not installed: apt-get install -y mosquitto")


class MosquittoBroker:
    """A mosquitto process; ``start()``/``stop()`` may be repeated on the same port (broker restarts)."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        max_packet_bytes: int = 64 * 1024 * 1024,
        locked: Path | None = None,
        ground_port: int | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.max_packet_bytes = max_packet_bytes
        self.locked = locked
        self.ground_port = (ground_port or free_port()) if locked is not None else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.config_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"

    @property
    def url(self) -> str:
        """The (space) listener: ``mqtts://`` when locked."""
        return f"{'mqtts' if self.locked else 'mqtt'}://127.0.0.1:{self.port}"

    @property
    def ground_url(self) -> str:
        """The ground listener of a locked broker (the only listener otherwise)."""
        return self.url if self.ground_port is None else f"mqtts://127.0.0.1:{self.ground_port}"

    def _listener_lines(self) -> list[str]:
        if self.locked is None:
            return [f"listener {self.port} 127.0.0.1", "allow_anonymous true"]
        assert self.ground_port is not None
        # Started as root, Mosquitto drops to the `mosquitto` user, which cannot read the 0600 keys
        # of the PKI directory: keep the broker running as whoever started it.
        listeners = BrokerListeners(str(self.locked.resolve()), self.port, self.ground_port, "127.0.0.1")
        return [f"user {getpass.getuser()}", *listeners.lines()]

    def write_config(self) -> None:
        self.config_path.write_text(
            "\n".join(
                [
                    "set_tcp_nodelay true",
                    f"max_packet_size {self.max_packet_bytes}",
                    "max_inflight_messages 100",
                    "max_queued_messages 100000",
                    "persistence false",
                    "log_dest stderr",
                    "log_type error",
                    "log_type warning",
                    *self._listener_lines(),
                    "",
                ]
            )
        )

    def start(self, timeout_s: float = 10.0) -> None:
        self.write_config()
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.config_path)], stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout_s
        waiting = [p for p in (self.port, self.ground_port) if p is not None]
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {self.log_path.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", waiting[0]), timeout=0.2):
                    waiting.pop(0)
                if not waiting:
                    return
            except OSError:
                time.sleep(0.02)
        raise TimeoutError(f"mosquitto did not listen on port(s) {waiting} within {timeout_s} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
