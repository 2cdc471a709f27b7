"""Which board flightd runs on, and what it can read there.

:func:`detect_board` looks at the device-tree model string (``/proc/device-tree/model``, or the
same file at ``/sys/firmware/devicetree/base/model``; NUL-terminated, e.g. ``Raspberry Pi 5 Model
B Rev 1.0`` or ``NVIDIA Jetson Orin Nano Developer Kit``) and at ``/etc/nv_tegra_release``
(present on every Jetson Linux install), then tries each probe once and records what worked and,
for what did not, why. The result is a :class:`Board`: plain data that flightd logs and puts in its
status, and that :class:`flight.board.sample.BoardProbe` samples from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from flight.board import jetson, linux, raspberry_pi
from flight.board.command import CommandRunner, run_command
from flight.board.sysfs import ROOT, read_text, under, why_unreadable

BoardKind = Literal["raspberry-pi", "jetson", "linux"]
PowerSource = Literal["ina3221", "pmic", "rapl"]
ThrottleSource = Literal["sysfs", "vcgencmd"]

DEVICE_TREE_MODEL = ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model")
DMI_PRODUCT = "/sys/class/dmi/id/product_name"

# Thermal zone types that stand for the board, most telling first. Jetson Orin: tj-thermal is the
# junction (hottest) sensor; older Jetsons call the CPU zone CPU-therm. Raspberry Pi: cpu-thermal
# is zone 0, the SoC. x86: the package sensor, else ACPI's zone.
PREFERRED_ZONES: dict[str, tuple[str, ...]] = {
    "jetson": ("tj-thermal", "cpu-thermal", "CPU-therm"),
    "raspberry-pi": ("cpu-thermal",),
    "linux": ("x86_pkg_temp", "cpu-thermal", "soc-thermal", "acpitz"),
}


@dataclass(frozen=True)
class Board:
    """What :func:`detect_board` found. ``notes`` say what was looked for and could not be read."""

    kind: BoardKind
    model: str
    root: Path = ROOT
    release: str | None = None
    temp_source: str | None = None
    power_source: PowerSource | None = None
    power_detail: str | None = None
    throttle_source: ThrottleSource | None = None
    thermal_zones: tuple[str, ...] = ()
    cpufreq_policies: tuple[str, ...] = ()
    power_mode: jetson.PowerModeState | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def describe(self) -> str:
        """One line for the log and the status: the board and what it measures."""
        parts = [f"{self.kind} '{self.model}'"]
        if self.release:
            parts.append(f"L4T {self.release}")
        parts.append(f"temperature: {self.temp_source or 'none'}")
        parts.append(f"power: {self.power_detail or 'not measured'}")
        parts.append(f"throttle flags: {self.throttle_source or 'none'}")
        parts.append(f"cpufreq policies: {len(self.cpufreq_policies)}")
        if self.power_mode is not None and self.power_mode.current is not None:
            parts.append(f"power mode: {self.power_mode.current.name} (id {self.power_mode.current.id})")
        return "; ".join(parts)


def read_model(root: Path = ROOT) -> str | None:
    """The device-tree model string, or None on a machine without a device tree."""
    for path in DEVICE_TREE_MODEL:
        text = read_text(under(root, path))
        if text:
            return text
    return None


def board_kind(model: str | None, l4t_release: str | None) -> BoardKind:
    if l4t_release is not None or (model is not None and "jetson" in model.lower()):
        return "jetson"
    if model is not None and model.startswith("Raspberry Pi"):
        return "raspberry-pi"
    return "linux"


def board_temperature(
    kind: BoardKind, zones: list[linux.ThermalZone], hwmon: list[linux.HwmonTemp] | None = None
) -> tuple[float | None, str | None]:
    """(°C, where from): the first readable preferred zone of this kind of board, else the hottest
    readable zone, else the hottest hwmon temperature; (None, None) when nothing reads."""
    readable = [z for z in zones if z.temp_c is not None]
    for wanted in PREFERRED_ZONES[kind]:
        for z in readable:
            if z.type == wanted:
                return z.temp_c, f"{z.zone} ({z.type})"
    if readable:
        hottest = max(readable, key=lambda z: z.temp_c or 0.0)
        return hottest.temp_c, f"{hottest.zone} ({hottest.type or 'no type'}, hottest zone)"
    if hwmon:
        hot = max(hwmon, key=lambda t: t.temp_c)
        return hot.temp_c, f"hwmon {hot.chip} {hot.label} (hottest sensor)"
    return None, None


def detect_board(root: Path = ROOT, runner: CommandRunner = run_command) -> Board:
    """Identify the board under ``root`` and try every probe once (``runner`` runs ``vcgencmd``
    on a Raspberry Pi). Never raises: what cannot be read is left out and said in ``notes``."""
    notes: list[str] = []
    model = read_model(root)
    release = jetson.read_l4t_release(root)
    kind = board_kind(model, release)
    if model is None:
        model = read_text(under(root, DMI_PRODUCT)) or "no device-tree model"

    zones = linux.read_thermal_zones(root)
    unreadable = [f"{z.zone} ({z.type})" for z in zones if z.temp_c is None]
    if unreadable:
        notes.append(f"thermal zones without a reading: {', '.join(unreadable)}")
    _, temp_source = board_temperature(kind, zones, linux.read_hwmon_temps(root))
    if temp_source is None:
        notes.append("no thermal zone or hwmon temperature reads")

    power_source: PowerSource | None = None
    power_detail: str | None = None
    if kind == "jetson":
        rails = jetson.read_ina3221_rails(root)
        if rails:
            power_source = "ina3221"
            power_detail = f"INA3221 rails {', '.join(r.name for r in rails)}"
        else:
            notes.append("no readable INA3221 rail (driver not loaded, or every channel NC)")
    elif kind == "raspberry-pi":
        rails = raspberry_pi.query_pmic_rails(runner)
        if rails:
            power_source = "pmic"
            power_detail = f"PMIC (vcgencmd pmic_read_adc), {len(rails)} rails"
        else:
            notes.append("no PMIC rail readings (only the Raspberry Pi 5 has them)")
    if power_source is None:
        counters = linux.read_energy_counters(root)
        chosen = linux.total_zones(counters)
        if chosen:
            power_source = "rapl"
            power_detail = f"powercap {' + '.join(f'{c.zone} ({c.name})' for c in chosen)}"
        else:
            why = _powercap_why(root)
            if why:
                notes.append(why)

    throttle_source: ThrottleSource | None = None
    if raspberry_pi.read_throttled_sysfs(root) is not None:
        throttle_source = "sysfs"
    elif kind == "raspberry-pi":
        if raspberry_pi.query_throttled(runner) is not None:
            throttle_source = "vcgencmd"
        else:
            notes.append("throttled bits unreadable: no get_throttled in sysfs and vcgencmd failed")

    policies = linux.read_cpufreq(root)
    if not policies:
        notes.append("no cpufreq policies (no frequency scaling driver)")
    power_mode = jetson.read_power_mode(root) if kind == "jetson" else None

    return Board(
        kind=kind,
        model=model,
        root=root,
        release=release,
        temp_source=temp_source,
        power_source=power_source,
        power_detail=power_detail,
        throttle_source=throttle_source,
        thermal_zones=tuple(f"{z.zone}:{z.type}" for z in zones),
        cpufreq_policies=tuple(p.name for p in policies),
        power_mode=power_mode,
        notes=tuple(notes),
    )


def _powercap_why(root: Path) -> str | None:
    """Why no RAPL counter reads, where powercap zones exist at all (else None: nothing to say)."""
    base = under(root, linux.POWERCAP)
    try:
        zones = sorted(p for p in base.iterdir() if ":" in p.name)
    except OSError:
        return None
    for zone in zones:
        why = why_unreadable(zone / "energy_uj")
        if why is not None:
            return f"powercap {zone.name}/energy_uj: {why} (root-only since Linux 5.10)"
    return None
