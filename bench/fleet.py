"""Fleet benchmark: 143 satellites x 72 h under five dispatch policies, and the offline optimum of a
small fleet.

    python -m bench.fleet --json [--workload time-critical] [--sats 143 --planes 11 --phasing 1]
                                 [--hours 72] [--dt 30] [--tle FILE] [--small-sats 12 --small-planes 3]
                                 [--small-hours 24] [--lp-dt 300] [--seed 1] [--regions land|uniform]
                                 [--contingency-orbits 1.0] [--no-small]

The large fleet (Walker 143/11/1 at 550 km, 53 deg, or a TLE file) runs the same seeded job stream
(hil/fleet/workload.py: FLEET_WORKLOADS) under round-robin, least-queue, priority (the anchor's
baseline), marginal-cost (in the manner of Equinox) and orbitd (hil/fleet/policies.py). The small
fleet (Walker 12/3/1, 24 h) runs every policy on each workload of FLEET_WORKLOADS and solves the
fleet LP upper bound (hil/fleet/optimum.py). Prints one JSON object: ``cpu``; ``policies`` {name:
{goodput, deadline_misses, mean_battery_reserve, violation_s, ...}}; ``orbitd_over_priority``,
``orbitd_over_marginal_cost``, ``reserve_ratio`` (orbitd's mean battery reserve over priority's),
``wall_s`` and ``cpu_s`` (the large fleet: scenario set-up and all five runs; wall and this process's
CPU time, which differ when other work shares the machine); ``small_fleet`` per workload with
the optimum and each policy over it; ``orbitd_over_optimum`` (small fleet, the headline workload).
Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import cpu_info, progress
from hil.fleet.constellation import Constellation, WalkerConstellation, WalkerSpec, load_tle_file
from hil.fleet.optimum import fleet_upper_bound
from hil.fleet.policies import POLICIES, OrbitdDispatchParams, OrbitdPolicy, make_policy
from hil.fleet.sim import FleetPolicy, FleetResult, FleetScenario, FleetSim, build_fleet_scenario
from hil.fleet.workload import FLEET_WORKLOADS, LAND_DEMAND, UNIFORM_DEMAND

REGIONS = {"land": LAND_DEMAND, "uniform": UNIFORM_DEMAND}


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None


def policy(name: str, args: argparse.Namespace) -> FleetPolicy:
    if name == "orbitd":
        return OrbitdPolicy(OrbitdDispatchParams(contingency_orbits=args.contingency_orbits))
    return make_policy(name)


def run_policies(sc: FleetScenario, label: str, args: argparse.Namespace) -> dict[str, FleetResult]:
    out: dict[str, FleetResult] = {}
    for name in POLICIES:
        r = FleetSim(sc, policy(name, args)).run()
        out[name] = r
        progress(f"  {label} {name:14s} goodput {r.goodput:16.0f} misses {r.deadline_misses:6d} "
                 f"reserve {r.mean_battery_reserve:.4f} violation_s {r.violation_s:9.0f} ({r.wall_s:.1f} s)")
    return out


def headline(results: dict[str, FleetResult]) -> dict[str, Any]:
    o, p, m = results["orbitd"], results["priority"], results["marginal-cost"]
    return {
        "orbitd_over_priority": ratio(o.goodput, p.goodput),
        "orbitd_over_marginal_cost": ratio(o.goodput, m.goodput),
        "reserve_ratio": ratio(o.mean_battery_reserve, p.mean_battery_reserve),
    }


def small_fleet(args: argparse.Namespace) -> dict[str, Any]:
    const = WalkerConstellation(WalkerSpec(args.small_sats, args.small_planes, args.phasing % args.small_planes))
    out: dict[str, Any] = {"sats": args.small_sats, "planes": args.small_planes, "hours": args.small_hours,
                           "lp_dt_s": args.lp_dt, "workloads": {}}
    for mix, spec in FLEET_WORKLOADS.items():
        sc = build_fleet_scenario(const, hours=args.small_hours, dt_s=args.dt, spec=spec,
                                  regions=REGIONS[args.regions], seed=args.seed)
        bound = fleet_upper_bound(sc, args.lp_dt)
        progress(f"small fleet {mix}: {len(sc.jobs)} jobs, optimum {bound.goodput:.0f} "
                 f"(LP {bound.variables} variables, {bound.solve_s:.1f} s)")
        results = run_policies(sc, f"small {mix}", args)
        entry: dict[str, Any] = {
            "jobs": len(sc.jobs),
            "optimum": {"goodput": round(bound.goodput, 1), "work_core_s": round(bound.work_core_s, 1),
                        "lp_variables": bound.variables, "lp_solve_s": round(bound.solve_s, 2)},
            "policies": {n: {**r.summary(), "over_optimum": ratio(r.goodput, bound.goodput)}
                         for n, r in results.items()},
            "optimum_over_priority": ratio(bound.goodput, results["priority"].goodput),
            "orbitd_over_optimum": ratio(results["orbitd"].goodput, bound.goodput),
            **headline(results),
        }
        out["workloads"][mix] = entry
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print the result as one JSON object")
    ap.add_argument("--workload", default="time-critical", choices=sorted(FLEET_WORKLOADS))
    ap.add_argument("--sats", type=int, default=143)
    ap.add_argument("--planes", type=int, default=11)
    ap.add_argument("--phasing", type=int, default=1)
    ap.add_argument("--altitude-km", type=float, default=550.0)
    ap.add_argument("--inclination-deg", type=float, default=53.0)
    ap.add_argument("--tle", type=Path, default=None, help="a TLE file instead of the Walker constellation")
    ap.add_argument("--hours", type=float, default=72.0)
    ap.add_argument("--dt", type=float, default=30.0, help="simulation and control step, s")
    ap.add_argument("--small-sats", type=int, default=12)
    ap.add_argument("--small-planes", type=int, default=3)
    ap.add_argument("--small-hours", type=float, default=24.0)
    ap.add_argument("--lp-dt", type=float, default=300.0, help="the optimum's grid, s")
    ap.add_argument("--no-small", action="store_true", help="skip the small fleet and its optimum")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--regions", default="land", choices=sorted(REGIONS), help="where the work comes from")
    ap.add_argument("--contingency-orbits", type=float, default=OrbitdDispatchParams().contingency_orbits,
                    help="orbitd's contingency reserve (orbits at idle without sun; urgent work may spend it)")
    args = ap.parse_args(argv)

    t0, c0 = time.perf_counter(), time.process_time()
    const: Constellation
    if args.tle is not None:
        const = load_tle_file(args.tle)
    else:
        const = WalkerConstellation(WalkerSpec(args.sats, args.planes, args.phasing, args.altitude_km,
                                               args.inclination_deg))
    sc = build_fleet_scenario(const, hours=args.hours, dt_s=args.dt, spec=FLEET_WORKLOADS[args.workload],
                              regions=REGIONS[args.regions], seed=args.seed)
    progress(f"fleet: {const.n} satellites, {args.hours:g} h, {len(sc.jobs)} jobs "
             f"(set-up {time.perf_counter() - t0:.1f} s)")
    results = run_policies(sc, "large", args)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    source = (str(args.tle) if args.tle else f"Walker {args.sats}/{args.planes}/{args.phasing} "
              f"{args.altitude_km:g} km {args.inclination_deg:g} deg")
    result: dict[str, Any] = {
        "cpu": cpu_info(),
        "workload": args.workload,
        "regions": args.regions,
        "orbitd_contingency_orbits": args.contingency_orbits,
        "fleet": {"sats": const.n, "planes": const.planes, "hours": args.hours, "dt_s": args.dt,
                  "jobs": len(sc.jobs), "source": source},
        "policies": {n: r.summary() for n, r in results.items()},
        **headline(results),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
    }
    if not args.no_small:
        small = small_fleet(args)
        result["small_fleet"] = small
        result["orbitd_over_optimum"] = small["workloads"][args.workload]["orbitd_over_optimum"]
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
