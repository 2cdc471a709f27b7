"""Actuators beyond threads and duty cycle: CPU frequency ceiling and Jetson power mode.

Each command returns an :class:`Actuation` that says what is in effect afterwards or why the
board did not allow it (no such file, read-only mount, not root, a mode that does not exist,
the tool's own error). Nothing here raises for a board that says no: the daemon carries on with
the actuators it has.

- :class:`FrequencyActuator` writes ``scaling_max_freq`` (kHz) of each cpufreq policy, kept
  within that policy's ``cpuinfo_min_freq``..``cpuinfo_max_freq`` (kernel
  Documentation/admin-guide/pm/cpufreq.rst: "scaling_max_freq: Maximum frequency the CPUs
  belonging to this policy are allowed to be running at (in kHz)"), and reads it back: the
  kernel may settle on another value (a thermal or firmware limit, the nearest table entry).
- :class:`PowerModeActuator` runs ``nvpmodel -m <id>`` (NVIDIA Jetson Linux Developer Guide,
  Power Mode Controls) for a mode declared in ``/etc/nvpmodel.conf``, then reads the mode back
  from ``/var/lib/nvpmodel/status``. nvpmodel needs root.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from flight.board.command import CommandRunner, run_command
from flight.board.jetson import PowerModeState, read_power_mode
from flight.board.linux import CPUFREQ, CpufreqPolicy, read_cpufreq
from flight.board.sysfs import ROOT, read_int, under, write_text


@dataclass(frozen=True)
class Actuation:
    """One actuator command's outcome: ``ok``; ``applied`` the value in effect afterwards (read
    back); ``detail`` why not (when not ok) or what the board changed about the request."""

    actuator: str
    requested: str
    ok: bool
    applied: str | None = None
    detail: str | None = None

    def describe(self) -> str:
        verdict = f"applied {self.applied}" if self.ok else "not applied"
        return f"{self.actuator}: {self.requested} -> {verdict}" + (f" ({self.detail})" if self.detail else "")


def _not_root_hint() -> str:
    return "" if os.geteuid() == 0 else f"; flightd runs as uid {os.geteuid()}, not root"


class FrequencyActuator:
    """The CPU frequency ceiling of every cpufreq policy under ``root``."""

    def __init__(self, root: Path = ROOT) -> None:
        self.root = root

    def policies(self) -> list[CpufreqPolicy]:
        return read_cpufreq(self.root)

    def check(self) -> list[Actuation]:
        """Whether each policy's ceiling could be written now, without writing it."""
        policies = self.policies()
        if not policies:
            return [self._none()]
        out = []
        for p in policies:
            path = p.path / "scaling_max_freq"
            writable = os.access(path, os.W_OK)
            reason = None if writable else f"{path} is not writable{_not_root_hint()} or is on a read-only mount"
            out.append(Actuation(f"cpufreq {p.name}", "write access", writable, None, reason))
        return out

    def set_max_khz(self, khz: int) -> list[Actuation]:
        """Set every policy's ceiling to ``khz``, clamped into the policy's cpuinfo range."""
        policies = self.policies()
        if not policies:
            return [self._none()]
        return [self._set(p, khz) for p in policies]

    def set_fraction(self, fraction: float) -> list[Actuation]:
        """Set every policy's ceiling at ``fraction`` (0..1) of its way from cpuinfo min to max."""
        if not 0.0 <= fraction <= 1.0:
            return [Actuation("cpufreq", f"fraction {fraction}", False, None, "fraction must be within 0..1")]
        policies = self.policies()
        if not policies:
            return [self._none()]
        out = []
        for p in policies:
            if p.cpuinfo_min_khz is None or p.cpuinfo_max_khz is None:
                out.append(self._set(p, 0))  # reports the unreadable limits
                continue
            out.append(self._set(p, round(p.cpuinfo_min_khz + fraction * (p.cpuinfo_max_khz - p.cpuinfo_min_khz))))
        return out

    def release(self) -> list[Actuation]:
        """Give every policy its full range back (ceiling = cpuinfo_max_freq)."""
        policies = self.policies()
        if not policies:
            return [self._none()]
        return [self._set(p, p.cpuinfo_max_khz or 0) for p in policies]

    def _none(self) -> Actuation:
        return Actuation(
            "cpufreq", "frequency ceiling", False, None,
            f"no cpufreq policy under {under(self.root, CPUFREQ)} (no frequency scaling driver on this board)",
        )

    def _set(self, policy: CpufreqPolicy, khz: int) -> Actuation:
        name = f"cpufreq {policy.name}"
        requested = f"scaling_max_freq {khz} kHz"
        low, high = policy.cpuinfo_min_khz, policy.cpuinfo_max_khz
        if low is None or high is None:
            unreadable = f"cpuinfo_min_freq/cpuinfo_max_freq of {policy.path} unreadable"
            return Actuation(name, requested, False, None, unreadable)
        target = min(max(khz, low), high)
        path = policy.path / "scaling_max_freq"
        why = write_text(path, str(target))
        if why is not None:
            if "permission denied" in why:
                why += _not_root_hint()
            return Actuation(name, requested, False, None, why)
        now = read_int(path)
        notes = []
        if target != khz:
            notes.append(f"clamped into cpuinfo range {low}..{high} kHz")
        if now is not None and now != target:
            notes.append(f"the kernel settled on {now} kHz")
        applied = f"{now if now is not None else target} kHz"
        return Actuation(name, requested, True, applied, "; ".join(notes) or None)


class PowerModeActuator:
    """Jetson power modes through ``nvpmodel`` (run by ``runner``; ``nvpmodel`` names the binary)."""

    def __init__(self, root: Path = ROOT, runner: CommandRunner = run_command, nvpmodel: str = "nvpmodel") -> None:
        self.root = root
        self.runner = runner
        self.nvpmodel = nvpmodel

    def state(self) -> PowerModeState | None:
        return read_power_mode(self.root)

    def set_mode(self, key: int | str) -> Actuation:
        """Switch to the mode with id or name ``key``; the result says the mode in effect after."""
        requested = f"power mode {key}"
        state = self.state()
        if state is None:
            why = "no /etc/nvpmodel.conf: not a Jetson, or nvpmodel missing"
            return Actuation("nvpmodel", requested, False, None, why)
        mode = state.config.mode(key)
        if mode is None:
            known = ", ".join(f"{m.id}={m.name}" for m in state.config.modes) or "none"
            return Actuation("nvpmodel", requested, False, None, f"no such power mode on this board (modes: {known})")
        if state.current is not None and state.current.id == mode.id:
            return Actuation("nvpmodel", requested, True, f"{mode.name} (id {mode.id})", "already in effect")
        result = self.runner([self.nvpmodel, "-m", str(mode.id)])
        if not result.ok:
            return Actuation("nvpmodel", requested, False, None, result.failure() + _not_root_hint())
        after = self.state()
        current = None if after is None else after.current
        if current is None or current.id != mode.id:
            found = "unknown" if current is None else f"{current.name} (id {current.id})"
            return Actuation(
                "nvpmodel", requested, False, found,
                f"nvpmodel exited 0 but the board reports mode {found} (a mode change may need a reboot)",
            )
        return Actuation("nvpmodel", requested, True, f"{mode.name} (id {mode.id})")
