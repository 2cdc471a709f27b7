"""Jetson probes: INA3221 power rails through hwmon, the nvpmodel power mode, the L4T release.

INA3221 (kernel Documentation/hwmon/ina3221.rst): ``in[123]_label`` channel labels,
``in[123]_input`` bus voltage in mV, ``curr[123]_input`` current in mA, ``in[123]_enable``. The
other files are NOT rails: ``in[456]_input`` are the shunt voltages (µV) of channels 1-3,
``in7_input``/``in7_label`` the sum of shunt voltages and ``curr4_input`` the summed current, so
only channels 1-3 are read. A channel the carrier board leaves unconnected is labelled ``NC``
and skipped, as is a disabled one (``inN_enable`` = 0). On Orin Nano/NX the chip sits at
``/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon*`` with rails VDD_IN (the module's input: the
board total), VDD_CPU_GPU_CV and VDD_SOC; AGX Orin has VDD_GPU_SOC, VDD_CPU_CV, VIN_SYS_5V0 on one
chip and a second at 1-0041 (../shared/reference/boards-and-runtime.md).

nvpmodel (NVIDIA Jetson Linux Developer Guide, "Platform Power and Performance", Power Mode
Controls; the format is in the header of every ``/etc/nvpmodel.conf``): modes are declared as
``< POWER_MODEL ID=<id> NAME=<name> >`` and the boot default as ``< PM_CONFIG DEFAULT=<id> >``.
``nvpmodel -m <id>`` records the selected mode in ``/var/lib/nvpmodel/status`` as
``pmode:0002``; without that file the board runs the default. ``nvpmodel -q`` prints
``NV Power Mode: <name>`` and then the id on a line of its own.

``/etc/nv_tegra_release`` starts ``# R36 (release), REVISION: 4.3, ...`` (L4T 36.4.3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from flight.board.linux import hwmon_chips
from flight.board.rails import PowerRail
from flight.board.sysfs import ROOT, numbered, read_int, read_text, under

INA3221_DRIVER = "/sys/bus/i2c/drivers/ina3221"
NVPMODEL_CONF = "/etc/nvpmodel.conf"
NVPMODEL_STATUS = "/var/lib/nvpmodel/status"
NV_TEGRA_RELEASE = "/etc/nv_tegra_release"
INA3221_CHANNELS = (1, 2, 3)
BOARD_INPUT_RAIL = "VDD_IN"


def ina3221_dirs(root: Path = ROOT) -> list[Path]:
    """hwmon directories of every INA3221: by driver name under ``/sys/class/hwmon`` and through the
    I2C driver's devices (``/sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*``), each once."""
    found: dict[Path, Path] = {}
    for chip in hwmon_chips(root, name="ina3221"):
        found.setdefault(chip.path.resolve(), chip.path)
    driver = under(root, INA3221_DRIVER)
    try:
        devices = sorted(p for p in driver.iterdir() if (p / "hwmon").is_dir())
    except OSError:
        devices = []
    for device in devices:
        for path in numbered(device / "hwmon", "hwmon"):
            found.setdefault(path.resolve(), path)
    return list(found.values())


def read_ina3221_rails(root: Path = ROOT) -> list[PowerRail]:
    """Connected, enabled, readable rails of every INA3221 (V and A, converted from mV and mA)."""
    rails = []
    for chip in ina3221_dirs(root):
        for n in INA3221_CHANNELS:
            label = read_text(chip / f"in{n}_label")
            if not label or label.upper() == "NC" or label.lower().startswith("sum"):
                continue
            if read_int(chip / f"in{n}_enable") == 0:
                continue
            millivolts = read_int(chip / f"in{n}_input")
            milliamps = read_int(chip / f"curr{n}_input")
            if millivolts is None or milliamps is None:
                continue
            rails.append(PowerRail(label, millivolts / 1000, milliamps / 1000))
    return rails


def board_power_w(rails: list[PowerRail]) -> float | None:
    """The module's power: the VDD_IN rail where there is one (the others are parts of it), else
    the sum of the rails (AGX Orin); None without rails."""
    for rail in rails:
        if rail.name.upper() == BOARD_INPUT_RAIL:
            return rail.watts
    return sum(r.watts for r in rails) if rails else None


# ===================================================================================== nvpmodel


@dataclass(frozen=True)
class PowerMode:
    """An nvpmodel power mode: its id (``nvpmodel -m ID``) and name (``15W``, ``MAXN``)."""

    id: int
    name: str


@dataclass(frozen=True)
class NvpmodelConfig:
    """The modes declared in ``/etc/nvpmodel.conf`` and its boot default (None if undeclared)."""

    modes: tuple[PowerMode, ...]
    default_id: int | None

    def mode(self, key: int | str) -> PowerMode | None:
        """The mode with this id, or this name (case-insensitive)."""
        for m in self.modes:
            if m.id == key or (isinstance(key, str) and m.name.upper() == key.upper()):
                return m
        return None


_POWER_MODEL = re.compile(r"^<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=(\S+?)\s*>")
_PM_CONFIG = re.compile(r"^<\s*PM_CONFIG\s+DEFAULT=(\d+)\s*>")


def parse_nvpmodel_conf(text: str) -> NvpmodelConfig:
    """Modes and default from the text of ``nvpmodel.conf`` (comment lines start with ``#``)."""
    modes = []
    default = None
    for line in text.splitlines():
        line = line.strip()
        if (m := _POWER_MODEL.match(line)) is not None:
            modes.append(PowerMode(int(m[1]), m[2]))
        elif (m := _PM_CONFIG.match(line)) is not None:
            default = int(m[1])
    return NvpmodelConfig(tuple(modes), default)


def parse_nvpmodel_status(text: str) -> int | None:
    """The mode id recorded in ``/var/lib/nvpmodel/status`` (``pmode:0002`` -> 2)."""
    m = re.search(r"pmode:(\d+)", text)
    return int(m[1]) if m else None


def parse_nvpmodel_query(text: str) -> int | None:
    """The mode id from ``nvpmodel -q`` output (the integer line after ``NV Power Mode: NAME``)."""
    lines = [line.strip() for line in text.splitlines()]
    for i, line in enumerate(lines):
        if line.startswith("NV Power Mode"):
            for after in lines[i + 1 :]:
                if after.isdigit():
                    return int(after)
    return None


@dataclass(frozen=True)
class PowerModeState:
    """The power mode the board runs (None if unknown), what it was read from, and every mode."""

    current: PowerMode | None
    source: str
    config: NvpmodelConfig


def read_power_mode(root: Path = ROOT) -> PowerModeState | None:
    """The current nvpmodel mode from the status file, else the configuration's default; None
    where there is no ``/etc/nvpmodel.conf`` (not a Jetson, or nvpmodel not installed)."""
    conf_text = read_text(under(root, NVPMODEL_CONF))
    if conf_text is None:
        return None
    config = parse_nvpmodel_conf(conf_text)
    status = read_text(under(root, NVPMODEL_STATUS))
    mode_id = None if status is None else parse_nvpmodel_status(status)
    if mode_id is not None:
        return PowerModeState(config.mode(mode_id) or PowerMode(mode_id, "?"), NVPMODEL_STATUS, config)
    if config.default_id is not None:
        return PowerModeState(config.mode(config.default_id), f"{NVPMODEL_CONF} default", config)
    return PowerModeState(None, "unknown", config)


def read_l4t_release(root: Path = ROOT) -> str | None:
    """``R36.4.3`` from ``/etc/nv_tegra_release``; None where the file is absent or unrecognised."""
    text = read_text(under(root, NV_TEGRA_RELEASE))
    if text is None:
        return None
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return f"R{m[1]}.{m[2]}" if m else text.splitlines()[0][:60]
