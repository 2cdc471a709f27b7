"""The board side in its own Linux network namespace, joined to the ground side by a veth pair.

::

    root namespace (ground side)                    namespace orbitd-<tag> (board side)
    ground Mosquitto 127.0.0.1  <-  link relay  <-  veth 10.213.k.1/30 == 10.213.k.2/30 veth
                                    (hil.link.relay)                       onboard Mosquitto + bridge, flightd

The board's only way to the ground is the veth pair, and the ground broker listens on loopback, so
every byte between the two brokers goes through the relay, which listens on the host end of the pair.
Needs root (CAP_NET_ADMIN) and iproute2. Addresses come from 10.213.0.0/16 (one /30 per board); the
subnet is refused if any route of the host already covers it, and the namespace and the host end of
the pair are removed on exit, as are the processes started in the namespace.

A :class:`NetnsBoard` is a :class:`hil.link.board.BoardSide`: ``launcher`` runs a command on the board,
``board_address`` is where the board's services listen, ``ground_address`` is where the board reaches
the ground side (the relay). A board reached by ssh (:class:`hil.link.board.SshBoard`) provides the same.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

from hil.link.board import LaunchedHere

_TAG = re.compile(r"^[a-z0-9]{1,8}$")

SUPERNET = ipaddress.IPv4Network("10.213.0.0/16")
"""Where board subnets are taken from (a private range, RFC 1918)."""


class NetnsError(RuntimeError):
    """The namespace could not be set up (not root, no iproute2, name or subnet taken)."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {result.stderr.strip() or result.returncode}")
    return result


def namespaces() -> set[str]:
    """Names of the network namespaces that exist now."""
    out = _ip("-j", "netns", "list").stdout.strip()
    return {entry["name"] for entry in json.loads(out)} if out else set()


def _routes() -> list[ipaddress.IPv4Network]:
    nets = []
    for route in json.loads(_ip("-j", "-4", "route", "show", "table", "all").stdout or "[]"):
        dst = route.get("dst", "")
        if dst and dst != "default":
            with contextlib.suppress(ValueError):
                nets.append(ipaddress.IPv4Network(dst, strict=False))
    return nets


class NetnsBoard(LaunchedHere):
    """``with NetnsBoard("t1") as board:`` a namespace ``orbitd-t1`` with a veth pair (host end
    ``obh-t1`` at ``ground_address``, board end ``obb-t1`` at ``board_address``) and loopback up.

    ``tag``: 1-8 characters of [a-z0-9] (interface names are limited to 15 characters); ``index`` picks the
    /30 within 10.213.0.0/16 (default: from the process id). Raises :class:`NetnsError` when not root,
    without iproute2, or when the namespace, the interfaces or the subnet are taken.
    """

    def __init__(self, tag: str, index: int | None = None) -> None:
        if not _TAG.match(tag):
            raise ValueError(f"board tag {tag!r}: 1-8 characters of [a-z0-9]")
        self.tag = tag
        self.name = f"orbitd-{tag}"
        self.host_if = f"obh-{tag}"
        self.board_if = f"obb-{tag}"
        subnets = list(SUPERNET.subnets(new_prefix=30))
        self.subnet = subnets[(os.getpid() if index is None else index) % len(subnets)]
        hosts = list(self.subnet.hosts())
        self._ground, self._board = str(hosts[0]), str(hosts[1])
        self.processes: list[subprocess.Popen[Any]] = []
        self._created = False

    @property
    def launcher(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    @property
    def board_address(self) -> str:
        return self._board

    @property
    def ground_address(self) -> str:
        return self._ground

    def create(self) -> None:
        if os.geteuid() != 0:
            raise NetnsError("network namespaces need root (CAP_NET_ADMIN)")
        if shutil.which("ip") is None:
            raise NetnsError("iproute2 (the ip command) is not installed")
        if self.name in namespaces():
            raise NetnsError(f"network namespace {self.name} already exists")
        taken = [n for n in _routes() if n.overlaps(self.subnet)]
        if taken:
            raise NetnsError(f"subnet {self.subnet} overlaps routes of this host: {', '.join(map(str, taken))}")
        self._created = True
        try:
            _ip("netns", "add", self.name)
            _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.board_if)
            _ip("link", "set", self.board_if, "netns", self.name)
            _ip("addr", "add", f"{self._ground}/{self.subnet.prefixlen}", "dev", self.host_if)
            _ip("link", "set", self.host_if, "up")
            _ip("-n", self.name, "addr", "add", f"{self._board}/{self.subnet.prefixlen}", "dev", self.board_if)
            _ip("-n", self.name, "link", "set", self.board_if, "up")
            _ip("-n", self.name, "link", "set", "lo", "up")
        except BaseException:
            self.destroy()
            raise

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside the namespace; it is killed by :meth:`destroy` if still running."""
        proc: subprocess.Popen[Any] = subprocess.Popen([*self.launcher, *argv], **kwargs)
        self.processes.append(proc)
        return proc

    def run(self, argv: Sequence[str], timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the namespace to completion (text output captured)."""
        return subprocess.run([*self.launcher, *argv], capture_output=True, text=True, timeout=timeout_s, check=False)

    def pids(self) -> list[int]:
        """Processes living in the namespace now."""
        out = _ip("netns", "pids", self.name, check=False).stdout.split()
        return [int(p) for p in out if p.isdigit()]

    def destroy(self) -> None:
        """Stop what runs inside, remove the veth pair and the namespace. Safe to call twice."""
        for proc in self.processes:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.processes.clear()
        if not self._created:
            return
        if self.name in namespaces():
            for pid in self.pids():  # anything left was started in this namespace, which is ours
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        _ip("link", "del", self.host_if, check=False)  # takes the board end with it
        _ip("netns", "del", self.name, check=False)
        self._created = False

    def __enter__(self) -> Self:
        self.create()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.destroy()
