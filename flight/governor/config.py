"""Governor configuration (pydantic): limits, board profile, battery, thermal model, orbit fallback.

Units: W, Wh, J/K, W/K, m^2, °C, s. The defaults describe a small compute satellite close to the
plant's nominal design; flightd loads the spacecraft's own values (see docs/governor.md).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from flight.governor.limits import LimitConfig, Limits, LimitSeverity, board_flag_limits
from link.messages import Redundancy
from link.telemetry import POWER, THERMAL, Mode


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BoardProfile(_Cfg):
    """Compute board power: ``idle_w + w_per_core * busy_cores`` (W), ``n_cores`` cores."""

    idle_w: float = Field(default=3.0, ge=0.0)
    w_per_core: float = Field(default=2.5, gt=0.0)
    n_cores: int = Field(default=2, ge=1)

    def power_w(self, busy_cores: float) -> float:
        return self.idle_w + self.w_per_core * busy_cores

    @property
    def max_w(self) -> float:
        return self.power_w(self.n_cores)


class BatteryConfig(_Cfg):
    """Battery as the governor sees it; ``capacity_wh`` is replaced by battery_wh/soc once measured."""

    capacity_wh: float = Field(default=43.0, gt=0.0)
    charge_efficiency: float = Field(default=0.95, gt=0.0, le=1.0)
    discharge_efficiency: float = Field(default=0.95, gt=0.0, le=1.0)


class ThermalModelConfig(_Cfg):
    """Two-node linearised thermal model (board -> radiator -> space), see budget.ThermalPredictor.

    ``env_sunlit_w``/``env_eclipse_w``: absorbed environmental heat on the radiator (W) in sunlight
    and in eclipse; ``bus_heat_to_radiator``: fraction of the bus power dissipated on the radiator node.
    """

    board_heat_capacity_j_k: float = Field(default=400.0, gt=0.0)
    radiator_heat_capacity_j_k: float = Field(default=4000.0, gt=0.0)
    board_to_radiator_w_k: float = Field(default=0.5, gt=0.0)
    radiator_area_m2: float = Field(default=0.1, gt=0.0)
    radiator_emissivity: float = Field(default=0.85, gt=0.0, le=1.0)
    sink_c: float = Field(default=-270.0)
    env_sunlit_w: float = 10.0
    env_eclipse_w: float = 2.0
    bus_heat_to_radiator: float = Field(default=1.0, ge=0.0, le=1.0)
    horizon_s: float = Field(default=1800.0, gt=0.0)
    step_s: float = Field(default=30.0, gt=0.0)
    disturbance_gain: float = Field(default=0.05, ge=0.0, le=1.0)


class OrbitFallback(_Cfg):
    """Used until the orbit channel or the sunlit history says otherwise: 550 km circular orbit,
    T = 5739 s, eclipse fraction 0.372 at beta 0 (physics.md "Orbit and eclipse")."""

    period_s: float = Field(default=5739.0, gt=0.0)
    eclipse_fraction: float = Field(default=0.372, ge=0.0, lt=1.0)


class BoardInputs(_Cfg):
    """How the governor uses the board's own telemetry (the ``board`` channel flightd publishes from
    flight/board; docs/boards.md).

    ``throttled`` / ``under_voltage``: the severity of a limit on the firmware's flag (``soft``:
    THROTTLED, ``hard``: SAFE; None: ignored), tripping after ``flag_debounce`` samples. flightd drops
    these limits on a board that reports no such flags (a hard limit never measured would hold SAFE).
    ``temperature_as_board_c``: the board's own temperature stands in for ``thermal.board_c`` (the
    plant's sensor is then ignored for it): the board ceiling and the thermal budget watch the board.
    """

    throttled: LimitSeverity | None = LimitSeverity.SOFT
    under_voltage: LimitSeverity | None = LimitSeverity.SOFT
    flag_debounce: int = Field(default=2, ge=1)
    temperature_as_board_c: bool = False

    def limits(self) -> list[LimitConfig]:
        return board_flag_limits(self.throttled, self.under_voltage, self.flag_debounce)


class ActuatorPolicy(_Cfg):
    """Actuators beyond threads and duty cycle (flight/board/actuators.py), off unless enabled here.

    ``frequency_ceiling``: the CPU frequency ceiling follows the mode: released (the policy's
    maximum) in NOMINAL, at ``throttled_frequency_fraction`` of each cpufreq policy's way from its
    minimum to its maximum in THROTTLED, at its minimum in SAFE. ``power_modes``: the Jetson power
    mode (nvpmodel name or id, /etc/nvpmodel.conf) for each governor mode, e.g.
    ``{nominal = "MAXN_SUPER", throttled = "15W", safe = "7W"}``; a mode not named leaves it as it is.
    flightd applies what the board allows and reports the rest (docs/boards.md).
    """

    frequency_ceiling: bool = False
    throttled_frequency_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    power_modes: dict[Mode, str] = Field(default_factory=dict)

    def frequency_fraction(self, mode: Mode) -> float | None:
        """The frequency ceiling for ``mode`` (fraction of each policy's range), None when not steered."""
        if not self.frequency_ceiling:
            return None
        return {Mode.NOMINAL: 1.0, Mode.THROTTLED: self.throttled_frequency_fraction, Mode.SAFE: 0.0}[mode]


class RadiationPolicy(_Cfg):
    """Redundancy scheduled by orbit (docs/radiation.md): while the plant's ``radiation`` channel reads a
    flux proxy above ``high_flux`` (1.0 = the reference orbit's mean upset rate; the South Atlantic
    Anomaly reads 2-50), every job runs at least ``mode``. On the nominal 550 km, 53 deg orbit, flux > 1
    holds 7.3 % of the day and 80 % of its upsets (bench.radiation). A radiation sample older than the
    governor's staleness limit no longer raises anything; ``mode = "none"`` turns the policy off."""

    high_flux: float = Field(default=1.0, ge=0.0)
    mode: Redundancy = Redundancy.DMR


class GovernorConfig(_Cfg):
    """Everything the governor needs. See docs/governor.md for the meaning of each margin."""

    telemetry_period_s: float = Field(default=1.0, gt=0.0)
    stale_periods: float = Field(default=2.0, gt=0.0, description="SAFE when a channel is this many periods old")
    required_channels: tuple[str, ...] = (POWER, THERMAL)
    limits: list[LimitConfig] = Field(default_factory=lambda: Limits().configs())
    board_inputs: BoardInputs = BoardInputs()
    actuators: ActuatorPolicy = ActuatorPolicy()
    board: BoardProfile = BoardProfile()
    battery: BatteryConfig = BatteryConfig()
    thermal: ThermalModelConfig = ThermalModelConfig()
    orbit: OrbitFallback = OrbitFallback()
    soc_margin: float = Field(default=0.03, ge=0.0, description="energy reserve kept above the SoC floor")
    battery_v_margin: float = Field(default=0.3, ge=0.0, description="V above the floor where compute derates")
    thermal_margin_c: float = Field(default=2.0, ge=0.0, description="°C kept below each temperature ceiling")
    min_busy_cores: float = Field(default=0.02, ge=0.0, description="below this the executor idles")
    throttle_fraction: float = Field(default=0.97, gt=0.0, le=1.0,
                                     description="THROTTLED when budget < this x full board power")
    mode_min_dwell_s: float = Field(default=60.0, ge=0.0)
    safe_min_dwell_s: float = Field(default=10.0, ge=0.0)
    cost_ema_alpha: float = Field(default=0.2, gt=0.0, le=1.0)
    array_peak_w: float | None = Field(
        default=None, gt=0.0,
        description="solar array power at normal incidence (W, design); None: the most seen in sunlight")
    radiation: RadiationPolicy = RadiationPolicy()

    def limit(self, name: str) -> LimitConfig | None:
        return next((lim for lim in self.limits if lim.name == name), None)
