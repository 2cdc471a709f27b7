"""The hardware-in-the-loop rig across a space link: the two sides as flown, and the link between them.

::

    ground side (this host)                              board side (a BoardSide: namespace, loopback, ...)
    ground Mosquitto <- LinkRelay (plan, clock) <----- onboard Mosquitto + bridge <- flightd, plant
    127.0.0.1          at board.ground_address         at board.board_address

* ground: a Mosquitto on loopback (persistent: the bridge's session and its queue survive a restart);
  the workload and the recorder connect to it. The bridge's session on it is created before the run
  (:meth:`LinkRig.commission`), as a flown mission's is at commissioning: a QoS 1 message reaches a
  session only once it exists, so without it a job sent before the first contact would find no
  subscriber on the ground broker and be dropped;
* the link: a :class:`hil.link.relay.LinkRelay` listening where the board reaches the ground side,
  relaying to the ground broker under the contact plan, on the plant's time (:class:`ToneClock`);
  out of contact it holds the bridge's connection attempt until the next acquisition (a terminal's
  proxy), so the bridge is up at the acquisition and does not retry every second through the gap;
* board: a Mosquitto (persistent, bridged out through the relay: :func:`hil.link.bridge.bridge_config`),
  flightd and the plant simulator, all started with the board's ``launcher`` and talking only to the
  onboard broker, so the governor never depends on the ground link;
* observers (the rig's, not the mission's): one client on each broker counting the bridged messages
  (:class:`hil.link.backlog.BridgeBacklog`) and, on the onboard broker, following flightd's status and
  the plant's time tones (which drive the link's clock). They reach the onboard broker over the
  board's own network (the veth pair), as a test harness reaches a board, never through the link.

Programs on the board are started with the board's :meth:`~hil.link.board.BoardSide.command` and
signalled with its :meth:`~hil.link.board.BoardSide.signal`, so the same rig drives a namespace, the
loopback and a board reached by ssh (:class:`hil.link.board.SshBoard`: a kill -9 of flightd is a
remote ``kill -KILL`` of flightd, not of the ssh client). What every board side needs: the host's
paths (the data directory, models, broker config and scenario are passed as they are), orbitd and
Mosquitto installed there; docs/hil.md ("Other board sides").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from hil.link.backlog import BridgeBacklog, Side
from hil.link.board import BoardSide
from hil.link.bridge import bridge_config, bridge_name, bridge_topics
from hil.link.clock import ToneClock
from hil.link.contact import ContactPlan
from hil.link.model import LinkParams
from hil.link.relay import LinkRelay
from hil.mosquitto_broker import MosquittoBroker
from hil.plant_service import WarpSchedule
from link.codec import WireError, decode
from link.messages import Status, Telemetry
from link.telemetry import CLOCK, RATE
from link.topics import TopicMap
from link.transport import BrokerUrl, make_client

log = logging.getLogger("hil.link.rig")

BRIDGE_KEEPALIVE_S = 60
"""The bridge's keepalive (wall s). Out of contact the relay holds the bridge's connection attempt
(``out_of_contact="hold"``) and the bridge gives it up after one keepalive without a CONNACK, so it
tries about once a minute of wall time; each attempt re-queues every retained message of the
satellite -> ground trees (Mosquitto 2.0.11, eclipse-mosquitto/mosquitto issue 2248). In contact a
loss of signal resets the connection, so the keepalive does not decide how fast a cut is seen."""


class LinkRig:
    """``async with LinkRig(board, plan, workdir, ...) as rig:`` brokers, relay and observers running;
    then :meth:`start_flightd`, :meth:`wait_online`, :meth:`start_plant`; everything started is stopped
    on exit.

    ``params``: rate and loss of the link; ``lead_s``: how far the link's clock may run past the
    plant's latest tone (one tone period); ``bridge_restart_s``: the bridge's reconnection interval
    (wall s, Mosquitto's ``restart_timeout``); ``flightd_env``: environment added for flightd.
    """

    def __init__(
        self,
        board: BoardSide,
        plan: ContactPlan,
        workdir: Path,
        *,
        sat: str = "sat1",
        params: LinkParams | None = None,
        lead_s: float = 10.0,
        bridge_restart_s: int = 1,
        models: Path,
        flightd_env: Mapping[str, str] | None = None,
    ) -> None:
        self.board, self.plan, self.workdir, self.sat = board, plan, Path(workdir), sat
        self.topics = TopicMap(sat)
        self.params = params or LinkParams()
        self.clock = ToneClock(lead_s=lead_s, t0_s=plan.start_s)
        self.bridge_restart_s = bridge_restart_s
        self.models = Path(models)
        self.flightd_env = dict(flightd_env or {})
        self.backlog = BridgeBacklog(self.topics)
        self.status: Status | None = None
        self.ground: MosquittoBroker | None = None
        self.onboard: MosquittoBroker | None = None
        self.relay: LinkRelay | None = None
        self.flightd: subprocess.Popen[bytes] | None = None
        self.plant: subprocess.Popen[bytes] | None = None
        self.flightd_starts = 0
        self._flightd_launched_utc = 0.0
        self._status_seen = asyncio.Event()
        self._observers: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------------------------ set-up

    @property
    def ground_url(self) -> str:
        if self.ground is None:
            raise RuntimeError("rig not started")
        return self.ground.url

    @property
    def onboard_url(self) -> str:
        if self.onboard is None:
            raise RuntimeError("rig not started")
        return self.onboard.url

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ground = MosquittoBroker(self.workdir / "ground-broker", persistent=True)
        await asyncio.to_thread(self.ground.start)
        await self.commission()
        self.relay = LinkRelay(("127.0.0.1", self.ground.port), self.plan, self.clock, self.params,
                               listen=(self.board.ground_address, 0), out_of_contact="hold")
        await self.relay.start()
        lines = bridge_config(self.topics, self.relay.address, restart_timeout_s=self.bridge_restart_s,
                              keepalive_s=BRIDGE_KEEPALIVE_S)
        self.onboard = MosquittoBroker(self.workdir / "onboard-broker", persistent=True, extra_config=lines,
                                       host=self.board.board_address, launcher=self.board.launcher)
        await asyncio.to_thread(self.onboard.start)
        ready = (asyncio.Event(), asyncio.Event())
        self._observers = [asyncio.create_task(self._observe("ground", self.ground.url, ready[0])),
                           asyncio.create_task(self._observe("board", self.onboard.url, ready[1]))]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready)), 30)

    async def commission(self) -> None:
        """Create the bridge's persistent session on the ground broker, subscribed to the ground ->
        satellite trees at QoS 1 (what its first connection would do): from now on the ground broker
        queues for the satellite whatever is sent, in contact or not."""
        up = [(t.pattern, t.qos) for t in bridge_topics(self.topics) if t.direction == "in"]
        async with make_client(BrokerUrl.parse(self.ground_url), identifier=bridge_name(self.topics),
                               clean_session=False) as client:
            await client.subscribe(up)

    async def _observe(self, side: Side, url: str, ready: asyncio.Event) -> None:
        """Count the bridged messages on one broker; onboard, also follow the tones and flightd's status."""
        filters = self.backlog.filters + ([(self.topics.telemetry(CLOCK), 0)] if side == "board" else [])
        while True:
            try:
                async with make_client(BrokerUrl.parse(url), identifier=f"rig-{side}-{self.sat}") as client:
                    await client.subscribe(filters)
                    ready.set()
                    async for message in client.messages:
                        payload = message.payload if isinstance(message.payload, bytes | bytearray) else b""
                        self._on_message(side, str(message.topic), bytes(payload))
            except Exception as exc:  # a broker restarting: observe again
                log.info("rig observer on the %s broker: %s; reconnecting", side, exc)
                await asyncio.sleep(0.5)

    def _on_message(self, side: Side, topic: str, payload: bytes) -> None:
        if topic == self.topics.telemetry(CLOCK):
            with contextlib.suppress(WireError):
                tone = decode(payload, Telemetry).message
                self.clock.tone(tone.t_s, tone.values.get(RATE))
            return
        self.backlog.seen(side, topic, payload)
        if side == "board" and topic == self.topics.status and payload:
            with contextlib.suppress(WireError):
                self.status = decode(payload, Status).message
                self._status_seen.set()

    # ------------------------------------------------------------------------------- board side

    def _launch(self, argv: list[str], log_name: str, env: Mapping[str, str] | None = None,
                **kwargs: Any) -> subprocess.Popen[bytes]:
        """``argv`` on the board with ``env`` added; stdin stays open (a remote launcher stops the
        program when it closes: :class:`hil.link.board.SshBoard`)."""
        out = (self.workdir / log_name).open("ab")
        kwargs.setdefault("stdout", out)
        return subprocess.Popen(self.board.command(argv, env or {}), stderr=out, stdin=subprocess.PIPE,
                                cwd=self.workdir, **kwargs)

    def start_flightd(self, data_dir: Path | None = None) -> subprocess.Popen[bytes]:
        """flightd on the board, on the onboard broker; its journal in ``data_dir`` (default
        ``workdir/flightd``), its log appended to ``workdir/flightd.log``."""
        self.flightd = self._launch(
            [self.board.python, "-m", "flight.cli", "--broker", self.onboard_url, "--sat", self.sat,
             "--data-dir", str(data_dir or self.workdir / "flightd"), "--models", str(self.models)],
            "flightd.log", env={**self.flightd_env, "PYTHONUNBUFFERED": "1"})
        self.flightd_starts += 1
        self._flightd_launched_utc = time.time()
        return self.flightd

    async def wait_online(self, timeout_s: float = 60.0) -> Status:
        """Until the flightd started last says ``online`` on the onboard broker (its status carries
        its start time); RuntimeError when it exits or does not within ``timeout_s``."""
        started = self._flightd_launched_utc
        deadline = time.monotonic() + timeout_s
        while True:
            s = self.status
            if s is not None and s.state == "online" and (s.started_utc or 0.0) >= started:
                return s
            if self.flightd is None or self.flightd.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"flightd did not come online; see {self.workdir / 'flightd.log'}")
            self._status_seen.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._status_seen.wait(), 0.5)

    def kill_flightd(self) -> None:
        """kill -9 of flightd (its journal and the onboard broker's session stay)."""
        if self.flightd is not None and self.flightd.poll() is None:
            self.board.signal(self.flightd, signal.SIGKILL)
            self.flightd.wait(10)

    def start_plant(self, scenario: str | Path, duration_s: float, tlm_period_s: float, schedule: WarpSchedule,
                    lockstep_s: float | None) -> subprocess.Popen[bytes]:
        """The plant on the board, publishing on the onboard broker (``hil plant``; its summary on
        stdout)."""
        argv = [self.board.python, "-m", "hil.cli", "plant", "--broker", self.onboard_url, "--sat", self.sat,
                "--scenario", str(scenario), "--rate", repr(1.0 / tlm_period_s), "--duration", repr(duration_s),
                "--warp-schedule", schedule.to_json(), "--json"]
        if lockstep_s is not None:
            argv += ["--lockstep", repr(lockstep_s)]
        self.plant = self._launch(argv, "plant.log", stdout=subprocess.PIPE)
        return self.plant

    async def wait_plant(self) -> dict[str, Any]:
        """Until the plant ends; its summary (``wall_s``, ``pace_slips``). RuntimeError if it failed."""
        if self.plant is None:
            raise RuntimeError("no plant started")
        plant = self.plant
        assert plant.stdout is not None
        out = await asyncio.to_thread(plant.stdout.read)  # not communicate(): it would close stdin
        await asyncio.to_thread(plant.wait)
        if plant.returncode != 0:
            raise RuntimeError(f"the plant exited with {plant.returncode}; see {self.workdir / 'plant.log'}")
        lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
        summary: dict[str, Any] = json.loads(lines[-1]) if lines else {}
        return summary

    # ---------------------------------------------------------------------------------- tear-down

    async def stop_flightd(self, timeout_s: float = 30.0) -> None:
        proc = self.flightd
        if proc is not None and proc.poll() is None:
            self.board.signal(proc, signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    async def close(self) -> None:
        for proc in (self.plant,):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        await self.stop_flightd()
        for task in self._observers:
            task.cancel()
        await asyncio.gather(*self._observers, return_exceptions=True)
        if self.onboard is not None:
            await asyncio.to_thread(self.onboard.stop)
        if self.relay is not None:
            await self.relay.close()
        if self.ground is not None:
            await asyncio.to_thread(self.ground.stop)

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
