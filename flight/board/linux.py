"""Generic Linux probes: thermal zones, hwmon temperatures, ``/proc/stat``, cpufreq, powercap (RAPL).

Every function reads under ``root`` (``/`` on the board; a directory tree in tests) and returns
plain data. Sources of the layouts and units:

- Thermal zones, ``/sys/class/thermal/thermal_zoneN/{type,temp}``, temp in milli-degrees Celsius:
  kernel Documentation/driver-api/thermal/sysfs-api.rst ("temp: Current temperature as reported
  by thermal zone (sensor). Unit: millidegree Celsius"). A zone whose sensor is off answers the
  read with an error (EINVAL/ENODATA/EAGAIN): it is listed with ``temp_c=None``.
- hwmon, ``/sys/class/hwmon/hwmonN/{name,tempM_input,tempM_label}``, milli-degrees Celsius:
  kernel Documentation/hwmon/sysfs-interface.rst.
- ``/proc/stat`` ``cpuN`` lines, in USER_HZ ticks: proc(5). Fields: user nice system idle iowait
  irq softirq steal guest guest_nice; guest and guest_nice are already counted in user and nice,
  so they are left out of the totals.
- cpufreq policies, ``/sys/devices/system/cpu/cpufreq/policyN/{affected_cpus,scaling_cur_freq,
  cpuinfo_min_freq,cpuinfo_max_freq,scaling_min_freq,scaling_max_freq}`` in kHz: kernel
  Documentation/admin-guide/pm/cpufreq.rst ("Policy Interface in sysfs").
- powercap, ``/sys/class/powercap/<zone>/{name,energy_uj,max_energy_range_uj}`` in micro-joules:
  kernel Documentation/power/powercap/powercap.rst. ``energy_uj`` wraps to zero after
  ``max_energy_range_uj``; since Linux 5.10 (CVE-2020-8694) it is readable by root only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from flight.board.sysfs import ROOT, numbered, read_int, read_text, under

THERMAL = "/sys/class/thermal"
HWMON = "/sys/class/hwmon"
PROC_STAT = "/proc/stat"
CPUFREQ = "/sys/devices/system/cpu/cpufreq"
POWERCAP = "/sys/class/powercap"


# ================================================================================ temperatures


@dataclass(frozen=True)
class ThermalZone:
    """One thermal zone: ``zone`` (``thermal_zone0``), ``type`` (``cpu-thermal``), °C or None."""

    zone: str
    type: str
    temp_c: float | None


def read_thermal_zones(root: Path = ROOT) -> list[ThermalZone]:
    """Every thermal zone in numeric order; an unreadable temperature is None, never an error."""
    zones = []
    for path in numbered(under(root, THERMAL), "thermal_zone"):
        milli = read_int(path / "temp")
        zones.append(ThermalZone(path.name, read_text(path / "type") or "", None if milli is None else milli / 1000))
    return zones


@dataclass(frozen=True)
class HwmonChip:
    """A hwmon device: ``path`` (``.../hwmon/hwmonN``), driver ``name`` and the device it sits on
    (the basename of its ``device`` link, e.g. ``1-0040`` for an I2C chip; "" when absent)."""

    path: Path
    name: str
    device: str


def hwmon_chips(root: Path = ROOT, name: str | None = None) -> list[HwmonChip]:
    """hwmon chips under ``/sys/class/hwmon`` (only those called ``name`` when given)."""
    chips = []
    for path in numbered(under(root, HWMON), "hwmon"):
        chip_name = read_text(path / "name") or ""
        if name is not None and chip_name != name:
            continue
        device = path / "device"
        chips.append(HwmonChip(path, chip_name, device.resolve().name if device.exists() else ""))
    return chips


@dataclass(frozen=True)
class HwmonTemp:
    """One hwmon temperature input: chip name, label (``tempN_label`` or ``tempN``), °C."""

    chip: str
    label: str
    temp_c: float


def read_hwmon_temps(root: Path = ROOT) -> list[HwmonTemp]:
    """Every readable ``tempN_input`` of every hwmon chip, in chip then channel order."""
    temps = []
    for chip in hwmon_chips(root):
        for channel in sorted(_channels(chip.path, "temp", "_input")):
            milli = read_int(chip.path / f"temp{channel}_input")
            if milli is None:
                continue
            label = read_text(chip.path / f"temp{channel}_label") or f"temp{channel}"
            temps.append(HwmonTemp(chip.name, label, milli / 1000))
    return temps


def _channels(directory: Path, kind: str, suffix: str) -> set[int]:
    """Channel numbers N for which ``{kind}N{suffix}`` exists in ``directory``."""
    found: set[int] = set()
    try:
        names = [p.name for p in directory.iterdir()]
    except OSError:
        return found
    for n in names:
        if n.startswith(kind) and n.endswith(suffix):
            middle = n[len(kind) : len(n) - len(suffix)]
            if middle.isdigit():
                found.add(int(middle))
    return found


# ==================================================================================== CPU load


@dataclass(frozen=True)
class CpuTimes:
    """Cumulative ticks of one CPU since boot: ``busy`` (user+nice+system+irq+softirq+steal) and
    ``total`` (busy + idle + iowait)."""

    busy: int
    total: int


def parse_proc_stat(text: str) -> dict[str, CpuTimes]:
    """``cpuN`` lines of ``/proc/stat`` (the aggregate ``cpu`` line is left out). A line with fewer
    than the four fields every kernel has, or with non-numbers, is skipped."""
    cpus = {}
    for line in text.splitlines():
        fields = line.split()
        if not fields or not fields[0].startswith("cpu") or not fields[0][3:].isdigit():
            continue
        try:
            ticks = [int(f) for f in fields[1:11]]
        except ValueError:
            continue
        if len(ticks) < 4:
            continue
        ticks += [0] * (8 - len(ticks))
        user, nice, system, idle, iowait, irq, softirq, steal = ticks[:8]
        busy = user + nice + system + irq + softirq + steal
        cpus[fields[0]] = CpuTimes(busy=busy, total=busy + idle + iowait)
    return cpus


def read_proc_stat(root: Path = ROOT) -> dict[str, CpuTimes]:
    """Per-CPU tick counters from ``/proc/stat``; empty when it cannot be read."""
    text = read_text(under(root, PROC_STAT))
    return {} if text is None else parse_proc_stat(text)


def busy_cores(before: dict[str, CpuTimes], after: dict[str, CpuTimes]) -> float | None:
    """Busy cores between two readings: the sum over CPUs of busy ticks / all ticks (0 .. N CPUs).

    A CPU missing from either reading (hot-plugged) or whose counters did not advance or went
    backwards is left out. None when no CPU can be compared.
    """
    total = 0.0
    compared = 0
    for cpu, b in before.items():
        a = after.get(cpu)
        if a is None or a.total <= b.total or a.busy < b.busy:
            continue
        total += min(1.0, (a.busy - b.busy) / (a.total - b.total))
        compared += 1
    return total if compared else None


# ===================================================================================== cpufreq


@dataclass(frozen=True)
class CpufreqPolicy:
    """One cpufreq policy (a group of CPUs that share a clock); frequencies in kHz, None if unreadable."""

    name: str
    path: Path
    cpus: tuple[int, ...]
    cur_khz: int | None
    cpuinfo_min_khz: int | None
    cpuinfo_max_khz: int | None
    scaling_min_khz: int | None
    scaling_max_khz: int | None


def read_cpufreq(root: Path = ROOT) -> list[CpufreqPolicy]:
    """Every ``policyN`` under ``/sys/devices/system/cpu/cpufreq`` (none on a VM without a driver)."""
    policies = []
    for path in numbered(under(root, CPUFREQ), "policy"):
        cpus_text = read_text(path / "affected_cpus") or read_text(path / "related_cpus") or ""
        cpus = tuple(int(c) for c in cpus_text.split() if c.isdigit())
        policies.append(
            CpufreqPolicy(
                name=path.name,
                path=path,
                cpus=cpus,
                cur_khz=read_int(path / "scaling_cur_freq"),
                cpuinfo_min_khz=read_int(path / "cpuinfo_min_freq"),
                cpuinfo_max_khz=read_int(path / "cpuinfo_max_freq"),
                scaling_min_khz=read_int(path / "scaling_min_freq"),
                scaling_max_khz=read_int(path / "scaling_max_freq"),
            )
        )
    return policies


# ================================================================================ powercap/RAPL


@dataclass(frozen=True)
class EnergyCounter:
    """A powercap zone's energy counter: ``zone`` (``intel-rapl:0``), ``name`` (``package-0``),
    ``energy_uj`` (µJ since an arbitrary origin) and the range after which it wraps (µJ)."""

    zone: str
    name: str
    energy_uj: int
    max_range_uj: int | None


def read_energy_counters(root: Path = ROOT) -> list[EnergyCounter]:
    """Every powercap zone whose ``energy_uj`` can be read, sorted by zone. Zones whose counter is
    root-only (Linux 5.10 and later) are left out; :func:`flight.board.sysfs.why_unreadable` tells."""
    counters = []
    base = under(root, POWERCAP)
    try:
        zones = sorted(p for p in base.iterdir() if ":" in p.name)
    except OSError:
        return []
    for path in zones:
        energy = read_int(path / "energy_uj")
        if energy is None:
            continue
        counters.append(
            EnergyCounter(path.name, read_text(path / "name") or "", energy, read_int(path / "max_energy_range_uj"))
        )
    return counters


def total_zones(counters: Iterable[EnergyCounter]) -> list[EnergyCounter]:
    """The zones whose sum is the board's power, without counting anything twice: the platform
    zone (``psys``) alone when there is one; else the top-level ``package-N`` zones of the
    ``intel-rapl`` control type, else those of ``intel-rapl-mmio`` (the same packages read through
    MMIO). Sub-zones (``intel-rapl:0:0``, core/uncore/dram) are parts of their package."""
    counters = list(counters)
    psys = [c for c in counters if c.name == "psys"]
    if psys:
        return psys[:1]
    for control in ("intel-rapl", "intel-rapl-mmio"):
        packages = [
            c for c in counters
            if c.zone.startswith(control + ":") and c.zone.count(":") == 1 and c.name.startswith("package")
        ]
        if packages:
            return packages
    return []


def energy_delta_uj(before: EnergyCounter, after: EnergyCounter) -> int | None:
    """µJ used between two readings of one counter, across a wraparound (the counter restarts at 0
    after ``max_range_uj``). None when the counter went backwards and its range is unknown."""
    if after.energy_uj >= before.energy_uj:
        return after.energy_uj - before.energy_uj
    if before.max_range_uj is None or before.max_range_uj < before.energy_uj:
        return None
    return before.max_range_uj - before.energy_uj + after.energy_uj


def rapl_power_w(before: list[EnergyCounter], after: list[EnergyCounter], elapsed_s: float) -> float | None:
    """Mean power (W) of the :func:`total_zones` between two readings ``elapsed_s`` apart; None when
    there is nothing to compare or the time did not advance."""
    if elapsed_s <= 0:
        return None
    later = {c.zone: c for c in after}
    used = 0
    compared = 0
    for b in total_zones(before):
        a = later.get(b.zone)
        delta = None if a is None else energy_delta_uj(b, a)
        if delta is None:
            return None
        used += delta
        compared += 1
    return used / 1e6 / elapsed_s if compared else None
