"""Does the software-in-the-loop run tell the truth? Consecutive ``hil sil`` runs, then one with a dropout.

``python -m bench.sil_soak --json [--runs 10] [--orbits 2] [--warp 200] [--hog N]`` runs
``hil sil --scenario nominal-550km --orbits 2 --json`` ``--runs`` times in a row (nothing injected:
any SAFE after start-up is an artefact of the rig, issue 10 item 8), then the same spacecraft with a
dropout of every telemetry channel on [2000, 2600) s simulated, which must send flightd SAFE once the
last sample before it is two telemetry periods old and bring it back at the first sample after.
``--hog N`` keeps N processes spinning on the CPU meanwhile (a busy host). One JSON object on stdout:
the CPU it ran on, the load, each run's ``mode_s``, ``mode_changes``, ``safe_after_startup_s``,
``pace_slips``, ``wall_s``, ``jobs_done``, and the dropout run's changes against what is due.
Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import REPO, progress
from hil.scenario import SCENARIO_DIR

SCENARIO = "nominal-550km"
DROPOUT_S = (2000.0, 2600.0)
KEEP = ("mode_s", "mode_changes", "safe_after_startup_s", "pace_slips", "wall_s", "sim_s", "jobs_done",
        "violation_s", "min_soc")


def cpu() -> dict[str, Any]:
    """Model name, logical CPUs and the SIMD flags that matter for inference, from /proc/cpuinfo."""
    info: dict[str, Any] = {"count": os.cpu_count()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and "model" not in info:
            info["model"] = value.strip()
        if key.strip() == "flags" and "flags" not in info:
            info["flags"] = sorted(f for f in value.split() if f.startswith(("avx", "sse4", "fma", "neon", "asimd")))
    return info


def hil_sil(scenario: str, orbits: float, warp: float, report: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "hil.cli", "sil", "--scenario", scenario, "--orbits", str(orbits), "--warp", str(warp),
         "--json", "--report", str(report)],
        capture_output=True, cwd=REPO, timeout=1800,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"hil sil failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-2000:]}")
    report_json: dict[str, Any] = json.loads(proc.stdout)
    return {k: report_json[k] for k in KEEP}


def dropout_verdict(run: dict[str, Any], period_s: float, last_before: float, first_after: float) -> dict[str, Any]:
    """Where the dropout's SAFE and recovery fell against what is due (stale after 2 periods)."""
    changes = [(float(c["t_s"]), str(c["mode"])) for c in run["mode_changes"]]
    stale_at = last_before + 2 * period_s
    safe = [t for t, m in changes if m == "safe" and t >= last_before]
    back = [t for t, m in changes if m != "safe" and t >= first_after - period_s]
    return {
        "modes": [m for _, m in changes],
        "stale_due_s": stale_at,
        "safe_at_s": safe[0] if safe else None,
        "safe_within_two_periods": bool(safe) and stale_at <= safe[0] < stale_at + 2 * period_s,
        "first_sample_after_s": first_after,
        "back_at_s": back[0] if back else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--orbits", type=float, default=2.0)
    ap.add_argument("--warp", type=float, default=200.0)
    ap.add_argument("--hog", type=int, default=0, help="CPU-spinning processes to run meanwhile")
    args = ap.parse_args(argv)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hog)]
    result: dict[str, Any] = {"cpu": cpu(), "hog_processes": args.hog, "loadavg_start": os.getloadavg(),
                              "scenario": SCENARIO, "orbits": args.orbits, "warp": args.warp, "runs": []}
    try:
        with tempfile.TemporaryDirectory(prefix="orbitd-sil-soak-") as tmp:
            for i in range(args.runs):
                t0 = time.monotonic()
                run = hil_sil(SCENARIO, args.orbits, args.warp, Path(tmp) / f"run{i}")
                result["runs"].append(run)
                progress(f"run {i + 1}/{args.runs}: SAFE after start-up {run['safe_after_startup_s']:.0f} s, "
                         f"{len(run['mode_changes'])} mode changes, {run['pace_slips']} slips, "
                         f"{time.monotonic() - t0:.0f} s")
            path = Path(tmp) / "dropout.toml"
            path.write_text((SCENARIO_DIR / f"{SCENARIO}.toml").read_text().replace(
                f'name = "{SCENARIO}"', f'name = "{SCENARIO}-dropout"')
                + f'\n[[faults]]\nkind = "dropout"\nt_s = {DROPOUT_S[0]}\nuntil_s = {DROPOUT_S[1]}\n')
            period = max(1.0, 0.2 * args.warp)  # hil.sil's telemetry period rule
            last_before = (DROPOUT_S[0] // period) * period - (period if DROPOUT_S[0] % period == 0 else 0.0)
            first_after = -(-DROPOUT_S[1] // period) * period
            dropout = hil_sil(str(path), 0.6, args.warp, Path(tmp) / "dropout")
            result["dropout"] = {"window_s": DROPOUT_S, "telemetry_period_s": period, **dropout,
                                 "verdict": dropout_verdict(dropout, period, last_before, first_after)}
            progress(f"dropout: {result['dropout']['verdict']}")
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    result["loadavg_end"] = os.getloadavg()
    result["safe_after_startup_s_total"] = sum(r["safe_after_startup_s"] for r in result["runs"])
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
