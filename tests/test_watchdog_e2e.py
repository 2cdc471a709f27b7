"""flightd under a real ``NOTIFY_SOCKET``: READY=1 only once the broker is connected, WATCHDOG=1
while every task checks in, and a hung dispatcher stopping WATCHDOG=1 within one watchdog period.

The test plays systemd's part: it binds the AF_UNIX datagram socket, starts flightd (a real
process) with ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC`` in its environment, and timestamps every
datagram on arrival. The dispatcher is hung with flightd's test-only fault hook,
``supervision.test_hang_dispatcher_file`` (set here through ``ORBITD_SUPERVISION__...``; off unless
a setting names a file): once the file exists the real dispatcher task, in the real event loop,
awaits an event that never comes, while the link, the control cycle and the journal writer go on.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ground.client import GroundClient
from hil.mosquitto_broker import MosquittoBroker
from link.messages import JobState
from tests.support import FlightdProcess, copy_bundled, wait_online, wait_until

pytestmark = pytest.mark.slow

WATCHDOG_S = 4.0
MODEL = "digits-fp32"


class NotifyListener:
    """The service manager's end: every datagram with its arrival time (``time.monotonic()``)."""

    def __init__(self, path: Path) -> None:
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(path))
        self.socket.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.socket.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def times(self, assignment: str) -> list[float]:
        return [t for t, text in list(self.messages) if assignment in text.split("\n")]

    def texts(self, prefix: str, since: float = 0.0) -> list[str]:
        return [line for t, text in list(self.messages) if t >= since
                for line in text.split("\n") if line.startswith(prefix)]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.socket.close()


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    return copy_bundled(tmp_path / "models", MODEL)


def image() -> np.ndarray:
    return np.zeros((1, 1, 8, 8), dtype=np.float32)


async def test_ready_after_the_broker_and_a_hung_dispatcher_stops_the_watchdog(
    mosquitto: MosquittoBroker, tmp_path: Path, models_dir: Path
) -> None:
    listener = NotifyListener(tmp_path / "notify")
    hang = tmp_path / "hang-dispatcher"
    mosquitto.stop()
    proc = FlightdProcess(mosquitto.url, tmp_path / "data", models_dir, env={
        "NOTIFY_SOCKET": str(tmp_path / "notify"),
        "WATCHDOG_USEC": str(int(WATCHDOG_S * 1e6)),
        "ORBITD_SUPERVISION__TEST_HANG_DISPATCHER_FILE": str(hang),
    })
    proc.start()
    try:
        # The broker is down: flightd is alive (keep-alives) but not ready.
        await wait_until(lambda: len(listener.times("WATCHDOG=1")) >= 2, 60, "the first WATCHDOG=1")
        await asyncio.sleep(1.5)
        assert listener.times("READY=1") == [], "READY=1 before the broker was reachable"
        mosquitto.start()
        broker_up = time.monotonic()
        await wait_until(lambda: bool(listener.times("READY=1")), 30, f"READY=1; log:\n{proc.log()}")
        assert listener.times("READY=1")[0] > broker_up
        assert listener.texts("STATUS=online, mode nominal, 0 queued")

        await wait_online(mosquitto.url)
        async with GroundClient(mosquitto.url, "sat1") as ground:
            job = await ground.submit(MODEL, {"image": image()})
            await ground.wait_result(job.job_id, timeout_s=30)  # the dispatcher works

            # Steady keep-alives: never a gap systemd would act on.
            steady_from = time.monotonic()
            await asyncio.sleep(WATCHDOG_S)
            steady = [t for t in listener.times("WATCHDOG=1") if t >= steady_from]
            assert len(steady) >= 2
            gaps = np.diff([steady_from, *steady])
            assert gaps.max() < WATCHDOG_S / 2 + 0.5, f"keep-alive gaps {gaps}"

            hang.touch()
            hung_at = time.monotonic()
            await asyncio.sleep(2 * WATCHDOG_S)
            pings = listener.times("WATCHDOG=1")
            last = max(pings)
            print(f"last WATCHDOG=1 {last - hung_at:.2f} s after the hang (watchdog period {WATCHDOG_S:g} s)")
            assert last <= hung_at + WATCHDOG_S, f"WATCHDOG=1 went on {last - hung_at:.2f} s after the hang"
            assert any(hung_at - WATCHDOG_S / 2 - 0.5 <= t <= hung_at + 0.5 for t in pings), "no pings before the hang"
            late = listener.texts("STATUS=", since=hung_at)
            assert any("LATE: dispatcher" in s for s in late), late
            assert not any("link " in s.split("LATE:")[-1] for s in late)  # only the dispatcher is late

            # The rest of flightd still works: the link answers, intake journals, nothing is dispatched.
            pong = await ground.ping()
            assert pong["control_cycles"] > 0
            stuck = await ground.submit(MODEL, {"image": image()})
            assert stuck.ack.state is JobState.QUEUED
            await asyncio.sleep(1.5)
            assert (await ground.job(stuck.job_id))["state"] == "queued"
        assert "TEST fault hook" in proc.log()
        assert "not stroking the watchdog: dispatcher" in proc.log()
    finally:
        proc.stop()
        listener.close()
