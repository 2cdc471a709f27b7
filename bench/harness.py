"""Shared set-up of the link benchmarks: a loopback Mosquitto and a flightd process around it."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from ground.client import GroundClient, GroundError
from hil.mosquitto_broker import MosquittoBroker

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Rig:
    broker: MosquittoBroker
    flightd: subprocess.Popen[bytes]
    workdir: Path

    def cpu_s(self, exclude_cpus: set[int] | None = None) -> float:
        """CPU seconds (user + system) flightd used so far, ended threads included; ``exclude_cpus``:
        less the threads pinned to exactly those CPUs (the inference threads), from /proc."""
        total = _stat_cpu_s(Path(f"/proc/{self.flightd.pid}/stat").read_text())
        if exclude_cpus:
            for task in Path(f"/proc/{self.flightd.pid}/task").iterdir():
                try:
                    stat, status = (task / "stat").read_text(), (task / "status").read_text()
                except OSError:  # a thread that ended meanwhile
                    continue
                if _allowed_cpus(status) == exclude_cpus:
                    total -= _stat_cpu_s(stat)
        return total

    def rss_mb(self) -> dict[str, float]:
        """flightd's resident memory now and at its peak (MiB), from /proc."""
        fields = {}
        for line in Path(f"/proc/{self.flightd.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
        return fields


def _stat_cpu_s(stat: str) -> float:
    """utime + stime (s) of a /proc/<pid>[/task/<tid>]/stat line (fields 14 and 15)."""
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _allowed_cpus(status: str) -> set[int]:
    """The CPUs of ``Cpus_allowed_list`` in a /proc status text ("0-1,3" -> {0, 1, 3})."""
    for line in status.splitlines():
        if line.startswith("Cpus_allowed_list:"):
            cpus: set[int] = set()
            for part in line.split(":", 1)[1].strip().split(","):
                lo, _, hi = part.partition("-")
                cpus.update(range(int(lo), int(hi or lo) + 1))
            return cpus
    return set()


@asynccontextmanager
async def rig(
    model: str | None, threads: int = 2, concurrency: int = 1, settings: dict[str, str] | None = None,
    shell_cpus: set[int] | None = None, python: str = sys.executable, models: Path = REPO / "models",
) -> AsyncIterator[Rig]:
    """Mosquitto + flightd (``model`` preloaded unless None, ``threads`` intra-op threads) on loopback;
    ``settings``: more ``ORBITD_*`` environment for flightd; ``shell_cpus``: the CPUs Mosquitto and
    flightd's process run on (flightd's inference threads re-pin themselves to
    ``ORBITD_EXECUTOR__INFERENCE_CPUS`` when that setting is given); ``python`` runs flightd (another
    virtual environment's interpreter: bench.board_install)."""
    with tempfile.TemporaryDirectory(prefix="orbitd-bench-") as tmp:
        workdir = Path(tmp)
        broker = MosquittoBroker(workdir / "mosquitto")
        broker.start()
        if shell_cpus and broker.proc is not None:
            os.sched_setaffinity(broker.proc.pid, shell_cpus)
        env = {
            **os.environ,
            "ORBITD_EXECUTOR__PRELOAD": json.dumps([model] if model else []),
            "ORBITD_EXECUTOR__INTRA_OP_THREADS": str(threads),
            "ORBITD_EXECUTOR__MAX_CONCURRENCY": str(concurrency),
            "ORBITD_JOURNAL__SYNCHRONOUS": os.environ.get("ORBITD_JOURNAL__SYNCHRONOUS", "FULL"),
            **(settings or {}),
        }
        log = (workdir / "flightd.log").open("wb")
        args = [python, "-m", "flight.cli", "--broker", broker.url, "--sat", "bench",
                "--data-dir", str(workdir / "data"), "--models", str(models), "--log-level", "WARNING"]
        if os.environ.get("ORBITD_PROFILE"):  # profile flightd: ORBITD_PROFILE=/path/flightd.prof
            # the event loop thread's CPU time (time.thread_time), not wall time: on a loaded or pinned
            # machine wall time charges a syscall with the time other processes ran meanwhile
            code = ("import cProfile, sys, time; from flight.cli import main; p = cProfile.Profile(time.thread_time);"
                    f" sys.argv = ['flightd'] + sys.argv[1:]; p.enable()\ntry: main()\n"
                    f"finally: p.disable(); p.dump_stats({os.environ['ORBITD_PROFILE']!r})")
            args[1:3] = ["-c", code]
        pin = (lambda: os.sched_setaffinity(0, shell_cpus)) if shell_cpus else None
        proc = subprocess.Popen(args, stdout=log, stderr=log, cwd=workdir, env=env, preexec_fn=pin)
        try:
            deadline = time.monotonic() + 60
            async with GroundClient(broker.url, "bench", timeout_s=1.0) as ground:
                while True:
                    try:
                        await ground.ping()
                        break
                    except GroundError:
                        if proc.poll() is not None or time.monotonic() > deadline:
                            log_text = (workdir / "flightd.log").read_text()
                            raise RuntimeError(f"flightd did not start: {log_text}") from None
            yield Rig(broker, proc, workdir)
        finally:
            proc.send_signal(signal.SIGINT if os.environ.get("ORBITD_PROFILE") else signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
            broker.stop()


def report(result: dict[str, object], as_json: bool) -> None:
    """Print a bench's result: one JSON object (``--json``), else one ``key: value`` line per key."""
    print(json.dumps(result) if as_json else "\n".join(f"{k}: {v}" for k, v in result.items()))


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def settle(seconds: float = 0.5) -> None:
    await asyncio.sleep(seconds)


CPU_FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "fma", "asimd", "asimddp")
"""CPU features that change inference and numpy speed, reported with every figure."""


def cpu_info() -> dict[str, object]:
    """The CPU a bench ran on, for its JSON: model name, logical CPUs, machine and the features of
    CPU_FLAGS_OF_INTEREST it has (from /proc/cpuinfo; "unknown" where that file is absent)."""
    model, flags = "unknown", set[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("model name", "hardware") and model == "unknown":
                model = value.strip()
            elif key in ("flags", "features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"model": model, "count": os.cpu_count(), "machine": platform.machine(),
            "flags": [f for f in CPU_FLAGS_OF_INTEREST if f in flags]}
