"""Raspberry Pi probes: the firmware's throttled bits and the Pi 5's PMIC rail readings.

The SoC temperature is the generic thermal zone 0 (``cpu-thermal``), read by
:func:`flight.board.linux.read_thermal_zones`.

Throttled bits, as documented by Raspberry Pi for ``vcgencmd get_throttled``
(https://www.raspberrypi.com/documentation/computers/os.html#get_throttled, and
../shared/reference/boards-and-runtime.md): bit 0 under-voltage detected, 1 ARM frequency
capped, 2 currently throttled, 3 soft temperature limit active; bits 16-19 the same "has occurred
since boot". The command prints ``throttled=0x50005``. Raspberry Pi OS kernels also expose the
same word, in hexadecimal, at ``/sys/devices/platform/soc/soc:firmware/get_throttled`` (added by
"firmware/raspberrypi: Add a get_throttled sysfs file", raspberrypi/linux, 2018), which is read
first: no process to start.

PMIC rails (Raspberry Pi 5 only): ``vcgencmd pmic_read_adc`` prints one line per reading,
``  VDD_CORE_A current(7)=0.75012000A`` and ``  VDD_CORE_V volt(15)=0.86173300V``; the number in
parentheses is the ADC channel, not the rail, so current and voltage are paired by the rail name
before ``_A``/``_V``. ``EXT5V_V`` (the 5 V input) has no current reading and is not a rail. Older
Pis answer ``error=1 error_msg="Command not registered"``: no rails.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from flight.board.command import CommandRunner
from flight.board.rails import PowerRail
from flight.board.sysfs import ROOT, read_text, under

GET_THROTTLED_SYSFS = "/sys/devices/platform/soc/soc:firmware/get_throttled"
VCGENCMD = "vcgencmd"

UNDER_VOLTAGE = 1 << 0
FREQ_CAPPED = 1 << 1
THROTTLED = 1 << 2
SOFT_TEMP_LIMIT = 1 << 3
OCCURRED_SHIFT = 16


@dataclass(frozen=True)
class ThrottleFlags:
    """The firmware's throttled word (``raw``) with its documented bits by name."""

    raw: int

    def _now(self, bit: int) -> bool:
        return bool(self.raw & bit)

    def _since_boot(self, bit: int) -> bool:
        return bool(self.raw & (bit << OCCURRED_SHIFT))

    @property
    def under_voltage(self) -> bool:
        return self._now(UNDER_VOLTAGE)

    @property
    def freq_capped(self) -> bool:
        return self._now(FREQ_CAPPED)

    @property
    def throttled(self) -> bool:
        return self._now(THROTTLED)

    @property
    def soft_temp_limit(self) -> bool:
        return self._now(SOFT_TEMP_LIMIT)

    @property
    def under_voltage_since_boot(self) -> bool:
        return self._since_boot(UNDER_VOLTAGE)

    @property
    def throttled_since_boot(self) -> bool:
        return self._since_boot(THROTTLED) or self._since_boot(FREQ_CAPPED) or self._since_boot(SOFT_TEMP_LIMIT)

    @property
    def limited(self) -> bool:
        """Running slower than asked right now: throttled, ARM clock capped or soft limit active."""
        return self.throttled or self.freq_capped or self.soft_temp_limit


def parse_throttled(text: str) -> ThrottleFlags | None:
    """``throttled=0x50005`` (vcgencmd) or ``50005`` (sysfs, hexadecimal) -> flags; None if neither."""
    value = text.strip().rsplit("=", 1)[-1].strip()
    try:
        return ThrottleFlags(int(value, 16))
    except ValueError:
        return None


def throttled_sysfs_paths(root: Path = ROOT) -> list[Path]:
    """The documented file first, then any ``soc*/*firmware/get_throttled`` (device-tree node names
    carry a unit address on some kernels, e.g. ``soc@107c000000``)."""
    documented = under(root, GET_THROTTLED_SYSFS)
    others = sorted(under(root, "/sys/devices/platform").glob("soc*/*firmware/get_throttled"))
    return [documented, *(p for p in others if p != documented)]


def read_throttled_sysfs(root: Path = ROOT) -> ThrottleFlags | None:
    """The throttled word from the firmware's sysfs file; None where the kernel has none."""
    for path in throttled_sysfs_paths(root):
        text = read_text(path)
        if text is not None:
            return parse_throttled(text)
    return None


def query_throttled(runner: CommandRunner, vcgencmd: str = VCGENCMD) -> ThrottleFlags | None:
    """``vcgencmd get_throttled`` through ``runner``; None when the command fails or says nothing usable."""
    result = runner([vcgencmd, "get_throttled"])
    if not result.ok or "throttled=" not in result.stdout:
        return None
    return parse_throttled(result.stdout.strip().splitlines()[-1])


_PMIC_LINE = re.compile(r"^\s*(?P<rail>\S+)_(?P<kind>[AV])\s+(?:current|volt)\(\d+\)=(?P<value>\S+?)[AV]\s*$")


def parse_pmic_read_adc(text: str) -> list[PowerRail]:
    """Rails with both a current and a voltage reading, in the order their currents appear."""
    amps: dict[str, float] = {}
    volts: dict[str, float] = {}
    for line in text.splitlines():
        m = _PMIC_LINE.match(line)
        if m is None:
            continue
        try:
            value = float(m["value"])
        except ValueError:
            continue
        if math.isfinite(value):
            (amps if m["kind"] == "A" else volts)[m["rail"]] = value
    return [PowerRail(name, volts[name], current) for name, current in amps.items() if name in volts]


def query_pmic_rails(runner: CommandRunner, vcgencmd: str = VCGENCMD) -> list[PowerRail]:
    """``vcgencmd pmic_read_adc`` through ``runner``: the Pi 5's rails, or [] on any other board."""
    result = runner([vcgencmd, "pmic_read_adc"])
    return parse_pmic_read_adc(result.stdout) if result.ok else []
