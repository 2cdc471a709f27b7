"""Orbit, Sun and shadow against closed forms (physics.md) and published values."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from hil.plant.illumination import IlluminationModel
from hil.plant.orbit import CircularOrbit, TleOrbit, julian_date
from hil.plant.sun import sun_position

MU = 398600.4418
R = 6378.137


def closed_form_eclipse_fraction(h_km: float, beta_deg: float) -> float:
    """physics.md: f = acos(sqrt(h^2 + 2Rh) / ((R+h) cos beta)) / pi."""
    return math.acos(math.sqrt(h_km**2 + 2 * R * h_km) / ((R + h_km) * math.cos(math.radians(beta_deg)))) / math.pi


def darkness_s(model: IlluminationModel, t0: float, t1: float, step: float = 0.5) -> float:
    """Integral of (1 - illumination) over [t0, t1], s (midpoint rule)."""
    t = np.arange(t0, t1, step) + step / 2
    return float(np.sum(1.0 - model.sample(t).fraction) * step)


def test_circular_period_matches_kepler() -> None:
    orbit = CircularOrbit(550.0, 0.0)
    assert orbit.period_s == pytest.approx(2 * math.pi * math.sqrt((R + 550.0) ** 3 / MU), rel=1e-12)
    assert orbit.period_s == pytest.approx(5739.0, abs=1.0)  # physics.md: 95.65 min


@pytest.mark.parametrize(("beta", "f_ref"), [(0.0, 0.372), (30.0, 0.351), (50.0, 0.292), (60.0, 0.215)])
def test_circular_eclipse_duration_within_one_percent_of_cylindrical(beta: float, f_ref: float) -> None:
    orbit = CircularOrbit(550.0, beta)
    model = IlluminationModel(orbit)
    dark = darkness_s(model, 0.0, orbit.period_s)
    expected = closed_form_eclipse_fraction(550.0, beta) * orbit.period_s
    assert dark == pytest.approx(expected, rel=0.01)
    assert closed_form_eclipse_fraction(550.0, beta) == pytest.approx(f_ref, abs=0.001)


def test_beta_zero_eclipse_is_35_6_minutes_with_a_short_penumbra() -> None:
    orbit = CircularOrbit(550.0, 0.0)
    model = IlluminationModel(orbit)
    t = np.arange(0.0, orbit.period_s, 0.1)
    frac = model.sample(t).fraction
    assert np.sum(frac < 0.5) * 0.1 / 60 == pytest.approx(35.6, abs=0.36)
    penumbra_s = np.sum((frac > 0) & (frac < 1)) * 0.1
    assert 5.0 < penumbra_s < 40.0  # two crossings of a ~0.5 deg wide cone edge at 7.6 km/s
    assert frac.min() == 0.0 and frac.max() == 1.0


def test_no_eclipse_above_beta_star() -> None:
    beta_star = math.degrees(math.asin(R / (R + 550.0)))
    assert beta_star == pytest.approx(67.0, abs=0.1)
    model = IlluminationModel(CircularOrbit(550.0, beta_star + 1.0))
    assert darkness_s(model, 0.0, 5739.0, 1.0) == 0.0


def test_sun_matches_meeus_example_25a() -> None:
    """Meeus, Astronomical Algorithms, example 25.a: 1992 Oct 13.0 TD: apparent RA 198.38083 deg,
    dec -7.78507 deg, R = 0.99766 AU. The Almanac formulae claim 0.01 deg."""
    sun = sun_position(2448908.5)
    assert float(sun.ra_deg[0]) == pytest.approx(198.38083, abs=0.01)
    assert float(sun.dec_deg[0]) == pytest.approx(-7.78507, abs=0.01)
    assert float(sun.distance_au[0]) == pytest.approx(0.99766, abs=1e-4)
    assert float(np.linalg.norm(sun.unit[0])) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(
    ("when", "dec"),
    [
        (datetime(2024, 3, 20, 3, 6, tzinfo=UTC), 0.0),  # March equinox 03:06 UTC
        (datetime(2024, 6, 20, 20, 51, tzinfo=UTC), 23.44),  # June solstice 20:51 UTC
        (datetime(2024, 12, 21, 9, 21, tzinfo=UTC), -23.44),  # December solstice 09:21 UTC
    ],
)
def test_sun_declination_at_equinox_and_solstices(when: datetime, dec: float) -> None:
    jd, fr = julian_date(when)
    assert float(sun_position(jd + fr).dec_deg[0]) == pytest.approx(dec, abs=0.02)


def _checksum(line: str) -> str:
    total = sum(int(c) if c.isdigit() else (1 if c == "-" else 0) for c in line[:68])
    return line[:68] + str(total % 10)


# A Starlink-like 550 km, 53 deg orbit: mean motion 15.0552 rev/day (a = 6928.1 km), e = 0.0001.
TLE_1 = _checksum("1 99999U 24001A   24172.50000000  .00000000  00000-0  00000-0 0  9990")
TLE_2 = _checksum("2 99999  53.0000  40.0000 0001000  90.0000 270.0000 15.05520000    10")


def test_tle_orbit_period_altitude_and_eclipse_fraction_are_sane() -> None:
    orbit = TleOrbit(TLE_1, TLE_2)
    assert orbit.period_s == pytest.approx(86400.0 / 15.0552, rel=1e-3)
    assert orbit.altitude_km == pytest.approx(550.0, abs=10.0)
    assert orbit.inclination_deg == pytest.approx(53.0, abs=1e-6)
    model = IlluminationModel(orbit)
    t = np.arange(0.0, orbit.period_s, 1.0) + 0.5
    sample = model.sample(t)
    radius = np.linalg.norm(orbit.sample(t).r_km, axis=1)
    assert radius.min() > R + 500 and radius.max() < R + 600
    beta = float(np.mean(sample.beta_deg))
    assert abs(beta) < 67.0, "this epoch/RAAN should have eclipses"
    dark = float(np.sum(1.0 - sample.fraction)) / orbit.period_s
    # spherical Earth of radius R in both: within 3% of the closed form at this orbit's beta
    assert dark == pytest.approx(closed_form_eclipse_fraction(orbit.altitude_km, beta), rel=0.03)


def test_tle_beta_follows_the_geometry_formula() -> None:
    """physics.md: sin(beta) = cos(dec_s) sin(i) sin(RAAN - RA_s) + sin(dec_s) cos(i), at the epoch."""
    orbit = TleOrbit(TLE_1, TLE_2)
    sun = sun_position(orbit.epoch_jd + orbit.epoch_fr)
    dec, ra = math.radians(float(sun.dec_deg[0])), math.radians(float(sun.ra_deg[0]))
    i, raan = math.radians(53.0), math.radians(40.0)
    expected = math.degrees(math.asin(math.cos(dec) * math.sin(i) * math.sin(raan - ra) + math.sin(dec) * math.cos(i)))
    got = float(orbit.sample(np.array([0.0])).beta_deg[0])
    assert got == pytest.approx(expected, abs=0.1)


# An eccentric orbit (e = 0.3, 8 rev/day: perigee ~1010 km, apogee ~7360 km) whose perigee lies
# opposite the Sun at this epoch, so the eclipse falls where it moves fastest.
ECC_1 = _checksum("1 99998U 24001B   24172.50000000  .00000000  00000-0  00000-0 0  9990")
ECC_2 = _checksum("2 99998  10.0000  40.0000 3000000  90.0000 270.0000  8.00000000    10")


def test_eccentric_orbit_publishes_its_own_eclipse_fraction_not_the_circular_formula() -> None:
    """Ground truth: sgp4 itself every 0.5 s over one anomalistic period, the Sun from the Almanac
    formulae, and the cylindrical shadow test written out here (r.s < 0 and distance from the
    shadow axis < R). The plant's ``orbit`` channel must agree within 0.3 % of an orbit, and the
    circular formula at the orbit's mean altitude and beta is more than 10 % off."""
    from sgp4.api import Satrec

    from hil.plant import Plant, PlantConfig
    from hil.plant.telemetry import channel_values
    from hil.scenario import load_scenario

    orbit = TleOrbit(ECC_1, ECC_2)
    c = load_scenario("nominal-550km").config
    plant = Plant(PlantConfig(orbit, c.array, c.battery, c.thermal, c.loads, c.board))
    state = plant.step(10.0)
    published = channel_values(state)["orbit"]["eclipse_fraction"]

    sat = Satrec.twoline2rv(ECC_1, ECC_2)
    period_s = 2 * math.pi / sat.no_kozai * 60.0
    t = np.arange(0.0, period_s, 0.5)
    err, r, _ = sat.sgp4_array(np.full_like(t, sat.jdsatepoch), sat.jdsatepochF + t / 86400.0)
    assert not err.any()
    s = sun_position(sat.jdsatepoch + sat.jdsatepochF + t / 86400.0).unit
    along = np.einsum("ij,ij->i", r, s)
    off_axis = np.linalg.norm(r - along[:, None] * s, axis=1)
    truth = float(np.mean((along < 0) & (off_axis < R)))

    assert published == pytest.approx(truth, abs=0.003)
    circular = closed_form_eclipse_fraction(orbit.altitude_km, state.beta_deg)
    assert abs(truth - circular) / circular > 0.10, (truth, circular)
    assert plant.linear_parameters().eclipse_fraction == pytest.approx(truth, abs=0.003)
