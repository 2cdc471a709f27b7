"""Running a board's own tools (``vcgencmd``, ``nvpmodel``) through an injectable runner.

A :data:`CommandRunner` takes an argument vector and returns a :class:`CommandResult`; it never
raises. :func:`run_command` is the real one (``subprocess.run``, no shell, stdin from /dev/null so
a tool that asks a question, such as ``nvpmodel`` offering a reboot, gets end-of-file instead of
hanging). Tests pass a runner of their own or point the argument vector at a script.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

COMMAND_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class CommandResult:
    """What a command did: exit status (127: not found, 124: timed out, as in the shell), output."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def failure(self) -> str:
        """One line saying why the command failed (its own words where it printed any)."""
        said = (self.stderr.strip() or self.stdout.strip()).splitlines()
        detail = said[-1] if said else "no output"
        return f"`{' '.join(self.argv)}` exited with status {self.returncode}: {detail}"


CommandRunner = Callable[[Sequence[str]], CommandResult]


def run_command(argv: Sequence[str], timeout_s: float = COMMAND_TIMEOUT_S) -> CommandResult:
    """Run ``argv`` (no shell) and capture its output; failures come back as a result, not raised.

    The command runs in a session of its own so that on a timeout its whole process group is
    killed (a tool's children would otherwise keep the output pipes open past the timeout).
    """
    args = tuple(argv)
    try:
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )
    except FileNotFoundError:
        return CommandResult(args, 127, "", f"{args[0]}: command not found")
    except OSError as exc:
        return CommandResult(args, 126, "", f"{args[0]}: {exc}")
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return CommandResult(args, 124, "", f"timed out after {timeout_s:g} s")
    return CommandResult(args, proc.returncode, stdout, stderr)
