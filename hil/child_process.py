"""Child processes the rigs start (Mosquitto, nats-server, Prometheus in the tests): how one is stopped."""

from __future__ import annotations

import subprocess


def stop(proc: subprocess.Popen[bytes] | None, timeout_s: float) -> None:
    """SIGTERM ``proc`` if it still runs, SIGKILL it after ``timeout_s`` s, and reap it; None: nothing."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
