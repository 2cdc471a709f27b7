"""Where the board side runs, as the rig sees it: how to start a program there, how to signal it, and how
the two sides address each other. One runner (:class:`hil.link.rig.LinkRig`) drives every kind:

* :class:`hil.link.netns.NetnsBoard`: this host, in its own network namespace (a veth pair);
* :class:`LoopbackBoard`: this host's loopback (no isolation: the relay is the only thing between the
  brokers because the bridge is configured to go through it);
* :class:`SshBoard`: a real board (or anything with sshd: the emulated Pi's root, a namespace) reached
  by ssh.
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class BoardSide(Protocol):
    """``launcher``: command prefix that runs a program on the board (its arguments plain words: no
    spaces or shell characters); ``board_address``: where the board's services listen, reachable from
    here; ``ground_address``: where the board reaches the ground side (the relay listens there);
    ``python``: the interpreter of the board's orbitd install.

    :meth:`command` is the local argv that runs ``argv`` on the board with ``env`` added to its
    environment (any characters); :meth:`signal` delivers a signal to the program a launched process
    runs there (``SIGKILL``: a kill -9 of flightd, not of a local ssh client). A launched process keeps
    its stdin open (``stdin=PIPE``): a remote launcher stops its program when stdin closes."""

    @property
    def launcher(self) -> list[str]: ...

    @property
    def board_address(self) -> str: ...

    @property
    def ground_address(self) -> str: ...

    @property
    def python(self) -> str: ...

    def command(self, argv: Sequence[str], env: Mapping[str, str]) -> list[str]: ...

    def signal(self, proc: subprocess.Popen[Any], sig: int) -> None: ...


def with_env(argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """``argv`` run through ``env(1)`` with ``env`` added (nothing added: ``argv`` as it is)."""
    return ["env", *(f"{k}={v}" for k, v in env.items()), *argv] if env else list(argv)


class _Launching(Protocol):
    @property
    def launcher(self) -> list[str]: ...


class LaunchedHere:
    """A board side whose launcher runs the program itself on this host (``ip netns exec``, nothing):
    the launched process is the program, so a signal to it is a signal to the program."""

    @property
    def python(self) -> str:
        return sys.executable

    def command(self: _Launching, argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
        return [*self.launcher, *with_env(argv, env)]

    def signal(self, proc: subprocess.Popen[Any], sig: int) -> None:
        if proc.poll() is None:
            proc.send_signal(sig)


@dataclass(frozen=True)
class LoopbackBoard(LaunchedHere):
    """The board side on this host's loopback."""

    launcher: list[str] = field(default_factory=list)
    board_address: str = "127.0.0.1"
    ground_address: str = "127.0.0.1"


REMOTE_RUN = ('exec 3<&0; "$@" 3<&- < /dev/null & c=$!; echo $c > "$0"; '
              '{ cat <&3 > /dev/null; kill -TERM $c 2> /dev/null; } > /dev/null 2>&1 & w=$!; exec 3<&-; '
              'wait $c; s=$?; kill $w 2> /dev/null; rm -f "$0"; exit $s')
"""The POSIX sh wrapper :class:`SshBoard` runs a program in: it records the program's pid in ``$0`` (for
:meth:`SshBoard.signal`), and sends it SIGTERM when its stdin closes, i.e. when the local ssh client
ends (a stopped or killed launcher does not leave the program running on the board)."""


PID_FILE_PREFIX = "/tmp/orbitd-run-"
"""Where :class:`SshBoard` keeps the pid of each program it runs on the board."""


@dataclass(frozen=True)
class SshBoard:
    """A board reached by ``ssh`` (OpenSSH client; key authentication, no prompt).

    ``destination``: ssh's ``[user@]host``; ``board_address``: the board's address on the bench network
    (the onboard broker listens there); ``ground_address``: this host's address on that network (the
    relay listens there; the ground broker stays on loopback, so the board reaches the ground only
    through the relay); ``python``: the board's interpreter with orbitd's board install (and, for the
    plant, ``hil``); ``ssh_options``: e.g. ``("-i", key, "-o", "StrictHostKeyChecking=accept-new")``.

    Paths (data directory, models, broker config, scenario) are passed as they are on this host: the
    board must see them at the same paths (a shared or synchronised directory; docs/hil.md)."""

    destination: str
    board_address: str
    ground_address: str
    python: str = "python3"
    ssh_options: tuple[str, ...] = ()

    def _ssh(self) -> list[str]:
        return ["ssh", "-o", "BatchMode=yes", *self.ssh_options, self.destination]

    @property
    def launcher(self) -> list[str]:
        """A new pid file on the board at each use (one per launched program)."""
        pid_file = f"{PID_FILE_PREFIX}{uuid.uuid4().hex[:16]}.pid"
        return [*self._ssh(), "exec", "sh", "-c", shlex.quote(REMOTE_RUN), pid_file]

    def command(self, argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
        return [*self.launcher, *(shlex.quote(a) for a in with_env(argv, env))]

    def signal(self, proc: subprocess.Popen[Any], sig: int) -> None:
        """``sig`` to the program ``proc`` (launched by this board) runs on the board; RuntimeError
        when ssh fails. A program that has ended already is not an error."""
        args = [str(a) for a in proc.args] if isinstance(proc.args, list | tuple) else []
        pid_file = next((a for a in args if a.startswith(PID_FILE_PREFIX) and a.endswith(".pid")), None)
        if pid_file is None:
            raise ValueError("not a process this board launched")
        if proc.poll() is not None:
            return
        name = signal.Signals(sig).name.removeprefix("SIG")
        script = f"test -s {pid_file} || exit 0; kill -{name} $(cat {pid_file}) 2> /dev/null || true"
        done = subprocess.run([*self._ssh(), script], capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"ssh {self.destination}: {done.stderr.strip() or done.returncode}")
