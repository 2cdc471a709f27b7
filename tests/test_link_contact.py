"""Contact plans against closed forms and hand-worked cases: Earth rotation, station position, look angles,
overhead pass durations, unreachable stations, the plant's circular orbit placed over the Earth."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sgp4.propagation import gstime

from hil.link.contact import ContactPlan, ContactWindow, merge_windows, relay_plan, station_passes
from hil.link.geometry import GroundStation, gmst_rad, teme_to_ecef
from hil.link.track import CircularTrack, TleTrack, days_j2000, ecef_km, track_for
from hil.plant.constants import EARTH_ROTATION_RAD_S, J2000_JD, MU_EARTH_KM3_S2, R_EARTH_KM, WGS84_FLATTENING
from hil.plant.orbit import CircularOrbit, TleOrbit
from hil.plant.sun import sun_position
from tests.test_plant_orbit import TLE_1, TLE_2

VALLADO_3_5 = datetime(1992, 8, 20, 12, 14, tzinfo=UTC)  # Vallado Example 3-5: GMST 152.578787810 deg


def overhead_pass_s(a_km: float, r_site_km: float, mask_deg: float, rate_rad_s: float) -> float:
    """Duration of a pass straight overhead: the satellite (radius a) is above the mask while its central
    angle from the site (radius r) is below lambda = acos(r cos(mask) / a) - mask (the triangle centre,
    site, satellite: the angle at the site is 90 deg + mask); it sweeps 2 lambda at ``rate_rad_s``."""
    eps = math.radians(mask_deg)
    lam = math.acos(r_site_km * math.cos(eps) / a_km) - eps
    return 2.0 * lam / rate_rad_s


def azimuth_error_deg(a: float, b: float) -> float:
    """Angle between two azimuths, deg (0 and 360 are the same direction)."""
    return abs((a - b + 180.0) % 360.0 - 180.0)


def test_gmst_matches_vallado_example_3_5_and_sgp4() -> None:
    days = days_j2000(VALLADO_3_5)
    assert math.degrees(float(gmst_rad(days))) == pytest.approx(152.578787810, abs=1e-7)
    d = np.linspace(-9000.0, 12000.0, 97) + 0.123456
    ours = gmst_rad(d)
    theirs = np.array([gstime(J2000_JD + x) for x in d])
    assert np.max(np.abs(np.angle(np.exp(1j * (ours - theirs))))) < 1e-9


def test_gmst_turns_at_the_earth_rotation_rate() -> None:
    d = days_j2000(datetime(2026, 3, 20, tzinfo=UTC))
    turned = float(np.mod(gmst_rad(d + 0.01) - gmst_rad(d), 2 * math.pi))
    assert turned / 864.0 == pytest.approx(EARTH_ROTATION_RAD_S, rel=1e-6)


def test_site_position_matches_vallado_example_7_1() -> None:
    """Vallado Example 7-1: 39.007 deg N, 104.883 deg W, 2187 m -> (-1275.1219, -4797.9890, 3994.2975) km."""
    site = GroundStation("usafa", 39.007, -104.883, 2187.0)
    assert site.ecef_km == pytest.approx([-1275.1219, -4797.9890, 3994.2975], abs=2e-4)
    # the equator is at the equatorial radius, the pole at the polar radius b = R (1 - f)
    assert GroundStation("eq", 0.0, 0.0).ecef_km == pytest.approx([R_EARTH_KM, 0.0, 0.0], abs=1e-9)
    assert GroundStation("pole", 90.0, 0.0).ecef_km[2] == pytest.approx(R_EARTH_KM * (1 - WGS84_FLATTENING), abs=1e-9)


def test_look_angles_hand_worked_on_the_equator() -> None:
    """Hand-worked: a site at 0 N 0 E on the ellipsoid is at (6378.137, 0, 0) km with up = x, east = y,
    north = z. At the instant of Vallado Example 3-5 (GMST theta = 152.578787810 deg), a satellite at TEME
    (6878.137 cos theta, 6878.137 sin theta, 500) km is at R3(theta) r = (6878.137, 0, 500) km Earth-fixed:
    range vector (500, 0, 500) -> up 500, north 500, east 0: elevation 45 deg, azimuth 0 deg (north),
    range 500 sqrt(2) = 707.107 km. Moved to Earth-fixed (6878.137, 500, 0) instead: east 500, up 500 ->
    elevation 45 deg, azimuth 90 deg."""
    theta = math.radians(152.578787810)
    site = GroundStation("eq", 0.0, 0.0)
    r_teme = np.array([[6878.137 * math.cos(theta), 6878.137 * math.sin(theta), 500.0]])
    r_ecef = teme_to_ecef(r_teme, gmst_rad(np.array([days_j2000(VALLADO_3_5)])))
    assert r_ecef[0] == pytest.approx([6878.137, 0.0, 500.0], abs=1e-5)
    look = site.look_angles(r_ecef)
    assert float(look.elevation_deg[0]) == pytest.approx(45.0, abs=1e-6)
    assert azimuth_error_deg(float(look.azimuth_deg[0]), 0.0) < 1e-6
    assert float(look.range_km[0]) == pytest.approx(707.1068, abs=1e-4)
    east = site.look_angles(np.array([[6878.137, 500.0, 0.0]]))
    assert float(east.elevation_deg[0]) == pytest.approx(45.0, abs=1e-9)
    assert float(east.azimuth_deg[0]) == pytest.approx(90.0, abs=1e-9)
    below = site.look_angles(np.array([[6378.137, 0.0, -500.0]]))
    assert float(below.elevation_deg[0]) == pytest.approx(0.0, abs=1e-9)  # on the horizon, due south
    assert float(below.azimuth_deg[0]) == pytest.approx(180.0, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    lat=st.floats(-89.9, 89.9),
    lon=st.floats(-180.0, 179.9),
    alt_m=st.floats(0.0, 4000.0),
    height_km=st.floats(200.0, 2000.0),
    tilt_deg=st.floats(-80.0, 80.0),
    az_deg=st.floats(0.0, 359.9),
)
def test_look_angles_invert_a_constructed_direction(
    lat: float, lon: float, alt_m: float, height_km: float, tilt_deg: float, az_deg: float
) -> None:
    """A point placed at range rho along (azimuth, elevation) from the site reads back the same angles."""
    site = GroundStation("s", lat, lon, alt_m)
    east, north, up = site.enu_axes
    el, az = math.radians(tilt_deg), math.radians(az_deg)
    direction = math.cos(el) * (math.sin(az) * east + math.cos(az) * north) + math.sin(el) * up
    look = site.look_angles((site.ecef_km + height_km * direction)[None, :])
    assert float(look.elevation_deg[0]) == pytest.approx(tilt_deg, abs=1e-6)
    assert float(look.range_km[0]) == pytest.approx(height_km, rel=1e-9)
    if abs(tilt_deg) < 89.0:
        assert azimuth_error_deg(float(look.azimuth_deg[0]), az_deg) < 1e-6


@pytest.mark.parametrize("mask_deg", [0.0, 10.0])
def test_overhead_pass_on_the_equator_matches_the_closed_form(mask_deg: float) -> None:
    """Equatorial prograde orbit over an equatorial station: every pass is overhead and the satellite
    moves over the Earth at n - omega_E; pass duration and spacing match the closed forms to 1 s."""
    track = CircularTrack(
        CircularOrbit(550.0, inclination_deg=0.0), 0.0, 0.0, days_j2000(datetime(2026, 1, 1, tzinfo=UTC))
    )
    station = GroundStation("equator", 0.0, 10.0, 0.0, mask_deg)
    n = 2 * math.pi / track.period_s
    rate = n - EARTH_ROTATION_RAD_S
    windows = station_passes(track, [station], 0.0, 86400.0, step_s=10.0, tolerance_s=0.25)
    expected = overhead_pass_s(track.semi_major_axis_km, R_EARTH_KM, mask_deg, rate)
    assert len(windows) == pytest.approx(86400.0 * rate / (2 * math.pi), abs=1)
    for w in windows[1:-1]:
        assert w.duration_s == pytest.approx(expected, abs=1.0)
        assert w.max_elevation_deg == pytest.approx(90.0, abs=0.1)
        assert w.t_max_elevation_s == pytest.approx(0.5 * (w.aos_s + w.los_s), abs=1.0)
    spacing = np.diff([w.aos_s for w in windows])
    assert spacing == pytest.approx(2 * math.pi / rate, abs=1.0)


def test_polar_orbit_over_the_pole_passes_every_orbit_at_the_two_body_duration() -> None:
    """A station on the pole sees a polar orbit overhead once an orbit, whatever the Earth's rotation;
    the site is at the polar radius b = R (1 - f)."""
    track = CircularTrack(
        CircularOrbit(700.0, inclination_deg=90.0), 30.0, 0.0, days_j2000(datetime(2026, 6, 1, tzinfo=UTC))
    )
    station = GroundStation("pole", 90.0, 0.0, 0.0, 5.0)
    windows = station_passes(track, [station], 0.0, 6 * track.period_s, tolerance_s=0.25)
    expected = overhead_pass_s(
        track.semi_major_axis_km, R_EARTH_KM * (1 - WGS84_FLATTENING), 5.0, 2 * math.pi / track.period_s
    )
    assert len(windows) == 6
    for w in windows:
        assert w.duration_s == pytest.approx(expected, abs=1.0)
        assert w.max_elevation_deg == pytest.approx(90.0, abs=0.1)


def nominal_track() -> CircularTrack:
    return CircularTrack.for_plant(CircularOrbit(550.0, 0.0, 53.0), datetime(2026, 3, 20, tzinfo=UTC))


def test_no_passes_beyond_the_orbits_reach() -> None:
    """53 deg, 550 km, 5 deg mask: the ground below the satellite reaches 53 deg of latitude and the
    station sees it out to lambda = acos(R cos 5 / a) - 5 = 18.5 deg of central angle: nothing is seen
    above about 71.5 deg. A station at 75 deg N has no pass in two days; one at 66 deg N has several."""
    track = nominal_track()
    a = track.semi_major_axis_km
    reach = 53.0 + math.degrees(math.acos(R_EARTH_KM * math.cos(math.radians(5.0)) / a)) - 5.0
    assert reach == pytest.approx(71.5, abs=0.1)
    far = GroundStation("far-north", 75.0, 15.0, 0.0, 5.0)
    near = GroundStation("near-north", 66.0, 15.0, 0.0, 5.0)
    windows = station_passes(track, [far, near], 0.0, 2 * 86400.0)
    assert [w for w in windows if w.station == "far-north"] == []
    assert len([w for w in windows if w.station == "near-north"]) >= 4


def test_plant_circular_orbit_keeps_beta_and_starts_at_orbit_noon() -> None:
    for beta in (0.0, 30.0, -45.0):
        orbit = CircularOrbit(550.0, beta, 53.0, phase_deg=0.0)
        when = datetime(2026, 3, 20, tzinfo=UTC)
        track = CircularTrack.for_plant(orbit, when)
        n_hat, m_hat = track.plane_axes()
        s = sun_position(J2000_JD + days_j2000(when)).unit[0]
        assert math.degrees(math.asin(float(np.cross(n_hat, m_hat) @ s))) == pytest.approx(beta, abs=1e-9)
        r0 = track.teme_km(np.array([0.0]))[0]
        # orbit noon: the closest approach to the Sun direction, r . s = a cos(beta)
        assert float(r0 @ s) / track.semi_major_axis_km == pytest.approx(math.cos(math.radians(beta)), abs=1e-9)
    with pytest.raises(ValueError, match="out of reach"):
        CircularTrack.for_plant(CircularOrbit(550.0, 72.0, 53.0), datetime(2026, 3, 20, tzinfo=UTC))
    assert CircularTrack.for_plant(CircularOrbit(550.0, 72.0, 53.0), datetime(2026, 6, 21, tzinfo=UTC))


def test_circular_track_radius_and_period() -> None:
    track = nominal_track()
    t = np.linspace(0.0, track.period_s, 50)
    assert np.linalg.norm(track.teme_km(t), axis=1) == pytest.approx(R_EARTH_KM + 550.0, abs=1e-9)
    assert track.teme_km(np.array([track.period_s]))[0] == pytest.approx(track.teme_km(np.array([0.0]))[0], abs=1e-6)
    assert track.period_s == pytest.approx(2 * math.pi * math.sqrt((R_EARTH_KM + 550.0) ** 3 / MU_EARTH_KM3_S2))


def test_tle_passes_cross_the_mask_at_their_edges() -> None:
    """SGP4 track: each AOS/LOS is a crossing of the mask to within the tolerance, the elevation is
    above the mask inside, and the reported maximum is the largest sampled elevation of the pass."""
    track = TleTrack(TleOrbit(TLE_1, TLE_2))
    stations = [GroundStation("weilheim", 47.88, 11.08, 600.0, 5.0), GroundStation("hbk", -25.89, 27.69, 1400.0, 10.0)]
    windows = station_passes(track, stations, 0.0, 86400.0, step_s=10.0, tolerance_s=0.5)
    assert {w.station for w in windows} == {"weilheim", "hbk"}
    assert all(windows[i].aos_s <= windows[i + 1].aos_s for i in range(len(windows) - 1))
    by_name = {s.name: s for s in stations}
    for w in windows:
        s = by_name[w.station]
        el = s.elevation_deg(ecef_km(track, np.array([w.aos_s - 0.5, w.aos_s + 0.5, w.los_s - 0.5, w.los_s + 0.5])))
        assert el[0] <= s.elevation_mask_deg + 1e-9 < el[1] or math.isclose(el[0], s.elevation_mask_deg, abs_tol=0.05)
        assert el[2] > s.elevation_mask_deg - 0.05 and el[3] <= s.elevation_mask_deg + 0.05
        inside = np.linspace(w.aos_s + 1.0, w.los_s - 1.0, 200)
        el_in = s.elevation_deg(ecef_km(track, inside))
        assert el_in.min() > s.elevation_mask_deg
        assert w.max_elevation_deg is not None and w.max_elevation_deg >= el_in.max() - 1e-3
        assert 0 < w.duration_s < 15 * 60


def test_window_open_at_the_start_starts_there() -> None:
    track = CircularTrack(CircularOrbit(550.0, inclination_deg=0.0), 0.0, 0.0, 0.0)
    station = GroundStation("below", 0.0, 0.0, 0.0, 0.0)
    first = station_passes(track, [station], 0.0, 20000.0)[0]
    mid = first.t_max_elevation_s
    assert mid is not None
    windows = station_passes(track, [station], mid, mid + 20000.0)
    assert windows[0].aos_s == mid and windows[0].los_s == pytest.approx(first.los_s, abs=0.5)


def test_contact_plan_merges_overlaps_and_answers_the_emulator() -> None:
    windows = (
        ContactWindow("a", 100.0, 200.0, 30.0, 150.0),
        ContactWindow("b", 180.0, 260.0, 20.0, 220.0),
        ContactWindow("c", 500.0, 600.0, 50.0, 550.0),
        ContactWindow("d", 950.0, 1100.0, 10.0, 1000.0),
    )
    plan = ContactPlan(0.0, 1000.0, windows, 0.01)
    assert plan.contacts == ((100.0, 260.0), (500.0, 600.0), (950.0, 1000.0))
    assert plan.contact_s() == pytest.approx(160.0 + 100.0 + 50.0)
    assert not plan.in_contact(99.9) and plan.in_contact(100.0) and plan.in_contact(259.9)
    assert not plan.in_contact(260.0) and plan.contact_index(550.0) == 1
    assert plan.next_change(0.0) == 100.0
    assert plan.next_change(150.0) == 260.0
    assert plan.next_change(300.0) == 500.0
    assert plan.next_change(999.0) == 1000.0
    assert plan.next_change(1000.0) is None and not plan.in_contact(1000.0)
    assert merge_windows(windows, 190.0, 520.0) == ((190.0, 260.0), (500.0, 520.0))
    with pytest.raises(ValueError):
        ContactPlan(10.0, 10.0, (), 0.0)


def test_relay_plan_is_continuous_with_fixed_latency() -> None:
    plan = relay_plan(0.05)
    assert plan.mode == "relay" and plan.one_way_delay_s == 0.05
    assert plan.in_contact(0.0) and plan.in_contact(1e9)
    assert plan.next_change(123.0) is None
    bounded = relay_plan(0.05, 0.0, 3600.0)
    assert bounded.contacts == ((0.0, 3600.0),) and bounded.next_change(10.0) == 3600.0


def test_track_for_needs_an_epoch_for_circular_orbits_only() -> None:
    with pytest.raises(ValueError, match="epoch_utc"):
        track_for(CircularOrbit(550.0), None)
    with pytest.raises(ValueError, match="own epoch"):
        track_for(TleOrbit(TLE_1, TLE_2), datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="time zone"):
        track_for(CircularOrbit(550.0), datetime(2026, 1, 1))
    assert isinstance(track_for(TleOrbit(TLE_1, TLE_2), None), TleTrack)


def test_bad_stations_are_refused() -> None:
    with pytest.raises(ValueError, match="latitude"):
        GroundStation("x", 91.0, 0.0)
    with pytest.raises(ValueError, match="mask"):
        GroundStation("x", 0.0, 0.0, 0.0, 90.0)
    with pytest.raises(ValueError, match="duplicate"):
        station_passes(nominal_track(), [GroundStation("x", 0, 0), GroundStation("x", 1, 1)], 0.0, 100.0)
