"""Actuators on trees: cpufreq ceilings within cpuinfo limits, Jetson power modes through nvpmodel,
and the board saying no (no driver, read-only mount, not root, unknown mode, a failing tool).

"Not root" is real: the actuator runs in a forked child that has dropped to ``nobody``. "Read-only"
is real: the child runs in a private mount namespace where the tree is bind-mounted read-only.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flight.board.actuators import Actuation, FrequencyActuator, PowerModeActuator
from flight.board.command import run_command
from tests.board_trees import orin_nano_tree, x86_tree

POLICY0 = "sys/devices/system/cpu/cpufreq/policy0"
NOBODY = 65534

# Stands in for NVIDIA's nvpmodel binary, which this machine lacks: the same command line, the
# same status file format, refuses non-root users as the real one does (it writes /sys and /var).
NVPMODEL = """#!/bin/sh
echo "$*" >> "{root}/nvpmodel.calls"
if [ "$(id -u)" != 0 ]; then
  echo "NVPM ERROR: Error opening /var/lib/nvpmodel/status: Permission denied" >&2; exit 1
fi
[ "$1" = "-m" ] || exit 2
[ "$2" = "3" ] && {{ echo "NVPM WARN: Reboot required for changing to this power mode: 3"; exit 0; }}
printf 'pmode:%04d fmode:quiet\\n' "$2" > "{root}/var/lib/nvpmodel/status"
"""


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A temporary directory that the ``nobody`` user can traverse (pytest's own is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="orbitd-board-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def as_nobody(action: Callable[[], list[Actuation]]) -> list[Actuation]:
    """Run ``action`` in a forked child with the uid and gid of ``nobody``; its result comes back."""
    if os.geteuid() != 0:
        return action()  # already unprivileged
    read, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            payload = json.dumps([a.__dict__ for a in action()]).encode()
            os.write(write_end, payload)
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    return [Actuation(**a) for a in json.loads(data)]


def test_ceiling_clamped_into_cpuinfo_range_and_read_back(tmp_path: Path) -> None:
    x86_tree(tmp_path)
    cpufreq = FrequencyActuator(tmp_path)
    (done,) = cpufreq.set_max_khz(2_000_000)
    assert done.ok and done.applied == "2000000 kHz" and done.detail is None
    assert (tmp_path / POLICY0 / "scaling_max_freq").read_text() == "2000000"
    (high,) = cpufreq.set_max_khz(9_000_000)
    assert high.ok and high.applied == "3400000 kHz" and "clamped" in (high.detail or "")
    (low,) = cpufreq.set_max_khz(1)
    assert low.ok and low.applied == "800000 kHz"
    (half,) = cpufreq.set_fraction(0.5)
    assert half.applied == "2100000 kHz"
    (back,) = cpufreq.release()
    assert back.applied == "3400000 kHz"
    assert cpufreq.set_fraction(1.5)[0].ok is False


def test_every_policy_is_set(tmp_path: Path) -> None:
    orin_nano_tree(tmp_path)
    results = FrequencyActuator(tmp_path).set_max_khz(1_000_000)
    assert [(r.actuator, r.ok, r.applied) for r in results] == [
        ("cpufreq policy0", True, "1000000 kHz"), ("cpufreq policy4", True, "1000000 kHz")
    ]


def test_no_cpufreq_driver_is_reported(tmp_path: Path) -> None:
    (result,) = FrequencyActuator(tmp_path).set_max_khz(1_000_000)
    assert not result.ok and "no cpufreq policy" in (result.detail or "")
    assert not FrequencyActuator(tmp_path).check()[0].ok


def test_unreadable_limits_refuse_rather_than_guess(tmp_path: Path) -> None:
    x86_tree(tmp_path)
    (tmp_path / POLICY0 / "cpuinfo_max_freq").unlink()
    (result,) = FrequencyActuator(tmp_path).set_max_khz(1_000_000)
    assert not result.ok and "unreadable" in (result.detail or "")
    assert (tmp_path / POLICY0 / "scaling_max_freq").read_text() == "3400000\n"  # untouched


def test_not_root_is_reported_and_nothing_changes(shared_tmp: Path) -> None:
    x86_tree(shared_tmp)
    target = shared_tmp / POLICY0 / "scaling_max_freq"
    target.chmod(0o644)  # as sysfs has it: root may write, others read
    cpufreq = FrequencyActuator(shared_tmp)
    (checked,) = as_nobody(cpufreq.check)
    assert not checked.ok
    (result,) = as_nobody(lambda: cpufreq.set_max_khz(1_000_000))
    assert not result.ok and "permission denied" in (result.detail or "")
    assert target.read_text() == "3400000\n"
    assert cpufreq.check()[0].ok  # root may


def test_read_only_mount_is_reported(tmp_path: Path) -> None:
    x86_tree(tmp_path)
    sys_dir = tmp_path / "sys"
    child = tmp_path / "child.py"
    child.write_text(
        "import json, sys\nfrom pathlib import Path\nfrom flight.board.actuators import FrequencyActuator\n"
        "a = FrequencyActuator(Path(sys.argv[1]))\n"
        "print(json.dumps([r.__dict__ for r in a.check() + a.set_max_khz(1000000)]))\n"
    )
    sys_q = shlex.quote(str(sys_dir))
    script = (f"mount --bind {sys_q} {sys_q} && mount -o remount,bind,ro {sys_q} && "
              f"exec {shlex.quote(sys.executable)} {shlex.quote(str(child))} {shlex.quote(str(tmp_path))}")
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) is not installed: cannot make a read-only mount")
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, check=False,
                          cwd=Path(__file__).resolve().parent.parent)
    if done.returncode != 0 and "mount" in done.stderr and "permission denied" in done.stderr.lower():
        pytest.skip(f"no privilege for a private mount namespace here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    checked, result = (Actuation(**a) for a in json.loads(done.stdout))
    assert not checked.ok
    assert not result.ok and "read-only file system" in (result.detail or "")
    assert (tmp_path / POLICY0 / "scaling_max_freq").read_text() == "3400000\n"


# ================================================================================== nvpmodel


def nvpmodel_tool(root: Path) -> str:
    tool = root / "usr/sbin/nvpmodel"
    tool.parent.mkdir(parents=True, exist_ok=True)
    tool.write_text(NVPMODEL.format(root=root))
    tool.chmod(0o755)
    return str(tool)


def calls(root: Path) -> list[str]:
    path = root / "nvpmodel.calls"
    return path.read_text().splitlines() if path.exists() else []


def test_power_mode_switched_and_confirmed(tmp_path: Path) -> None:
    orin_nano_tree(tmp_path, pmode=1)
    actuator = PowerModeActuator(tmp_path, run_command, nvpmodel_tool(tmp_path))
    result = actuator.set_mode("15W")
    assert result.ok and result.applied == "15W (id 0)", result.describe()
    assert calls(tmp_path) == ["-m 0"]
    state = actuator.state()
    assert state is not None and state.current is not None and state.current.name == "15W"
    by_id = actuator.set_mode(2)
    assert by_id.ok and by_id.applied == "MAXN_SUPER (id 2)"


def test_mode_already_in_effect_runs_nothing(tmp_path: Path) -> None:
    orin_nano_tree(tmp_path, pmode=1)
    result = PowerModeActuator(tmp_path, run_command, nvpmodel_tool(tmp_path)).set_mode("25W")
    assert result.ok and result.detail == "already in effect"
    assert calls(tmp_path) == []


def test_unknown_mode_lists_the_boards_modes(tmp_path: Path) -> None:
    orin_nano_tree(tmp_path)
    result = PowerModeActuator(tmp_path, run_command, nvpmodel_tool(tmp_path)).set_mode("50W")
    assert not result.ok and "0=15W, 1=25W, 2=MAXN_SUPER, 3=7W" in (result.detail or "")
    assert calls(tmp_path) == []


def test_not_a_jetson(tmp_path: Path) -> None:
    x86_tree(tmp_path)
    result = PowerModeActuator(tmp_path).set_mode(0)
    assert not result.ok and "nvpmodel.conf" in (result.detail or "")


def test_missing_nvpmodel_binary(tmp_path: Path) -> None:
    orin_nano_tree(tmp_path)
    result = PowerModeActuator(tmp_path, run_command, str(tmp_path / "nowhere/nvpmodel")).set_mode(0)
    assert not result.ok and "status 127" in (result.detail or "")


def test_mode_needing_a_reboot_is_not_claimed(tmp_path: Path) -> None:
    orin_nano_tree(tmp_path, pmode=1)
    result = PowerModeActuator(tmp_path, run_command, nvpmodel_tool(tmp_path)).set_mode("7W")
    assert not result.ok and result.applied == "25W (id 1)" and "reboot" in (result.detail or "")


def test_nvpmodel_as_non_root_is_reported(shared_tmp: Path) -> None:
    orin_nano_tree(shared_tmp, pmode=1)
    (shared_tmp / "nvpmodel.calls").touch()
    (shared_tmp / "nvpmodel.calls").chmod(0o666)  # the stand-in logs its calls, whoever runs it
    actuator = PowerModeActuator(shared_tmp, run_command, nvpmodel_tool(shared_tmp))
    (result,) = as_nobody(lambda: [actuator.set_mode(0)])
    assert not result.ok and "Permission denied" in (result.detail or "")
    if os.geteuid() == 0:
        assert "not root" in (result.detail or "")
    assert calls(shared_tmp) == ["-m 0"]
    assert (shared_tmp / "var/lib/nvpmodel/status").read_text().startswith("pmode:0001")
