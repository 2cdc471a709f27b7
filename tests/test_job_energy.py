"""flight.governor.energy: a job's energy is the integral of (P - P_idle) over its run, shared between
jobs that run together, with P_idle configured or learnt from quiet readings."""

from __future__ import annotations

import math

import pytest

from flight.governor.energy import JobEnergyMeter


def test_constant_power_over_a_run() -> None:
    meter = JobEnergyMeter(fallback_idle_w=3.0, idle_w=5.0)
    meter.observe(0.0, 5.0, 0)
    meter.start("a", 1.0)
    meter.observe(1.0, 20.0, 1)
    meter.observe(1.5, 20.0, 1)
    meter.observe(3.0, 20.0, 1)
    assert meter.finish("a", 3.0) == pytest.approx((20.0 - 5.0) * 2.0)


def test_linear_power_between_readings_is_integrated_exactly() -> None:
    meter = JobEnergyMeter(fallback_idle_w=0.0, idle_w=2.0)
    meter.observe(0.0, 2.0, 0)
    meter.start("a", 0.0)
    meter.observe(4.0, 10.0, 1)  # P = 2 + 2t W: the integral of P - 2 over [0, 4] s is 16 J
    assert meter.finish("a", 4.0) == pytest.approx(16.0)


def test_power_is_held_flat_past_the_last_reading() -> None:
    meter = JobEnergyMeter(fallback_idle_w=0.0, idle_w=1.0)
    meter.observe(0.0, 7.0, 1)
    meter.start("a", 0.5)
    assert meter.finish("a", 2.5) == pytest.approx(6.0 * 2.0)


def test_jobs_running_together_share_the_power_above_idle() -> None:
    meter = JobEnergyMeter(fallback_idle_w=0.0, idle_w=0.0)
    meter.observe(0.0, 10.0, 0)
    meter.start("a", 0.0)
    meter.start("b", 1.0)
    meter.observe(2.0, 10.0, 2)
    ea = meter.finish("a", 2.0)
    meter.observe(3.0, 10.0, 1)
    eb = meter.finish("b", 3.0)
    assert ea == pytest.approx(10.0 * 1.0 + 10.0 * 1.0 / 2)  # alone for 1 s, then half of 10 W for 1 s
    assert eb == pytest.approx(10.0 * 1.0 / 2 + 10.0 * 1.0)
    assert ea + eb == pytest.approx(10.0 * 3.0)  # nothing counted twice, nothing lost


def test_idle_is_learnt_from_quiet_readings_only() -> None:
    meter = JobEnergyMeter(fallback_idle_w=3.0, idle_alpha=0.5)
    assert (meter.idle_w, meter.idle_source) == (3.0, "board profile")
    meter.observe(0.0, 4.0, 0)
    assert meter.idle_w == 3.0  # one reading alone: nothing says the one before it was quiet
    meter.observe(1.0, 4.0, 0)
    assert (meter.idle_w, meter.idle_source) == (4.0, "measured")
    meter.start("a", 1.2)
    meter.observe(1.5, 12.0, 1)
    meter.finish("a", 1.6)
    meter.observe(2.0, 11.0, 0)  # just after a job: a sensor that averages still shows its power
    assert meter.idle_w == 4.0
    meter.observe(3.0, 6.0, 0)
    assert meter.idle_w == pytest.approx(5.0)


def test_a_short_job_between_two_quiet_readings_does_not_teach_idle() -> None:
    meter = JobEnergyMeter(fallback_idle_w=3.0)
    meter.observe(0.0, 4.0, 0)
    meter.start("a", 0.2)
    meter.finish("a", 0.3)
    meter.observe(1.0, 9.0, 0)
    assert meter.idle_w == 3.0


def test_unknown_jobs_and_no_readings_give_none_and_noise_gives_zero() -> None:
    meter = JobEnergyMeter(fallback_idle_w=3.0)
    assert meter.finish("never-started", 1.0) is None
    meter.start("a", 0.0)
    assert meter.finish("a", 1.0) is None  # no reading at all
    meter.observe(1.0, 2.5, 0)
    meter.start("b", 2.0)
    assert meter.finish("b", 3.0) == 0.0  # below idle: noise, not negative energy


def test_old_readings_are_forgotten_but_running_jobs_keep_theirs() -> None:
    meter = JobEnergyMeter(fallback_idle_w=0.0, idle_w=0.0)
    meter.start("long", 0.0)
    for t in range(1000):
        meter.observe(float(t), 1.0, 1)
    assert meter.finish("long", 999.0) == pytest.approx(999.0)
    for t in range(1000, 2000):
        meter.observe(float(t), 1.0, 0)
    assert len(meter._readings) <= 2  # nothing runs: only the latest is needed


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError):
        JobEnergyMeter(fallback_idle_w=-1.0)
    with pytest.raises(ValueError):
        JobEnergyMeter(fallback_idle_w=1.0, idle_alpha=0.0)
    assert math.isfinite(JobEnergyMeter(fallback_idle_w=1.0).idle_w)
