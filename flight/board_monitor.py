"""flightd's use of its board: detection at start, the ``board`` channel, job energy, actuators.

The probes and actuators (flight/board) are plain readers and writers; the governor (flight/governor)
decides. :class:`BoardMonitor` is the I/O between them in flightd: it

- detects the board once at start (:func:`flight.board.detect_board`) and says what it found
  (:meth:`status`, in the retained status; :attr:`notes`, in the log);
- fits the governor's configuration to the board (:meth:`fit_governor`): a limit on firmware flags
  the board does not report, a temperature stand-in without a board temperature, an actuator the
  board does not allow are switched off, each with a note saying why (a hard limit that is never
  measured would hold SAFE forever);
- samples the board every ``board.period_s`` in a worker thread (``vcgencmd`` runs a process; no
  read blocks the event loop) and hands each :class:`flight.board.BoardSample` to flightd, which
  publishes it and feeds it to the governor;
- where the board measures power, reads it when a job starts and finishes and every
  ``board.energy_period_s`` while one runs, and gives each job's energy above idle
  (:class:`flight.governor.energy.JobEnergyMeter`);
- carries out the governor's frequency ceiling and Jetson power mode when they change
  (:meth:`actuate`), in a worker thread, returning what the board did.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from flight.board import Board, BoardProbe, BoardSample, detect_board
from flight.board.actuators import Actuation, FrequencyActuator, PowerModeActuator
from flight.governor import Decision, GovernorConfig
from flight.governor.config import ActuatorPolicy, BoardInputs
from flight.governor.energy import JobEnergyMeter
from flight.settings import BoardSettings
from link.messages import BoardStatus

log = logging.getLogger("flightd.board")


def without_board(config: GovernorConfig) -> tuple[GovernorConfig, list[str]]:
    """``config`` for a flightd whose board probes are off (``board.enabled = false``): nothing from the
    board is watched or steered; notes say what was configured and is now off."""
    notes = []
    if config.board_inputs.temperature_as_board_c:
        notes.append("temperature_as_board_c is set but the board probes are off: board_c comes from the "
                     "thermal channel")
    if config.actuators.frequency_ceiling or config.actuators.power_modes:
        notes.append("governor actuators are configured but the board probes are off: none is used")
    inputs = BoardInputs(throttled=None, under_voltage=None, temperature_as_board_c=False)
    return config.model_copy(update={"board_inputs": inputs, "actuators": ActuatorPolicy()}), notes


class BoardMonitor:
    """One board, detected at construction (see the module docstring). ``fallback_idle_w``: the idle
    power (W) a job's energy is counted above until one is measured (the governor's board profile)."""

    def __init__(self, settings: BoardSettings, fallback_idle_w: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.board: Board = detect_board(settings.root)
        self.probe = BoardProbe(self.board, clock=clock)
        self.energy = JobEnergyMeter(fallback_idle_w, settings.idle_w)
        self.frequency = FrequencyActuator(settings.root)
        self.power_mode = PowerModeActuator(settings.root)
        self.notes: list[str] = list(self.board.notes)
        self.actuators: list[str] = []
        self.last: BoardSample | None = None
        self._frequency_set: float | None = None
        self._mode_set: str | None = None
        self._wake = asyncio.Event()
        self._reading: asyncio.Future[None] | None = None

    # ----------------------------------------------------------------------------- at start

    def fit_governor(self, config: GovernorConfig) -> GovernorConfig:
        """``config`` with what this board cannot serve switched off; each change noted in :attr:`notes`
        and the actuators' standing in :attr:`actuators`."""
        board = self.board
        inputs, policy = config.board_inputs, config.actuators
        if (inputs.throttled or inputs.under_voltage) and board.throttle_source is None:
            self.notes.append("the board reports no throttle or under-voltage flags: the governor's "
                              "board_throttled/board_under_voltage limits are not watched")
            inputs = inputs.model_copy(update={"throttled": None, "under_voltage": None})
        if inputs.temperature_as_board_c and board.temp_source is None:
            self.notes.append("temperature_as_board_c is set but no board temperature reads: "
                              "thermal.board_c comes from the thermal channel")
            inputs = inputs.model_copy(update={"temperature_as_board_c": False})
        if policy.frequency_ceiling:
            refused = [a for a in self.frequency.check() if not a.ok]
            if refused:
                why = "; ".join(a.detail or a.describe() for a in refused)
                self.actuators.append(f"cpufreq ceiling: enabled in the configuration, not possible here: {why}")
                policy = policy.model_copy(update={"frequency_ceiling": False})
            else:
                self.actuators.append(f"cpufreq ceiling: governor-driven on {len(board.cpufreq_policies)} "
                                      f"policies (THROTTLED {policy.throttled_frequency_fraction:g} of range)")
        else:
            self.actuators.append("cpufreq ceiling: off (governor.actuators.frequency_ceiling)")
        if policy.power_modes:
            if board.power_mode is None:
                self.actuators.append("power mode: configured, not possible here: no /etc/nvpmodel.conf "
                                      "(not a Jetson, or nvpmodel missing)")
                policy = policy.model_copy(update={"power_modes": {}})
            else:
                wanted = ", ".join(f"{m.value} {name}" for m, name in policy.power_modes.items())
                self.actuators.append(f"power mode: governor-driven ({wanted}; nvpmodel needs root)")
        elif board.kind == "jetson":
            self.actuators.append("power mode: off (governor.actuators.power_modes)")
        return config.model_copy(update={"board_inputs": inputs, "actuators": policy})

    def describe(self) -> str:
        return self.board.describe()

    def status(self) -> BoardStatus:
        """What the retained status says of the board."""
        return BoardStatus(kind=self.board.kind, model=self.board.model[:256], summary=self.describe()[:2048],
                           notes=[n[:512] for n in self.notes[:32]], actuators=[a[:512] for a in self.actuators[:32]])

    # ----------------------------------------------------------------------------- sampling

    async def run(self, on_sample: Callable[[BoardSample], None], running: Callable[[], int]) -> None:
        """Sample every ``period_s`` (handing each sample to ``on_sample``) and, while ``running()``
        jobs run on a board that measures power, read the power every ``energy_period_s``."""
        period, fast = self.settings.period_s, self.settings.energy_period_s
        next_sample = self.clock()
        while True:
            now = self.clock()
            if now >= next_sample:
                next_sample = now + period
                sample = await asyncio.to_thread(self.probe.sample)
                self.last = sample
                if sample.power_w is not None:
                    self.energy.observe(sample.t_s, sample.power_w, running())
                try:
                    on_sample(sample)
                except Exception:  # the board's telemetry stops for this sample, never for good
                    log.exception("board sample at t=%.3f s not handled", sample.t_s)
            elif running() and self.probe.measures_power:
                await self._read_power(running())
            fast_due = fast if running() and self.probe.measures_power else period
            wait = max(0.0, min(next_sample - self.clock(), fast_due))
            self._wake.clear()
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):  # the two differ on Python 3.10
                await asyncio.wait_for(self._wake.wait(), wait)

    async def _read_power(self, running: int) -> None:
        t_s, power_w = await asyncio.to_thread(self.probe.power_now)
        if power_w is not None:
            self.energy.observe(t_s, power_w, running)

    def job_started(self, job_id: str, running: int) -> None:
        """A job starts now: marked, and the power read at once (in the background) where measured."""
        if not self.probe.measures_power:
            return
        self.energy.start(job_id, self.clock())
        self._reading = asyncio.ensure_future(self._read_power(running))  # the probe never raises
        self._wake.set()  # the sampler moves to the fast period

    async def job_finished(self, job_id: str, running: int) -> float | None:
        """A job finished now: its energy above idle (J) from the measured power, or None where the
        board measures none."""
        if not self.probe.measures_power:
            return None
        end = self.clock()
        await self._read_power(running)
        return self.energy.finish(job_id, end)

    def job_ended(self, job_id: str) -> None:
        """A job stopped without a result (failed, cancelled, preempted): no energy, but it is no longer
        running for the meter (which otherwise keeps every reading since it started)."""
        if self.probe.measures_power:
            self.energy.finish(job_id, self.clock())

    # ----------------------------------------------------------------------------- actuators

    def wants(self, decision: Decision) -> bool:
        """True when the decision asks for a frequency ceiling or power mode not yet set."""
        return ((decision.frequency_fraction is not None and decision.frequency_fraction != self._frequency_set)
                or (decision.power_mode is not None and decision.power_mode != self._mode_set))

    async def actuate(self, decision: Decision) -> list[Actuation]:
        """Carry out the decision's frequency ceiling and power mode where they changed; what the
        board did (an empty list: nothing to change)."""
        out: list[Actuation] = []
        fraction = decision.frequency_fraction
        if fraction is not None and fraction != self._frequency_set:
            self._frequency_set = fraction
            action = self.frequency.release if fraction >= 1.0 else lambda: self.frequency.set_fraction(fraction)
            out += await asyncio.to_thread(action)
        mode = decision.power_mode
        if mode is not None and mode != self._mode_set:
            self._mode_set = mode
            out.append(await asyncio.to_thread(self.power_mode.set_mode, mode))
        return out

    async def release(self) -> list[Actuation]:
        """At a stop: give the CPU its full frequency range back if flightd lowered its ceiling."""
        if self._frequency_set is None or self._frequency_set >= 1.0:
            return []
        self._frequency_set = None
        return await asyncio.to_thread(self.frequency.release)
