"""Governor benchmark: 24 h of each scenario at simulation speed, orbitd vs baselines vs the optimum.

    python -m bench.governor --json [--plots DIR] [--scenarios a,b] [--dt 10] [--hours 24]

For each scenario (hil/scenarios: nominal-550km, high-beta, degraded-radiator) the same seeded
workload (tile-model jobs, see hil/governor_sim.py) runs under four policies: ``orbitd`` (the
governor + admission-controlled scheduler), ``threshold`` (OEC-style SoC/temperature thresholds with
hysteresis), ``full`` (flat out, hard cut-off at the limits) and ``optimal`` (the offline LP plan of
hil/optimum.py replayed open loop through the real plant). Prints one JSON object:
{"scenarios": {NAME: {"orbitd": {"value": .., "violation_s": .., ...}, "optimal": {...},
"threshold": {...}, "full": {...}}}}; progress on stderr; one PNG per scenario in --plots.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from flight.governor.limits import Limits
from hil.governor_sim import (
    FullThrottlePolicy,
    OrbitdPolicy,
    PlanPolicy,
    Policy,
    RunResult,
    ThresholdPolicy,
    WorkloadSpec,
    governor_config_for,
    make_workload,
    optimal_plan,
    run_policy,
)
from hil.scenario import load_scenario

SCENARIOS = ("nominal-550km", "high-beta", "degraded-radiator")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_scenario(name: str, dt_s: float, hours: float, lp_dt_s: float, seed: int) -> tuple[dict[str, Any],
                                                                                             list[RunResult]]:
    sc = load_scenario(name)
    duration = min(sc.duration_s, hours * 3600.0)
    lim = sc.limits
    cores = float(sc.config.board.cores)
    jobs = make_workload(duration, WorkloadSpec(mean_cores=0.8 * cores), seed=seed)
    t0 = time.perf_counter()
    plan = optimal_plan(sc.build_plant(), duration, lp_dt_s, lim, jobs)
    _log(f"{name}: LP {plan.core_s:.0f} core-s in {time.perf_counter() - t0:.2f} s ({plan.status})")
    policies: list[Policy] = [
        OrbitdPolicy(governor_config_for(sc.build_plant(), lim, dt_s)),
        PlanPolicy(plan),
        ThresholdPolicy(lim, cores),
        FullThrottlePolicy(lim, cores),
    ]
    out: dict[str, Any] = {}
    results: list[RunResult] = []
    for pol in policies:
        t0 = time.perf_counter()
        r = run_policy(sc.build_plant(), pol, jobs, duration, dt_s, lim)
        s = r.summary()
        s["wall_s"] = round(time.perf_counter() - t0, 2)
        if pol.name == "optimal":
            s["lp_core_s"] = round(plan.core_s, 1)
            s["lp_solve_s"] = round(plan.solve_s, 2)
        out[pol.name] = s
        results.append(r)
        _log(f"  {pol.name:9s} value {r.value:14.0f} violation_s {r.violation_s:7.0f} "
             f"misses {r.deadline_misses:5d} min_soc {r.min_soc:.3f} board {r.max_board_c:.1f} "
             f"radiator {r.max_radiator_c:.1f} ({s['wall_s']} s)")
    opt, thr = out["optimal"]["value"], out["threshold"]["value"]
    out["orbitd"]["ratio_to_optimal"] = round(out["orbitd"]["value"] / opt, 4) if opt else None
    out["orbitd"]["ratio_to_threshold"] = round(out["orbitd"]["value"] / thr, 4) if thr else None
    out["orbitd"]["jobs_offered"] = len(jobs)
    return out, results


def plot_scenario(name: str, results: list[RunResult], lim: Limits, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, 1, figsize=(11, 10), sharex=True)
    for r in results:
        h = [t / 3600.0 for t in r.trace_t]
        axes[0].plot(h, r.trace_soc, label=r.policy, lw=0.9)
        axes[1].plot(h, r.trace_board, label=r.policy, lw=0.9)
        axes[2].plot(h, r.trace_radiator, label=r.policy, lw=0.9)
        axes[3].plot(h, r.trace_busy, label=r.policy, lw=0.6)
    axes[0].axhline(lim.soc_floor, color="k", ls="--", lw=0.8)
    axes[1].axhline(lim.board_max_c, color="k", ls="--", lw=0.8)
    axes[2].axhline(lim.radiator_max_c, color="k", ls="--", lw=0.8)
    axes[0].set_ylabel("SoC")
    axes[1].set_ylabel("board °C")
    axes[2].set_ylabel("radiator °C")
    axes[3].set_ylabel("busy cores")
    axes[3].set_xlabel("mission time (h)")
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes[0].set_title(f"{name}: orbitd vs optimum vs baselines")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print the result as one JSON object")
    ap.add_argument("--plots", type=Path, default=None, help="directory for the PNGs (default: a temp dir)")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--dt", type=float, default=10.0, help="simulation/control step, s")
    ap.add_argument("--lp-dt", type=float, default=60.0, help="optimum's grid, s")
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    plots = args.plots if args.plots is not None else Path(tempfile.mkdtemp(prefix="orbitd-governor-"))
    plots.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"scenarios": {}}
    for name in [s for s in args.scenarios.split(",") if s]:
        out, runs = run_scenario(name, args.dt, args.hours, args.lp_dt, args.seed)
        result["scenarios"][name] = out
        sc = load_scenario(name)
        png = plots / f"governor-{name}.png"
        plot_scenario(name, runs, sc.limits, png)
        _log(f"  plot: {png}")
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
