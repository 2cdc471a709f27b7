"""The plant's radiation environment: IGRF field, SAA and high-latitude proxies, upset rate calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hil.plant.ground_track import GroundTrack, circular_ground_track, gmst_rad, tle_ground_track
from hil.plant.orbit import TleOrbit
from hil.plant.radiation import (
    DEFAULT_EPOCH,
    RadiationEnvironment,
    RadiationParams,
    RadiationTable,
    calibrate,
    dipole_pole,
    reference_track,
)
from hil.scenario import load_scenario

R_500 = 6378.137 + 500.0


def points(*lat_lon: tuple[float, float], r_km: float = R_500) -> GroundTrack:
    lat, lon = np.array(lat_lon, dtype=np.float64).T
    return GroundTrack(lat, lon, np.full(lat.size, r_km))


@pytest.fixture(scope="module")
def env() -> RadiationEnvironment:
    return RadiationEnvironment()


def test_saa_is_weak_field_and_high_flux_against_the_same_latitude_over_indonesia(env: RadiationEnvironment) -> None:
    sample = env.sample(points((-25.0, -50.0), (-25.0, 120.0)))
    b_saa, b_indonesia = sample.b_nt
    assert 17_000 < b_saa < 20_000  # IGRF-14 at 500 km over south-east Brazil
    assert b_indonesia > 2.0 * b_saa
    assert sample.flux[0] > 100.0 * sample.flux[1]
    assert sample.saa[0] > 0.0 and sample.saa[1] == 0.0


def test_field_falls_with_altitude_like_a_dipole(env: RadiationEnvironment) -> None:
    low = env.sample(points((0.0, 120.0), r_km=6378.137 + 400)).b_nt[0]
    high = env.sample(points((0.0, 120.0), r_km=6378.137 + 800)).b_nt[0]
    expected = ((6378.137 + 400) / (6378.137 + 800)) ** 3
    assert high / low == pytest.approx(expected, rel=0.03)


def test_dipole_pole_is_igrf_2025s_geomagnetic_north_pole() -> None:
    colat, lon = dipole_pole(DEFAULT_EPOCH)
    assert 90.0 - math.degrees(colat) == pytest.approx(80.8, abs=0.3)  # IGRF-14 2025: 80.8 N, 72.8 W
    assert math.degrees(lon) == pytest.approx(-72.8, abs=0.5)


def test_high_latitudes_have_low_cutoff_and_more_cosmic_rays(env: RadiationEnvironment) -> None:
    sample = env.sample(points((0.0, 0.0), (-60.0, 140.0), (60.0, -100.0)))
    equator, south, north = sample.cutoff_gv
    assert equator > 10.0 and south < 1.0 and north < 1.0  # Störmer: 14.9 / L^2
    assert sample.gcr[1] > 10 * sample.gcr[0]
    assert np.all(sample.saa[1:] == 0.0)


def test_orbit_average_matches_the_cited_alsat1_rate(env: RadiationEnvironment) -> None:
    """4.04e-7 upsets/bit-day over Alsat-1's orbit (Bentoutou 2012), 80 % of them in the SAA."""
    params = env.params
    sample = env.sample(reference_track())
    per_bit_day = sample.upset_rate_per_mbit_day.mean() / 1e6
    assert per_bit_day == pytest.approx(4.04e-7, rel=0.02)
    saa_part = params.reference_saa_share * sample.saa / params.saa_ref_mean
    assert saa_part.mean() / sample.flux.mean() == pytest.approx(0.8, rel=0.02)


def test_calibration_constants_are_reproduced() -> None:
    saa, gcr = calibrate()
    params = RadiationParams()
    assert saa == pytest.approx(params.saa_ref_mean, rel=0.01)
    assert gcr == pytest.approx(params.gcr_ref_mean, rel=0.01)


def test_hubble_orbit_spends_about_15_percent_below_the_saa_edge(env: RadiationEnvironment) -> None:
    """The edge B = 22,000 nT is set by the 15 % of its time HST is commonly said to spend in the SAA."""
    track = circular_ground_track(np.arange(0.0, 86400.0, 10.0), 540.0, 28.5)
    sample = env.sample(track)
    assert np.mean(sample.saa > 0) == pytest.approx(0.15, abs=0.02)


def test_circular_track_matches_orbit_geometry() -> None:
    t = np.arange(0.0, 6000.0, 1.0)
    track = circular_ground_track(t, 550.0, 53.0)
    assert track.lat_deg.max() == pytest.approx(53.0, abs=0.01)
    assert track.lat_deg.min() == pytest.approx(-53.0, abs=0.01)
    assert np.all(track.altitude_km == pytest.approx(550.0))
    # one period later the node has moved west by the Earth's rotation (+ J2 regression): about 24 deg
    period = 2 * math.pi * math.sqrt((6378.137 + 550.0) ** 3 / 398600.4418)
    later = circular_ground_track(np.array([0.0, period]), 550.0, 53.0)
    shift = (later.lon_deg[1] - later.lon_deg[0] + 180.0) % 360.0 - 180.0
    assert shift == pytest.approx(-24.3, abs=0.3)


def test_tle_track_uses_sidereal_time() -> None:
    scenario_tle = (
        "1 25544U 98067A   24001.50000000  .00016717  00000-0  10270-3 0  9009",
        "2 25544  51.6400 208.9163 0006317  69.9862  25.2906 15.50000000    09",
    )
    orbit = TleOrbit(*scenario_tle)
    track = tle_ground_track(orbit, np.arange(0.0, 5600.0, 60.0))
    assert np.abs(track.lat_deg).max() == pytest.approx(51.6, abs=0.5)
    assert np.all((track.altitude_km > 380) & (track.altitude_km < 450))
    assert gmst_rad(np.array([2451545.0]))[0] == pytest.approx(4.894961212823059, abs=1e-12)  # sgp4's gstime


def test_table_for_the_nominal_scenario() -> None:
    scenario = load_scenario("nominal-550km")
    table = RadiationTable.for_orbit(scenario.config.orbit, 86400.0, step_s=10.0)
    flux = table.sample.flux
    assert flux.size == 8641
    assert 0.2 < flux.mean() < 1.0  # lower and less inclined than Alsat-1: less exposure
    high = flux > 1.0
    assert 0.03 < high.mean() < 0.15  # minutes per orbit in the SAA core
    assert flux[high].sum() / flux.sum() > 0.7  # where most upsets happen
    values = table.at(1234.5)
    assert set(values) == {"b_nt", "l_shell", "cutoff_gv", "flux", "upset_rate_per_mbit_day"}
    assert values["flux"] == pytest.approx(float(flux[123]))


def test_feed_extends_its_table_as_time_advances(env: RadiationEnvironment) -> None:
    """The plant service's feed: tables of 1 h here, computed as time advances, give what one table of the
    whole span gives at every instant (the grid is the same), and every value is a valid reading."""
    from hil.plant.radiation import RadiationFeed
    from link.telemetry import RADIATION, value_problem

    orbit = load_scenario("nominal-550km").config.orbit
    feed = RadiationFeed(orbit, step_s=10.0, chunk_s=3600.0, env=env)
    whole = RadiationTable.for_orbit(orbit, 4 * 3600.0, step_s=10.0, env=env)
    for t in np.arange(0.0, 4 * 3600.0, 97.0):
        got = feed.at(float(t))
        assert got == pytest.approx(whole.at(float(t)), rel=1e-9)
        assert [value_problem(RADIATION, k, v) for k, v in got.items()] == [None] * 5
    assert feed.at(4 * 3600.0 + 5.0)["b_nt"] > 0  # past the first chunks: computed on demand
