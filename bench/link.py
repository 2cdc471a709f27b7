"""Jobs across six hours of passes: store and forward, exactly once, latencies set by the pass plan.

``python -m bench.link --json [--hours 6] [--jobs 300] [--gap-warp 200] [--contact-warp 10]
[--board auto|netns|loopback] [--seed 1]`` runs ``hil sil --link passes`` on ``nominal-550km`` (three
ground stations: Fairbanks, Hartebeesthoek, Santiago; five contacts of 6.5-8.7 min in the first 6 h,
the first after 56 min, gaps of 23 min to 1.5 h between them) with the board side in its own network
namespace, and submits ``--jobs`` jobs at times drawn uniformly at random over [0, the last
acquisition of the run) (so each has a contact to go up in). One JSON object on stdout: the figures
of issue 12 (``jobs_submitted``, ``jobs_done``, ``lost``, ``duplicated``, ``p50_latency_s``,
``p99_latency_s``, ``bridge_bytes_up``, ``bridge_bytes_down``), the check against the pass plan, the
passes, the wall time and the CPU.

The jobs: ``digits-int8`` with 16 images each (about 4.3 kB of request). A job's inputs have to fit the
uplink: 256 kbit/s for the 39 min of contact in these 6 h is ~75 MB, and the first pass after a long gap
carries every job submitted in it; tile jobs of 0.2-0.8 MB would not go up in one pass.

Wall time: the plant runs at ``--contact-warp`` (10) in contact, where flightd infers in real time
and Mosquitto's timers run in wall time (a bridge cut by a loss burst reconnects within ~2 s of wall
time, 20 s of a pass), and at ``--gap-warp`` (200) in the gaps, where nothing crosses the link whatever
the warp (docs/hil.md, "Warp across the link"): about 6 min of wall time instead of 36 min at warp 10
throughout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import cpu_info
from hil.scenario import load_scenario
from hil.sil import LinkOptions, run_sil

SCENARIO = "nominal-550km"


def schedule(plan_contacts: list[tuple[float, float]], jobs: int, seed: int) -> tuple[float, ...]:
    """``jobs`` submission times, uniform over [0, the last acquisition), sorted."""
    last_aos = plan_contacts[-1][0]
    return tuple(sorted(float(t) for t in np.random.default_rng(seed).uniform(0.0, last_aos, jobs)))


async def run(hours: float, jobs: int, gap_warp: float, contact_warp: float, board: str, seed: int,
              report_dir: Path) -> dict[str, Any]:
    scenario = load_scenario(SCENARIO)
    if scenario.link is None:
        raise RuntimeError(f"{SCENARIO} declares no [link]")
    sim_s = hours * 3600.0
    plan = scenario.link.plan("passes", scenario.config.orbit, 0.0, sim_s + 1.0)
    times = schedule(list(plan.contacts), jobs, seed)
    period = scenario.build_plant().linear_parameters().period_s
    wall0 = time.monotonic()
    report = await run_sil(SCENARIO, orbits=sim_s / period, warp=gap_warp, report_dir=report_dir,
                           model="digits-int8", tiles=16, progress=False,
                           link=LinkOptions("passes", contact_warp=contact_warp, board=board, plan=plan,
                                            schedule=times))
    link = report.link or {}
    check = link.get("plan_check", {})
    gaps = [b2[0] - a1[1] for a1, b2 in zip(plan.contacts, plan.contacts[1:], strict=False)]
    return {
        "bench": "link",
        "cpu": cpu_info(),
        "scenario": SCENARIO,
        "hours": hours,
        "board": link.get("board"),
        "gap_warp": gap_warp,
        "contact_warp": contact_warp,
        "jobs_submitted": link.get("jobs_submitted"),
        "jobs_done": link.get("jobs_done"),
        "lost": link.get("unanswered"),  # every job had a whole contact after it: unanswered is lost
        "duplicated": link.get("duplicated"),
        "p50_latency_s": link.get("latency_s", {}).get("p50"),
        "p99_latency_s": link.get("latency_s", {}).get("p99"),
        "max_latency_s": link.get("latency_s", {}).get("max"),
        "bridge_bytes_up": link.get("bridge_bytes_up"),
        "bridge_bytes_down": link.get("bridge_bytes_down"),
        "consistent_with_plan": (check.get("in_contact_same_pass") == check.get("in_contact")
                                 and check.get("out_of_contact_next_pass") == check.get("out_of_contact")),
        "plan_check": check,
        "longest_gap_s": max(gaps, default=None),
        "repeated_deliveries": link.get("repeated_deliveries"),
        "resends": link.get("resends"),
        "failed": link.get("failed"),
        "bridge_waiting_up": link.get("bridge_waiting_up"),
        "bridge_waiting_down": link.get("bridge_waiting_down"),
        "passes": link.get("passes"),
        "mode_changes": len(report.mode_changes),
        "safe_after_startup_s": report.safe_after_startup_s,
        "pace_slips": report.pace_slips,
        "sim_wall_s": report.wall_s,
        "wall_s": time.monotonic() - wall0,
        "report": str(report_dir),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.link", description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print one JSON object (the default output anyway)")
    p.add_argument("--hours", type=float, default=6.0)
    p.add_argument("--jobs", type=int, default=300)
    p.add_argument("--gap-warp", type=float, default=200.0)
    p.add_argument("--contact-warp", type=float, default=10.0)
    p.add_argument("--board", choices=["auto", "netns", "loopback"], default="auto")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--report", type=Path, help="keep the run's directory here (default: a temporary one)")
    args = p.parse_args(argv)
    print(f"bench.link: {args.hours:g} h of passes, {args.jobs} jobs ...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="orbitd-bench-link-") as tmp:
        out = asyncio.run(run(args.hours, args.jobs, args.gap_warp, args.contact_warp, args.board, args.seed,
                              args.report or Path(tmp) / "run"))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
