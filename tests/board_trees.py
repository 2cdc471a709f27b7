"""Directory trees laid out as on real boards, for the board probes and actuators.

Each builder writes the files the kernel and the vendor tools provide, at their documented paths
and in their documented formats (sources in the docstrings of flight/board/*.py), with the class
directories as symlinks into /sys/devices as on a running system. Odd cases are made the way the
real system makes them: a sensor whose read fails is a file that cannot be read (here a
directory, which fails with an OSError like EIO/ENODATA does); a missing attribute is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

PI5_PMIC = """\
 3V7_WL_SW_A current(0)=0.09368929A
   3V3_SYS_A current(1)=0.08783370A
   1V8_SYS_A current(2)=0.18054710A
  DDR_VDD2_A current(3)=0.22543980A
  DDR_VDDQ_A current(4)=0.06666720A
   1V1_SYS_A current(5)=0.17566740A
    0V8_SW_A current(6)=0.37670900A
  VDD_CORE_A current(7)=2.22421000A
 3V7_WL_SW_V volt(8)=3.69977600V
   3V3_SYS_V volt(9)=3.31003300V
   1V8_SYS_V volt(10)=1.80512600V
  DDR_VDD2_V volt(11)=1.10476100V
  DDR_VDDQ_V volt(12)=0.60146460V
   1V1_SYS_V volt(13)=1.11025500V
    0V8_SW_V volt(14)=0.80146440V
  VDD_CORE_V volt(15)=0.86173300V
     EXT5V_V volt(24)=5.09066000V
      BATT_V volt(25)=0.00000000V
"""

ORIN_NANO_NVPMODEL_CONF = """\
#
# Copyright (c) 2024, NVIDIA CORPORATION. All rights reserved.
#
# < POWER_MODEL ID=id_num NAME=mode_name >
# < PM_CONFIG DEFAULT=default_mode >
< PARAM TYPE=FILE NAME=CPU_ONLINE >
CORE_0 /sys/devices/system/cpu/cpu0/online
< PARAM TYPE=CLOCK NAME=CPU_A78_0 >
MAX_FREQ /sys/devices/system/cpu/cpu0/cpufreq/scaling_max_freq

< POWER_MODEL ID=0 NAME=15W >
CPU_ONLINE CORE_0 1
CPU_A78_0 MAX_FREQ 1497600

< POWER_MODEL ID=1 NAME=25W >
CPU_ONLINE CORE_0 1

< POWER_MODEL ID=2 NAME=MAXN_SUPER >
CPU_ONLINE CORE_0 1
CPU_A78_0 MAX_FREQ -1

< POWER_MODEL ID=3 NAME=7W >
CPU_ONLINE CORE_0 1

< PM_CONFIG DEFAULT=2 >
"""

PROC_STAT = """\
cpu  400 10 200 1000 40 5 5 0 0 0
cpu0 200 5 100 500 20 3 2 0 0 0
cpu1 200 5 100 500 20 2 3 0 0 0
intr 12345 0 0
ctxt 6789
btime 1700000000
processes 4242
procs_running 2
procs_blocked 0
"""


def write(root: Path, absolute: str, text: str) -> Path:
    path = root / absolute.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def unreadable(root: Path, absolute: str) -> Path:
    """A sysfs attribute whose read fails with an OSError (as a sensor that is off does)."""
    path = root / absolute.lstrip("/")
    path.mkdir(parents=True, exist_ok=True)
    return path


def link(root: Path, absolute: str, target: str) -> None:
    """``absolute`` as a relative symlink to ``target`` (both as on the board)."""
    path = root / absolute.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(root / target.lstrip("/"), path.parent), path)


def thermal_zone(root: Path, n: int, kind: str, milli_c: int | None) -> None:
    base = f"/sys/devices/virtual/thermal/thermal_zone{n}"
    write(root, f"{base}/type", f"{kind}\n")
    if milli_c is None:
        unreadable(root, f"{base}/temp")
    else:
        write(root, f"{base}/temp", f"{milli_c}\n")
    link(root, f"/sys/class/thermal/thermal_zone{n}", base)


def hwmon(root: Path, n: int, device: str, files: dict[str, str]) -> str:
    """A hwmon directory ``device``/hwmon/hwmon``n`` with ``files``, linked from /sys/class/hwmon."""
    base = f"{device}/hwmon/hwmon{n}"
    for name, text in files.items():
        write(root, f"{base}/{name}", text)
    link(root, f"{base}/device", device)
    link(root, f"/sys/class/hwmon/hwmon{n}", base)
    return base


def cpufreq_policy(root: Path, n: int, cpus: str, min_khz: int, max_khz: int, cur_khz: int) -> Path:
    base = f"/sys/devices/system/cpu/cpufreq/policy{n}"
    for name, value in {
        "affected_cpus": cpus,
        "related_cpus": cpus,
        "cpuinfo_min_freq": min_khz,
        "cpuinfo_max_freq": max_khz,
        "scaling_min_freq": min_khz,
        "scaling_max_freq": max_khz,
        "scaling_cur_freq": cur_khz,
    }.items():
        write(root, f"{base}/{name}", f"{value}\n")
    return root / base.lstrip("/")


def rapl_zone(root: Path, zone: str, name: str, energy_uj: int, max_range_uj: int = 262143328850) -> Path:
    control = zone.split(":")[0]
    parts = zone.split(":")
    # Sub-zones nest inside their parent: intel-rapl/intel-rapl:0/intel-rapl:0:0
    nested = "/".join(":".join(parts[:i]) for i in range(2, len(parts) + 1))
    base = f"/sys/devices/virtual/powercap/{control}/{nested}"
    write(root, f"{base}/name", f"{name}\n")
    write(root, f"{base}/energy_uj", f"{energy_uj}\n")
    write(root, f"{base}/max_energy_range_uj", f"{max_range_uj}\n")
    link(root, f"/sys/class/powercap/{zone}", base)
    return root / base.lstrip("/")


def x86_tree(root: Path) -> Path:
    """A two-core x86 machine: ACPI and package thermal zones, coretemp, one cpufreq policy, RAPL."""
    write(root, "/sys/class/dmi/id/product_name", "Standard PC (Q35 + ICH9, 2009)\n")
    thermal_zone(root, 0, "acpitz", 27800)
    thermal_zone(root, 1, "x86_pkg_temp", 52000)
    thermal_zone(root, 2, "iwlwifi_1", None)
    hwmon(root, 0, "/sys/devices/platform/coretemp.0", {
        "name": "coretemp\n", "temp1_label": "Package id 0\n", "temp1_input": "55000\n",
        "temp2_label": "Core 0\n", "temp2_input": "53000\n", "temp3_input": "51000\n",
    })
    write(root, "/proc/stat", PROC_STAT)
    cpufreq_policy(root, 0, "0 1", 800000, 3400000, 2100000)
    rapl_zone(root, "intel-rapl:0", "package-0", 1_000_000)
    rapl_zone(root, "intel-rapl:0:0", "core", 600_000)
    rapl_zone(root, "intel-rapl-mmio:0", "package-0", 1_000_000)
    return root


def pi5_tree(root: Path, throttled_hex: str = "50005") -> Path:
    """A Raspberry Pi 5 on Raspberry Pi OS: device-tree model, cpu-thermal zone 0, get_throttled,
    four Cortex-A76 in one cpufreq policy."""
    write(root, "/sys/firmware/devicetree/base/model", "Raspberry Pi 5 Model B Rev 1.0\x00")
    link(root, "/proc/device-tree", "/sys/firmware/devicetree/base")
    thermal_zone(root, 0, "cpu-thermal", 61250)
    write(root, "/sys/devices/platform/soc/soc:firmware/get_throttled", f"{throttled_hex}\n")
    write(root, "/proc/stat", PROC_STAT)
    cpufreq_policy(root, 0, "0 1 2 3", 1500000, 2400000, 2400000)
    return root


def pi4_tree(root: Path) -> Path:
    """A Raspberry Pi 4 whose kernel has no get_throttled file (vcgencmd answers instead)."""
    write(root, "/sys/firmware/devicetree/base/model", "Raspberry Pi 4 Model B Rev 1.4\x00")
    link(root, "/proc/device-tree", "/sys/firmware/devicetree/base")
    thermal_zone(root, 0, "cpu-thermal", 48500)
    write(root, "/proc/stat", PROC_STAT)
    cpufreq_policy(root, 0, "0 1 2 3", 600000, 1800000, 600000)
    return root


def ina3221(root: Path, hwmon_n: int, address: str, channels: dict[int, tuple[str, int, int]]) -> str:
    """An INA3221 on I2C bus 1 at ``address`` with ``channels`` {n: (label, mV, mA)}, plus the
    shunt (in4-6, µV), sum (in7, curr4) files that are not rails."""
    device = f"/sys/devices/platform/bus@0/c240000.i2c/i2c-1/{address}"
    files = {"name": "ina3221\n"}
    for n, (label, mv, ma) in channels.items():
        files |= {
            f"in{n}_label": f"{label}\n", f"in{n}_enable": "1\n", f"in{n}_input": f"{mv}\n",
            f"curr{n}_input": f"{ma}\n", f"shunt{n}_resistor": "5000\n", f"in{n + 3}_input": f"{ma * 5}\n",
        }
    files |= {"in7_label": "sum of shunt voltages\n", "in7_input": "9000\n", "curr4_input": "99999\n"}
    base = hwmon(root, hwmon_n, device, files)
    link(root, f"/sys/bus/i2c/drivers/ina3221/{address}", device)
    return base


def jetson_common(root: Path, model: str, zones: list[tuple[str, int | None]]) -> None:
    write(root, "/sys/firmware/devicetree/base/model", f"{model}\x00")
    link(root, "/proc/device-tree", "/sys/firmware/devicetree/base")
    write(root, "/etc/nv_tegra_release",
          "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, "
          "DATE: Wed Jan  8 01:49:37 UTC 2025\n# KERNEL_VARIANT: oot\n")
    for n, (kind, milli) in enumerate(zones):
        thermal_zone(root, n, kind, milli)
    write(root, "/proc/stat", PROC_STAT)


def orin_nano_tree(root: Path, pmode: int | None = 1) -> Path:
    """Jetson Orin Nano (JetPack 6): INA3221 at 1-0040 (VDD_IN, VDD_CPU_GPU_CV, VDD_SOC), thermal
    zones with the DLA zones unreadable (the Nano has no DLA), nvpmodel modes, six A78 cores."""
    jetson_common(root, "NVIDIA Jetson Orin Nano Developer Kit", [
        ("cpu-thermal", 47531), ("gpu-thermal", 46187), ("cv0-thermal", None), ("cv1-thermal", None),
        ("cv2-thermal", None), ("soc0-thermal", 46718), ("soc1-thermal", 47093), ("soc2-thermal", 45906),
        ("tj-thermal", 48062),
    ])
    ina3221(root, 1, "1-0040", {1: ("VDD_IN", 5080, 1232), 2: ("VDD_CPU_GPU_CV", 5072, 400), 3: ("VDD_SOC", 5072, 560)})
    write(root, "/etc/nvpmodel/nvpmodel_p3767_0003_super.conf", ORIN_NANO_NVPMODEL_CONF)
    link(root, "/etc/nvpmodel.conf", "/etc/nvpmodel/nvpmodel_p3767_0003_super.conf")
    if pmode is not None:
        write(root, "/var/lib/nvpmodel/status", f"pmode:{pmode:04d} fmode:quiet\n")
    cpufreq_policy(root, 0, "0 1 2 3", 115200, 1728000, 1497600)
    cpufreq_policy(root, 4, "4 5", 115200, 1728000, 1497600)
    return root


def agx_orin_tree(root: Path) -> Path:
    """Jetson AGX Orin: two INA3221 (1-0040 and 1-0041, the second with NC channels), no VDD_IN."""
    jetson_common(root, "Jetson AGX Orin", [("cpu-thermal", 51000), ("tj-thermal", 53500)])
    main = {1: ("VDD_GPU_SOC", 5000, 1600), 2: ("VDD_CPU_CV", 5000, 800), 3: ("VIN_SYS_5V0", 5000, 900)}
    ina3221(root, 1, "1-0040", main)
    ina3221(root, 2, "1-0041", {1: ("NC", 0, 0), 2: ("VDDQ_VDD2_1V8AO", 5000, 200), 3: ("NC", 0, 0)})
    return root
