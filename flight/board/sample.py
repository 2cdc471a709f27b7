"""One reading of the board: :class:`BoardSample` (plain data) and :class:`BoardProbe` (takes it).

The probe keeps the previous ``/proc/stat`` and powercap readings, since busy cores and RAPL power
are rates between two readings; the first sample has neither. Everything else is read fresh.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from flight.board import jetson, linux, raspberry_pi
from flight.board.board import Board, board_temperature
from flight.board.command import CommandRunner, run_command
from flight.board.rails import PowerRail
from link.telemetry import BUSY_CORES, POWER_W, TEMP_C, THROTTLED, UNDER_VOLTAGE


@dataclass(frozen=True)
class BoardSample:
    """The board at ``t_s`` (the probe's monotonic clock, s).

    ``temp_c`` board temperature (°C); ``power_w`` measured power (W) where a sensor exists;
    ``under_voltage`` / ``throttled`` the firmware's flags where the board reports them (None:
    not reported); ``busy_cores`` CPUs busy since the previous sample (0..N); ``rails`` the
    individual rails behind ``power_w`` (INA3221, PMIC).
    """

    t_s: float
    temp_c: float | None = None
    power_w: float | None = None
    under_voltage: bool | None = None
    throttled: bool | None = None
    throttle_raw: int | None = None
    busy_cores: float | None = None
    rails: tuple[PowerRail, ...] = ()

    def values(self) -> dict[str, float]:
        """The ``board`` telemetry channel's values (link.telemetry), floats (flags as 0/1), in wire
        order; values the board does not report are left out."""
        out: dict[str, float] = {}
        for key, value in (
            (TEMP_C, self.temp_c),
            (POWER_W, self.power_w),
            (UNDER_VOLTAGE, self.under_voltage),
            (THROTTLED, self.throttled),
            (BUSY_CORES, self.busy_cores),
        ):
            if value is not None:
                out[key] = float(value)
        return out


class BoardProbe:
    """Samples a detected :class:`Board` with its own sources; never raises on an unreadable value."""

    def __init__(
        self, board: Board, runner: CommandRunner = run_command, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.board = board
        self._runner = runner
        self._clock = clock
        self._stat: dict[str, linux.CpuTimes] = {}
        self._energy: tuple[float, list[linux.EnergyCounter]] | None = None

    def sample(self) -> BoardSample:
        root = self.board.root
        now = self._clock()
        zones = linux.read_thermal_zones(root)
        temp_c, _ = board_temperature(self.board.kind, zones, None if zones else linux.read_hwmon_temps(root))

        stat = linux.read_proc_stat(root)
        busy = linux.busy_cores(self._stat, stat) if self._stat else None
        self._stat = stat

        power_w, rails = self._power(now)

        flags: raspberry_pi.ThrottleFlags | None = None
        if self.board.throttle_source == "sysfs":
            flags = raspberry_pi.read_throttled_sysfs(root)
        elif self.board.throttle_source == "vcgencmd":
            flags = raspberry_pi.query_throttled(self._runner)

        return BoardSample(
            t_s=now,
            temp_c=temp_c,
            power_w=power_w,
            under_voltage=None if flags is None else flags.under_voltage,
            throttled=None if flags is None else flags.limited,
            throttle_raw=None if flags is None else flags.raw,
            busy_cores=busy,
            rails=tuple(rails),
        )

    @property
    def measures_power(self) -> bool:
        """True where the board has a power sensor this probe reads."""
        return self.board.power_source is not None

    def power_now(self) -> tuple[float, float | None]:
        """(t_s, W): the board's power alone, for a job's energy (flight.governor.energy); cheaper than
        :meth:`sample` (INA3221: three rails of two files each). RAPL gives the mean power since the
        previous reading of either kind."""
        now = self._clock()
        return now, self._power(now)[0]

    def _power(self, now: float) -> tuple[float | None, list[PowerRail]]:
        source = self.board.power_source
        if source == "ina3221":
            rails = jetson.read_ina3221_rails(self.board.root)
            return jetson.board_power_w(rails), rails
        if source == "pmic":
            rails = raspberry_pi.query_pmic_rails(self._runner)
            return (sum(r.watts for r in rails) if rails else None), rails
        if source == "rapl":
            counters = linux.read_energy_counters(self.board.root)
            previous, self._energy = self._energy, (now, counters)
            if previous is None:
                return None, []
            return linux.rapl_power_w(previous[1], counters, now - previous[0]), []
        return None, []
