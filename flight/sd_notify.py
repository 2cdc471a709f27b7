"""The systemd notification protocol, without a dependency: one datagram per message.

sd_notify(3): a service started with ``Type=notify`` finds the address of the service manager's
socket in ``$NOTIFY_SOCKET`` and sends newline-separated ``KEY=VALUE`` assignments to it in one
``AF_UNIX`` datagram: ``READY=1`` (start-up finished), ``STATUS=...`` (free text shown by
``systemctl status``), ``WATCHDOG=1`` (keep-alive), ``STOPPING=1``. An address beginning with
``@`` names a socket in the Linux abstract namespace (the ``@`` stands for a leading NUL byte).

sd_watchdog_enabled(3): ``$WATCHDOG_USEC`` is the watchdog period in µs, and applies to this
process only if ``$WATCHDOG_PID`` is unset or equals its pid; the manual recommends sending
``WATCHDOG=1`` at half the period.

Sending never raises and never blocks the event loop (the socket is non-blocking; a full queue
drops the message, which is logged).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("flightd.systemd")


def parse_watchdog_s(environ: Mapping[str, str], pid: int) -> float | None:
    """The watchdog period (s) systemd asks of process ``pid``, or None when there is none."""
    usec = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and (not owner.isdigit() or int(owner) != pid):
        return None
    return int(usec) / 1e6


def socket_address(notify_socket: str) -> str | None:
    """The ``AF_UNIX`` address for ``$NOTIFY_SOCKET`` (``@name`` -> abstract ``\\0name``);
    None for anything that is not a path or an abstract name."""
    if notify_socket.startswith("@") and len(notify_socket) > 1:
        return "\0" + notify_socket[1:]
    if notify_socket.startswith("/"):
        return notify_socket
    return None


class SystemdNotifier:
    """Messages to the service manager; does nothing (``enabled`` False) outside ``Type=notify``."""

    def __init__(self, environ: Mapping[str, str] | None = None, pid: int | None = None) -> None:
        env = os.environ if environ is None else environ
        self.pid = os.getpid() if pid is None else pid
        raw = env.get("NOTIFY_SOCKET", "")
        self.address = socket_address(raw) if raw else None
        if raw and self.address is None:
            log.warning("NOTIFY_SOCKET=%r is neither a path nor an abstract name: not notifying systemd", raw)
        self.watchdog_s = parse_watchdog_s(env, self.pid)
        self._socket: socket.socket | None = None
        self._failed = False
        self.sent = 0

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` assignments in one datagram; True if it went out."""
        if self.address is None:
            return False
        data = "\n".join(assignments).encode()
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._socket.setblocking(False)
            self._socket.sendto(data, self.address)
        except OSError as exc:
            if not self._failed:
                log.error("cannot notify systemd at %r: %s", self.address, exc)
            self._failed = True
            return False
        if self._failed:
            log.info("notifying systemd again")
        self._failed = False
        self.sent += 1
        return True

    def ready(self, status: str) -> bool:
        return self.notify("READY=1", f"STATUS={status}")

    def status(self, status: str) -> bool:
        return self.notify(f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str) -> bool:
        return self.notify("STOPPING=1", f"STATUS={status}")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
