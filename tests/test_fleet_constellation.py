"""Fleet geometry: the Walker generator against its closed forms, the ISL grid, beta, eclipses, TLEs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from hil.fleet.constellation import (
    IslLink,
    WalkerConstellation,
    WalkerSpec,
    load_tle_file,
    unit_vector_from_latlon,
)
from hil.fleet.illumination import illuminate
from hil.link.geometry import gmst_rad
from hil.plant.constants import J2, J2000_JD, MU_EARTH_KM3_S2, R_EARTH_KM
from hil.plant.shadow import eclipse_fraction_cylindrical
from hil.plant.sun import sun_position


def _wrap(deg: np.ndarray) -> np.ndarray:
    return (deg + 180.0) % 360.0 - 180.0


def _elements(c: WalkerConstellation, t: float) -> tuple[np.ndarray, np.ndarray]:
    """(RAAN, argument of latitude) in deg recovered from the positions and velocities at ``t``."""
    r = c.positions_km(np.array([t]))[0]
    v = c.velocities_km_s(np.array([t]))[0]
    h = np.cross(r, v)
    node = np.cross([0.0, 0.0, 1.0], h)
    raan = np.degrees(np.arctan2(node[:, 1], node[:, 0]))
    nhat = node / np.linalg.norm(node, axis=1, keepdims=True)
    cos_u = np.einsum("ij,ij->i", nhat, r) / np.linalg.norm(r, axis=1)
    u = np.degrees(np.arccos(np.clip(cos_u, -1.0, 1.0)))
    u = np.where(r[:, 2] < 0.0, 360.0 - u, u)
    return raan, u


@pytest.mark.parametrize(("total", "planes", "phasing"), [(143, 11, 1), (24, 3, 2), (12, 4, 0)])
def test_walker_delta_matches_its_closed_forms(total: int, planes: int, phasing: int) -> None:
    c = WalkerConstellation(WalkerSpec(total, planes, phasing, altitude_km=550.0, inclination_deg=53.0))
    per = total // planes
    raan, u = _elements(c, 0.0)
    # RAAN spacing 360/P between planes, the same node within a plane
    assert np.allclose(_wrap(raan - 360.0 * c.plane / planes), 0.0, atol=1e-9)
    # in-plane spacing 360/S; plane p's first satellite ahead of plane p-1's by F * 360 / T
    expected_u = 360.0 * c.slot / per + phasing * 360.0 * c.plane / total
    assert np.allclose(_wrap(u - expected_u), 0.0, atol=1e-7)
    # inclination and radius
    h = np.cross(c.positions_km(np.array([0.0]))[0], c.velocities_km_s(np.array([0.0]))[0])
    assert np.allclose(np.degrees(np.arccos(h[:, 2] / np.linalg.norm(h, axis=1))), 53.0)
    assert np.allclose(np.linalg.norm(c.positions_km(np.array([1234.0]))[0], axis=1), R_EARTH_KM + 550.0)


def test_period_and_j2_node_drift_follow_physics_md() -> None:
    c = WalkerConstellation(WalkerSpec(6, 3, 1, altitude_km=550.0, inclination_deg=53.0))
    assert c.period_s[0] == pytest.approx(5739.0, abs=1.0)  # physics.md: T = 5739 s at 550 km
    # back at the same argument of latitude after one period
    _, u0 = _elements(c, 0.0)
    _, u1 = _elements(c, float(c.period_s[0]))
    assert np.allclose(_wrap(u1 - u0), 0.0, atol=1e-6)
    a = R_EARTH_KM + 550.0
    n = math.sqrt(MU_EARTH_KM3_S2 / a**3)
    drift = -1.5 * n * J2 * (R_EARTH_KM / a) ** 2 * math.cos(math.radians(53.0))
    raan0, _ = _elements(c, 0.0)
    raan1, _ = _elements(c, 86400.0)
    assert np.allclose(_wrap(raan1 - raan0), math.degrees(drift * 86400.0), atol=1e-6)
    assert math.degrees(drift * 86400.0) == pytest.approx(-4.5, abs=0.3)  # about -4.5 deg/day at 53 deg


def test_walker_rejects_impossible_patterns() -> None:
    with pytest.raises(ValueError, match="multiple of planes"):
        WalkerSpec(10, 3, 0)
    with pytest.raises(ValueError, match="phasing"):
        WalkerSpec(12, 3, 3)


def test_isl_grid_hops_and_neighbours() -> None:
    c = WalkerConstellation(WalkerSpec(143, 11, 1))
    hops = c.hops
    assert np.array_equal(hops, hops.T) and np.all(np.diag(hops) == 0)
    assert hops.max() == 11 // 2 + 13 // 2  # the far side of the torus
    for i in range(c.n):
        assert sorted(hops[i, c.neighbours[i]].tolist()) == [1, 1, 1, 1]
    # same plane, the next slot; the seam plane 10 links to plane 0
    i = 5 * 13 + 12
    assert c.plane[c.neighbours[i, 0]] == 5 and c.slot[c.neighbours[i, 0]] == 0
    j = 10 * 13 + 3
    assert c.plane[c.neighbours[j, 2]] == 0 and c.slot[c.neighbours[j, 2]] == 3
    assert IslLink(latency_s=0.02, rate_bps=1e9).transfer_s(3, 125e6) == pytest.approx(3 * (0.02 + 1.0))


def test_nearest_satellite_is_the_one_overhead() -> None:
    c = WalkerConstellation(WalkerSpec(24, 4, 1))
    t = np.array([0.0, 1000.0, 50000.0])
    r = c.positions_km(t)
    want = np.array([3, 17, 8])
    sub = r[np.arange(3), want]
    gmst = gmst_rad(c.jd(t) - J2000_JD)
    lat = np.degrees(np.arcsin(sub[:, 2] / np.linalg.norm(sub, axis=1)))
    lon = np.degrees(np.arctan2(sub[:, 1], sub[:, 0]) - gmst)
    got, angle = c.nearest(t, lat, lon)
    assert np.array_equal(got, want)
    assert np.allclose(angle, 0.0, atol=1e-4)
    g = unit_vector_from_latlon(lat, lon, gmst)
    assert np.allclose(g, sub / np.linalg.norm(sub, axis=1, keepdims=True))


def test_beta_and_eclipse_fraction_per_plane_match_the_closed_forms() -> None:
    c = WalkerConstellation(WalkerSpec(11, 11, 0))
    sun = sun_position(c.jd(np.array([0.0]))).unit
    beta = c.beta_deg(np.array([0.0]), sun)[0]
    # sin(beta) = cos(dec) sin(i) sin(RAAN - RA) + sin(dec) cos(i) (physics.md)
    s = sun_position(c.jd(np.array([0.0])))
    dec, ra = math.radians(float(s.dec_deg[0])), math.radians(float(s.ra_deg[0]))
    i = math.radians(53.0)
    raan = np.radians(c.raan0_deg)
    closed = np.degrees(np.arcsin(math.cos(dec) * math.sin(i) * np.sin(raan - ra) + math.sin(dec) * math.cos(i)))
    assert np.allclose(beta, closed, atol=1e-6)
    period = float(c.period_s[0])
    steps = round(3 * period / 10.0)
    ill = illuminate(c, 0.0, steps, 10.0, 1361.0, substeps=4)
    measured = 1.0 - ill.fraction.mean(axis=0)
    closed_f = np.array([eclipse_fraction_cylindrical(550.0, b) for b in beta])
    assert np.allclose(measured, closed_f, atol=0.006)  # conical vs cylindrical, and 3 orbits of beta drift


def test_tle_file_builds_planes_and_slots(tmp_path: Path) -> None:
    def checksum(line: str) -> str:
        total = sum(int(ch) if ch.isdigit() else (1 if ch == "-" else 0) for ch in line[:68])
        return line[:68] + str(total % 10)

    lines = []
    for p, raan in enumerate((10.0, 130.0)):
        for k in range(3):
            num = 90000 + 10 * p + k
            lines.append(f"SAT-{p}-{k}")
            lines.append(checksum(f"1 {num:05d}U 24001A   24172.50000000  .00000000  00000-0  00000-0 0  999"))
            lines.append(checksum(f"2 {num:05d}  53.0000 {raan:8.4f} 0001000  90.0000 {(120.0 * k) % 360:8.4f} "
                                  "15.05520000    1"))
    path = tmp_path / "fleet.tle"
    path.write_text("\n".join(lines) + "\n")
    c = load_tle_file(path)
    assert c.n == 6 and c.planes == 2 and c.per_plane == 3
    assert c.names[0] == "SAT-0-0"
    assert sorted(zip(c.plane.tolist(), c.slot.tolist(), strict=True)) == [(p, k) for p in range(2) for k in range(3)]
    r = c.positions_km(np.array([0.0, 60.0]))
    assert r.shape == (2, 6, 3)
    assert np.all(np.abs(np.linalg.norm(r, axis=2) - (R_EARTH_KM + c.altitude_km)) < 30.0)
    path.write_text("1 only one line\n")
    with pytest.raises(ValueError, match="TLE line pair"):
        load_tle_file(path)
