"""Generic Linux probes on an x86 tree laid out as the kernel documents it, and on this machine."""

from __future__ import annotations

import glob
import os
import threading
import time
from pathlib import Path

import pytest

from flight.board import linux
from flight.board.linux import CpuTimes, EnergyCounter
from tests.board_trees import PROC_STAT, thermal_zone, write, x86_tree


def test_thermal_zones_in_numeric_order_with_types_and_unreadable_sensors(tmp_path: Path) -> None:
    x86_tree(tmp_path)
    thermal_zone(tmp_path, 10, "pch_cannonlake", 61000)
    write(tmp_path, "/sys/devices/virtual/thermal/thermal_zone11/type", "int3400 Thermal\n")
    write(tmp_path, "/sys/devices/virtual/thermal/thermal_zone11/temp", "\n")  # a driver that answers nothing
    os.symlink("../../devices/virtual/thermal/thermal_zone11", tmp_path / "sys/class/thermal/thermal_zone11")
    zones = linux.read_thermal_zones(tmp_path)
    assert [(z.zone, z.type, z.temp_c) for z in zones] == [
        ("thermal_zone0", "acpitz", 27.8),
        ("thermal_zone1", "x86_pkg_temp", 52.0),
        ("thermal_zone2", "iwlwifi_1", None),
        ("thermal_zone10", "pch_cannonlake", 61.0),
        ("thermal_zone11", "int3400 Thermal", None),
    ]


def test_no_thermal_class_reads_as_no_zones(tmp_path: Path) -> None:
    assert linux.read_thermal_zones(tmp_path) == []


def test_hwmon_temperatures_with_and_without_labels(tmp_path: Path) -> None:
    x86_tree(tmp_path)
    temps = linux.read_hwmon_temps(tmp_path)
    assert [(t.chip, t.label, t.temp_c) for t in temps] == [
        ("coretemp", "Package id 0", 55.0), ("coretemp", "Core 0", 53.0), ("coretemp", "temp3", 51.0)
    ]
    chips = linux.hwmon_chips(tmp_path)
    assert [(c.name, c.device) for c in chips] == [("coretemp", "coretemp.0")]


def test_proc_stat_parse_leaves_out_the_aggregate_line_and_guest_time() -> None:
    cpus = linux.parse_proc_stat(PROC_STAT)
    assert set(cpus) == {"cpu0", "cpu1"}
    # user nice system irq softirq steal = 200 5 100 3 2 0 -> 310 busy; + idle 500 + iowait 20
    assert cpus["cpu0"] == CpuTimes(busy=310, total=830)
    # guest (9th field) is already inside user: it must not be added again
    guest = linux.parse_proc_stat("cpu0 100 0 0 100 0 0 0 0 100 0\n")
    assert guest["cpu0"] == CpuTimes(busy=100, total=200)
    # an old kernel's four-field line still reads; junk does not crash
    assert linux.parse_proc_stat("cpu0 1 2 3 4\ncpu1 x y z w\n") == {"cpu0": CpuTimes(busy=6, total=10)}


def test_busy_cores_between_two_readings() -> None:
    before = {"cpu0": CpuTimes(100, 1000), "cpu1": CpuTimes(100, 1000), "cpu2": CpuTimes(5, 50)}
    after = {"cpu0": CpuTimes(150, 1100), "cpu1": CpuTimes(200, 1100), "cpu3": CpuTimes(0, 10)}
    # cpu0 half busy, cpu1 fully busy; cpu2 went offline and cpu3 came online: not comparable
    assert linux.busy_cores(before, after) == pytest.approx(1.5)
    assert linux.busy_cores(before, before) is None  # no time passed
    assert linux.busy_cores(after, before) is None  # counters went backwards


def test_cpufreq_policies(tmp_path: Path) -> None:
    x86_tree(tmp_path)
    (policy,) = linux.read_cpufreq(tmp_path)
    assert (policy.name, policy.cpus, policy.cur_khz) == ("policy0", (0, 1), 2100000)
    assert (policy.cpuinfo_min_khz, policy.cpuinfo_max_khz, policy.scaling_max_khz) == (800000, 3400000, 3400000)


def test_energy_counters_and_the_zones_that_make_the_total(tmp_path: Path) -> None:
    x86_tree(tmp_path)
    counters = linux.read_energy_counters(tmp_path)
    assert [(c.zone, c.name) for c in counters] == [
        ("intel-rapl-mmio:0", "package-0"), ("intel-rapl:0", "package-0"), ("intel-rapl:0:0", "core")
    ]
    # the package through MSRs, not again through MMIO, and not its core sub-zone on top
    assert [c.zone for c in linux.total_zones(counters)] == ["intel-rapl:0"]
    psys = [*counters, EnergyCounter("intel-rapl:1", "psys", 5, 100)]
    assert [c.zone for c in linux.total_zones(psys)] == ["intel-rapl:1"]
    only_mmio = [c for c in counters if c.zone.startswith("intel-rapl-mmio")]
    assert [c.zone for c in linux.total_zones(only_mmio)] == ["intel-rapl-mmio:0"]


def test_energy_counter_wraparound() -> None:
    before = EnergyCounter("intel-rapl:0", "package-0", 262_143_000_000, 262_143_328_850)
    after = EnergyCounter("intel-rapl:0", "package-0", 671_150, 262_143_328_850)
    assert linux.energy_delta_uj(before, after) == 328_850 + 671_150
    assert linux.rapl_power_w([before], [after], 0.5) == pytest.approx(2.0)
    unknown_range = EnergyCounter("intel-rapl:0", "package-0", 10, None)
    assert linux.energy_delta_uj(unknown_range, EnergyCounter("intel-rapl:0", "package-0", 5, None)) is None


def test_rapl_power_from_two_readings_of_the_tree(tmp_path: Path) -> None:
    x86_tree(tmp_path)
    before = linux.read_energy_counters(tmp_path)
    write(tmp_path, "/sys/devices/virtual/powercap/intel-rapl/intel-rapl:0/energy_uj", "13000000\n")
    after = linux.read_energy_counters(tmp_path)
    assert linux.rapl_power_w(before, after, 2.0) == pytest.approx(6.0)  # 12 J in 2 s
    assert linux.rapl_power_w(before, after, 0.0) is None


def test_root_only_energy_counter_is_left_out(tmp_path: Path) -> None:
    x86_tree(tmp_path)
    energy = tmp_path / "sys/devices/virtual/powercap/intel-rapl/intel-rapl:0/energy_uj"
    energy.unlink()
    energy.mkdir()  # reading fails, as EACCES does for a non-root reader since Linux 5.10
    assert [c.zone for c in linux.read_energy_counters(tmp_path)] == ["intel-rapl-mmio:0", "intel-rapl:0:0"]


# ============================================================================ this machine's own


def test_this_machines_proc_stat_counts_every_online_cpu_and_sees_load() -> None:
    root = Path("/")
    first = linux.read_proc_stat(root)
    online = len(glob.glob("/sys/devices/system/cpu/cpu[0-9]*/topology")) or os.cpu_count()
    assert len(first) == online
    stop = time.monotonic() + 0.4
    spin = threading.Thread(target=lambda: [None for _ in iter(lambda: time.monotonic() < stop, False)])
    spin.start()
    spin.join()
    busy = linux.busy_cores(first, linux.read_proc_stat(root))
    assert busy is not None
    assert 0.1 < busy <= len(first) + 1e-9


def test_this_machines_sys_reads_like_its_files() -> None:
    root = Path("/")
    zones = linux.read_thermal_zones(root)
    assert [z.zone for z in zones] == sorted(
        (os.path.basename(p) for p in glob.glob("/sys/class/thermal/thermal_zone*")), key=lambda n: int(n[12:])
    )
    for z in zones:
        assert z.temp_c is None or -60 < z.temp_c < 150
    assert len(linux.read_cpufreq(root)) == len(glob.glob("/sys/devices/system/cpu/cpufreq/policy*"))
    assert len(linux.hwmon_chips(root)) == len(glob.glob("/sys/class/hwmon/hwmon*"))
    for c in linux.read_energy_counters(root):
        assert c.energy_uj >= 0
