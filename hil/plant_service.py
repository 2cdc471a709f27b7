"""``hil plant``: the plant simulator on MQTT.

Steps a :class:`hil.plant.Plant` in simulated time at up to ``warp`` simulated seconds per wall
second, publishes Telemetry on the ``power``, ``thermal``, ``orbit`` and ``radiation`` channels every
``1 / rate_hz`` simulated seconds (QoS 0; dropout/stuck/noisy faults applied to what is published; the
radiation environment from the satellite's position, :class:`hil.plant.radiation.RadiationFeed`, when
the ``hil`` extra's ``ppigrf`` is installed), publishes its
simulated time as a *time tone* on the ``clock`` channel, and takes the compute load from flightd's
``compute`` channel (``busy_cores``, held until the next sample).

Simulated time never runs ahead of what has been delivered (issue 10 item 8, docs/sil.md):

- the tone: flightd's mission clock is the latest tone's ``t_s`` (``flight.mission_clock``), so a
  host too busy to deliver samples on time stops flightd's time with the plant's instead of making
  the samples look stale; the tone is the simulator's time, not a sensor, so telemetry faults never
  touch it (a dropout withholds samples while the tones go on, and flightd sees them go stale);
- pacing (:class:`Pacer`): when the loop falls more than one telemetry period behind the wall clock
  it does not catch up in a burst (minutes of simulated time under one stale compute load); the
  effective warp drops instead;
- lock-step (:class:`LockStep`, ``lockstep_s``, used by ``hil sil``): the plant stays at most
  ``lockstep_s`` simulated seconds ahead of the mission time flightd last reported on ``compute``,
  so a flightd starved of CPU is waited for rather than left behind. While it holds the plant, the
  current tone is repeated every :data:`TONE_REPEAT_S` of wall time, so a flightd that (re)starts
  meanwhile learns the simulated time at once and lets the plant go on;
- a warp schedule (:class:`WarpSchedule`, used by ``hil sil --link passes``): the warp may change with
  simulated time, e.g. 10 in contact with a ground station, where Mosquitto's wall-clock bridge timers
  and real-time inference set what a pass carries, and 200 in the silent gaps between passes; each
  tone declares the warp it runs at.

The tone also carries ``met_s``, the simulator's mission elapsed time (its own simulated seconds),
which relative sequence delays count on. A clock fault (``clock_jumps``, :class:`ClockJumps`) jumps
the published mission time ``t_s`` of every sample and tone, never ``met_s``; lock-step maps the
(jumped) mission time flightd reports back onto the plant's own time before comparing.

The pure parts, :class:`PlantRunner` (``advance_to(t_s)`` returns the samples and tones due),
:class:`Pacer`, :class:`LockStep`, :class:`ClockJumps` and :class:`WarpSchedule`, know nothing of
MQTT; :func:`serve` is the I/O shell around them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import aiomqtt

from hil.plant.faults import FaultSchedule, TelemetryFaults
from hil.plant.plant import Plant
from hil.plant.radiation import RadiationFeed
from hil.plant.telemetry import channel_values
from hil.scenario import Scenario, load_scenario
from link.codec import WireError, decode, encode
from link.messages import Telemetry
from link.telemetry import BUSY_CORES, CLOCK, COMPUTE, MET_S, RADIATION, RATE
from link.topics import TopicMap
from link.transport import BrokerUrl, TlsFiles, make_client

log = logging.getLogger("hil.plant")

TONES_PER_PERIOD = 4
"""Time tones per telemetry period (at least one per physics step): flightd's mission time moves in
steps of a quarter period, so a withheld sample is seen stale within a quarter period of the limit."""

LOCKSTEP_TIMEOUT_S = 5.0
"""Wall seconds without a ``compute`` sample after which lock-step lets the plant run free (flightd
gone); until then a silent flightd holds the plant."""

TONE_REPEAT_S = 0.25
"""Wall seconds between repeats of the current tone while lock-step holds the plant: a flightd that
starts (or restarts after a crash) then has the simulated time within a quarter second, instead of
holding the plant, at its uptime, until :data:`LOCKSTEP_TIMEOUT_S` lets it run free."""


@dataclass(frozen=True)
class Sample:
    """One telemetry sample due for publication (values after telemetry faults), or a time tone
    (``channel`` = ``clock``)."""

    channel: str
    t_s: float
    values: dict[str, float]


class PlantRunner:
    """A plant stepped at ``physics_dt_s`` (s) with telemetry every ``period_s`` simulated seconds and a
    time tone (``rate``: the pace it runs at, simulated s per wall s; ``met_s``: its own simulated
    time) at the start, after every telemetry sample and at least every ``period_s / TONES_PER_PERIOD``
    (whole physics steps).
    ``radiation``: publish the ``radiation`` channel too (skipped, with a warning, without ppigrf)."""

    def __init__(self, scenario: Scenario, period_s: float, physics_dt_s: float = 1.0, seed: int = 0,
                 rate: float = 1.0, radiation: bool = True) -> None:
        if period_s <= 0 or physics_dt_s <= 0:
            raise ValueError("telemetry period and physics step must be > 0")
        self.scenario = scenario
        self.plant: Plant = scenario.build_plant()
        self.period_s = period_s
        self.physics_dt_s = min(physics_dt_s, period_s)
        self.tone_period_s = max(self.physics_dt_s, period_s / TONES_PER_PERIOD)
        self.rate = rate
        self.faults = TelemetryFaults(FaultSchedule(scenario.faults), seed)
        self.busy_cores = 0.0
        self.radiation = radiation_feed(scenario) if radiation else None
        self._next_sample_s = self.plant.t_s + period_s
        self._next_tone_s: float | None = None  # None: the start's tone is still due

    @property
    def t_s(self) -> float:
        return self.plant.t_s

    def set_busy_cores(self, busy_cores: float) -> None:
        """The compute load from now on (flightd's time-averaged busy cores)."""
        if math.isfinite(busy_cores):
            self.busy_cores = max(0.0, busy_cores)

    def current_tone(self) -> Sample:
        """The tone of the plant's current time, outside the tone schedule (a repeat)."""
        return Sample(CLOCK, self.plant.t_s, {RATE: self.rate, MET_S: self.plant.t_s})

    def _tone(self) -> Sample:
        self._next_tone_s = self.plant.t_s + self.tone_period_s
        return self.current_tone()

    def advance_to(self, t_s: float) -> list[Sample]:
        """Step the plant up to ``t_s`` and return the telemetry samples and tones that fell due on the
        way, in order (a sample's tone right after it)."""
        out: list[Sample] = []
        if self._next_tone_s is None:
            out.append(self._tone())
        while self.plant.t_s < t_s - 1e-9:
            dt = min(self.physics_dt_s, self._next_sample_s - self.plant.t_s)
            state = self.plant.step(dt, busy_cores=self.busy_cores)
            sampled = state.t_s >= self._next_sample_s - 1e-9
            if sampled:
                self._next_sample_s += self.period_s
                channels = channel_values(state)
                if self.radiation is not None:
                    channels[RADIATION] = self.radiation.at(state.t_s)
                for channel, values in channels.items():
                    published = self.faults.apply(state.t_s, channel, values)
                    if published is not None:
                        out.append(Sample(channel, state.t_s, published))
            if sampled or (self._next_tone_s is not None and state.t_s >= self._next_tone_s - 1e-9):
                out.append(self._tone())
        return out


def radiation_feed(scenario: Scenario) -> RadiationFeed | None:
    """The radiation environment along the scenario's orbit; None (logged) without the ``hil`` extra."""
    try:
        import ppigrf  # noqa: F401  (the hil extra: pure Python, pulls pandas)
    except ImportError:
        log.warning("ppigrf is not installed (pip install 'orbitd[hil]'): no radiation channel")
        return None
    return RadiationFeed(scenario.config.orbit)


@dataclass
class Pacer:
    """When simulated time is due: ``warp`` simulated seconds per wall second from an anchor, never more
    than ``max_lag_s`` simulated seconds ahead of where the plant is. A plant that falls further
    behind (a busy host) moves the anchor instead of catching up in one burst; ``slips`` counts the
    moves. Pure: the caller supplies wall-clock readings."""

    warp: float
    max_lag_s: float
    slips: int = 0
    end_t_s: float | None = None
    """Simulated seconds the plant had reached when :func:`serve` returned (its last tone's time)."""
    _t0_s: float | None = None
    _wall0_s: float = 0.0

    def target(self, t_s: float, wall_s: float) -> float:
        """Simulated time due at ``wall_s`` for a plant now at ``t_s``."""
        if self._t0_s is None:
            self._t0_s, self._wall0_s = t_s, wall_s
        due = self._t0_s + self.warp * (wall_s - self._wall0_s)
        if due > t_s + self.max_lag_s:
            self.slips += 1
            self._t0_s, self._wall0_s = t_s + self.max_lag_s, wall_s
            due = self._t0_s
        return due

    def wall_at(self, t_s: float) -> float:
        """Wall time at which simulated time ``t_s`` falls due."""
        t0 = self._t0_s if self._t0_s is not None else t_s
        return self._wall0_s + (t_s - t0) / self.warp

    def rewarp(self, warp: float, t_s: float, wall_s: float) -> None:
        """Run at ``warp`` from simulated ``t_s`` at ``wall_s`` on (a new anchor, not a slip)."""
        if warp <= 0:
            raise ValueError(f"warp {warp} must be > 0")
        self.warp, self._t0_s, self._wall0_s = warp, t_s, wall_s


@dataclass(frozen=True)
class WarpSchedule:
    """The warp by simulated time: ``spans`` of (start_s, end_s, warp), sorted and not overlapping, and
    ``base`` outside them. Pure; raises ValueError for a warp <= 0 or spans out of order."""

    base: float
    spans: tuple[tuple[float, float, float], ...] = ()

    def __post_init__(self) -> None:
        if self.base <= 0 or any(w <= 0 for _, _, w in self.spans):
            raise ValueError("every warp must be > 0")
        ends = [x for a, b, _ in self.spans for x in (a, b)]
        if ends != sorted(ends) or any(b <= a for a, b, _ in self.spans):
            raise ValueError(f"warp spans must be sorted, non-empty and not overlap: {self.spans}")

    @classmethod
    def around(cls, windows: Sequence[tuple[float, float]], inside: float, outside: float,
               lead_s: float = 0.0) -> WarpSchedule:
        """``inside`` within each window (from ``lead_s`` before it starts), ``outside`` elsewhere;
        windows closer than that merge."""
        spans: list[list[float]] = []
        for a, b in sorted(windows):
            start = a - lead_s
            if spans and start <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], b)
            else:
                spans.append([start, b])
        return cls(outside, tuple((a, b, inside) for a, b in spans if math.isfinite(a) or math.isfinite(b)))

    def warp_at(self, t_s: float) -> float:
        for a, b, w in self.spans:
            if a <= t_s < b:
                return w
        return self.base

    def next_change(self, t_s: float) -> float:
        """The first span edge strictly after ``t_s`` (inf when none)."""
        return min((x for a, b, _ in self.spans for x in (a, b) if x > t_s), default=math.inf)

    @property
    def max_warp(self) -> float:
        return max([self.base, *(w for _, _, w in self.spans)])

    def to_json(self) -> str:
        return json.dumps({"base": self.base, "spans": [list(s) for s in self.spans]})

    @classmethod
    def from_json(cls, text: str) -> WarpSchedule:
        """ValueError for anything but ``{"base": W, "spans": [[start_s, end_s, warp], ...]}``."""
        try:
            doc = json.loads(text)
            return cls(float(doc["base"]), tuple((float(a), float(b), float(w)) for a, b, w in doc.get("spans", [])))
        except (TypeError, KeyError, json.JSONDecodeError) as exc:
            raise ValueError(f"warp schedule {text!r}: {exc}") from None


@dataclass
class LockStep:
    """How far the plant may run: ``lead_s`` simulated seconds past the mission time its follower
    (flightd, on ``compute``) last reported. A follower never heard holds the plant at ``start_s``; one
    silent for ``timeout_s`` of wall time no longer holds it (gone). Pure."""

    lead_s: float
    start_s: float = 0.0
    timeout_s: float = LOCKSTEP_TIMEOUT_S
    _t_s: float | None = None
    _wall_s: float | None = None
    _since_wall_s: float | None = None

    def heard(self, t_s: float, wall_s: float) -> None:
        """The follower reported mission time ``t_s`` at ``wall_s``."""
        if math.isfinite(t_s):
            self._t_s = t_s if self._t_s is None else max(self._t_s, t_s)
            self._wall_s = wall_s

    def limit(self, wall_s: float) -> float:
        """The simulated time the plant may advance to at ``wall_s``."""
        if self._since_wall_s is None:
            self._since_wall_s = wall_s
        last = self._wall_s if self._wall_s is not None else self._since_wall_s
        if wall_s - last > self.timeout_s:
            return math.inf
        return (self._t_s if self._t_s is not None else self.start_s) + self.lead_s


@dataclass(frozen=True)
class ClockJumps:
    """A timebase fault: ``jumps`` are (at, jump) pairs, s: from the plant's simulated time ``at`` on,
    the mission time it publishes (``t_s``) runs ``jump`` seconds ahead of its own (jumps add up);
    the tone's ``met_s`` is never touched. Forward jumps only (ValueError otherwise): flightd's
    mission clock never runs backwards, so a backward jump would only hold it for the jump's length.
    Pure."""

    jumps: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        for at, jump in self.jumps:
            if not (math.isfinite(at) and math.isfinite(jump) and jump > 0):
                raise ValueError(f"clock jump ({at}, {jump}): a jump is a finite time and a positive number of "
                                 "seconds (flightd's mission clock never runs backwards)")
        object.__setattr__(self, "jumps", tuple(sorted(self.jumps)))

    def mission(self, t_s: float) -> float:
        """The mission time published for the plant's own time ``t_s``."""
        return t_s + sum(jump for at, jump in self.jumps if t_s >= at)

    def own(self, mission_s: float) -> float:
        """The plant's own time at which it published mission time ``mission_s``: the inverse of
        :meth:`mission` (a mission time inside a jump, never published, maps to the jump's ``at``)."""
        offset = 0.0
        for at, jump in self.jumps:
            if mission_s < at + offset:
                break
            if mission_s < at + offset + jump:
                return at
            offset += jump
        return mission_s - offset


async def serve(
    broker: str,
    sat: str,
    scenario: str | Scenario,
    warp: float | WarpSchedule = 1.0,
    rate_hz: float | None = None,
    duration_s: float | None = None,
    physics_dt_s: float = 1.0,
    lockstep_s: float | None = None,
    clock_jumps: tuple[tuple[float, float], ...] = (),
    tls: TlsFiles | None = None,
) -> Pacer:
    """Run the plant on ``broker`` for satellite ``sat`` until ``duration_s`` simulated seconds (None:
    forever, or until cancelled); returns its :class:`Pacer` (``slips``: times the host fell behind).
    ``warp``: simulated seconds per wall second, or a :class:`WarpSchedule`.
    ``rate_hz``: telemetry samples per simulated second (default: the scenario's telemetry period).
    ``lockstep_s``: stay at most this many simulated seconds ahead of flightd's reported mission time
    (None: free-running, for a plant with no flightd). ``clock_jumps``: (at simulated s, jump s)
    pairs: from ``at`` on, the published mission time ``t_s`` runs ``jump`` seconds ahead of the
    plant's own (a timebase fault, :class:`ClockJumps`; ValueError for a backward one). ``tls``: the
    ``plant-<sat>`` identity on the locked broker."""
    schedule = warp if isinstance(warp, WarpSchedule) else WarpSchedule(warp)
    jumps = ClockJumps(clock_jumps)
    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    if duration_s is not None:
        sc.config.orbit.check_span(duration_s)
    period = 1.0 / rate_hz if rate_hz else sc.telemetry_period_s
    runner = PlantRunner(sc, period, physics_dt_s, rate=schedule.warp_at(0.0))
    pacer = Pacer(runner.rate, max_lag_s=period)
    lock = LockStep(lockstep_s, start_s=runner.t_s) if lockstep_s is not None else None
    heard = asyncio.Event()
    topics = TopicMap(sat)
    compute_topic = topics.telemetry(COMPUTE)
    async with make_client(BrokerUrl.parse(broker), identifier=f"hil-plant-{sat}", tls=tls) as client:
        await client.subscribe(compute_topic, qos=0)
        listener = asyncio.create_task(_listen(client, runner, compute_topic, lock, jumps, heard))
        log.info("plant %s for %s on %s: warp %s, telemetry every %g s, lock-step %s", sc.name, sat, broker,
                 schedule, period, "off" if lockstep_s is None else f"{lockstep_s:g} s")
        try:
            end = math.inf if duration_s is None else runner.t_s + duration_s
            last_tone = time.monotonic()
            while runner.t_s < end:
                now = time.monotonic()
                if (w := schedule.warp_at(runner.t_s)) != pacer.warp:
                    pacer.rewarp(w, runner.t_s, now)
                    runner.rate = w  # the next tones declare it
                target = min(pacer.target(runner.t_s, now), end, schedule.next_change(runner.t_s))
                held = lock is not None and lock.limit(now) < target
                if lock is not None:
                    target = min(target, lock.limit(now))
                due = runner.advance_to(target)
                if held and not due and now - last_tone >= TONE_REPEAT_S:
                    due = [runner.current_tone()]
                for sample in due:
                    last_tone = now if sample.channel == CLOCK else last_tone
                    # a tone declares the warp from its instant on (one at a schedule's edge: the new one)
                    values = ({**sample.values, RATE: schedule.warp_at(sample.t_s)} if sample.channel == CLOCK
                              else sample.values)
                    message = Telemetry(sat=sat, channel=sample.channel, t_s=jumps.mission(sample.t_s),
                                        at_utc=time.time(), values=values)
                    await client.publish(topics.telemetry(sample.channel), encode(message), qos=0)
                wait_s = max(pacer.wall_at(runner.t_s + runner.physics_dt_s) - time.monotonic(), 0.0)
                if held:  # flightd is behind: wake when it reports (or at the next step, whichever first)
                    heard.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(heard.wait(), max(wait_s, 0.01))
                else:
                    await asyncio.sleep(wait_s)
        finally:
            pacer.end_t_s = runner.t_s
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
    if pacer.slips:
        log.info("plant %s: fell behind the wall clock %d times; simulated time was not rushed to catch up",
                 sc.name, pacer.slips)
    return pacer


async def hold_time(client: aiomqtt.Client, sat: str, t_s: float, rate: float, period_s: float = TONE_REPEAT_S) -> None:
    """Publish the tone of simulated time ``t_s`` (mission s; MET the same) every ``period_s`` wall
    seconds until cancelled: simulated time stands still at the end of a run while flightd still works
    (hil sil's radiation wind-down waits for the last scrub sweeps). Without tones flightd's clock
    would flywheel after :data:`flight.mission_clock.TONE_TIMEOUT_S` and find its telemetry stale."""
    topic = TopicMap(sat).telemetry(CLOCK)
    while True:
        message = Telemetry(sat=sat, channel=CLOCK, t_s=t_s, at_utc=time.time(), values={RATE: rate, MET_S: t_s})
        await client.publish(topic, encode(message), qos=0)
        await asyncio.sleep(period_s)


async def _listen(client: aiomqtt.Client, runner: PlantRunner, topic: str, lock: LockStep | None,
                  jumps: ClockJumps, heard: asyncio.Event) -> None:
    cores = runner.plant.board.cores
    warned = False
    async for message in client.messages:
        if not message.topic.matches(topic) or not isinstance(message.payload, bytes | bytearray):
            continue
        try:
            tlm = decode(bytes(message.payload), Telemetry).message
        except WireError as exc:
            log.warning("ignoring compute telemetry: %s", exc)
            continue
        busy = tlm.values.get(BUSY_CORES)
        if busy is not None:
            runner.set_busy_cores(busy)
            if busy > cores and not warned:
                warned = True
                log.warning("flightd reports %.6f busy cores; the board has %d: the plant draws %d cores' power",
                            busy, cores, cores)
        if lock is not None:  # flightd's mission time is the published (jumped) one: back onto the plant's
            lock.heard(jumps.own(tlm.t_s), time.monotonic())
            heard.set()


__all__ = ["ClockJumps", "LockStep", "Pacer", "PlantRunner", "Sample", "WarpSchedule", "hold_time", "serve"]
