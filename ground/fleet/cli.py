"""``ground fleet``: jobs routed over a fleet of satellites, and the fleet at a glance.

    ground [--broker URL[,URL...]] fleet submit MODEL INPUT [--sats a,b,c] [--priority P] [--deadline S]
                                               [--job-id ID] [--input-name NAME] [-o OUT] [--json]
    ground [--broker URL[,URL...]] fleet status [--sats a,b,c] [--json] [--wait S]

``submit`` routes the job by the satellites' retained status (:mod:`ground.fleet.view`, the arithmetic
of the fleet simulator's orbitd policy), follows it to its result (re-routing it once if its satellite
goes SAFE before running it) and prints where it went and why. ``status`` prints one row per satellite
from the retained statuses (rich table, or JSON). Without ``--sats`` the satellites are those with a
retained status on the broker.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

from ground.client import GroundError
from ground.fleet.dispatcher import FleetDispatcher, read_statuses
from ground.fleet.view import status_age_s
from ground.options import command_key, load_inputs, print_json, save_outputs
from link.messages import Status
from link.topics import check_id

STATUS_COLUMNS = ("sat", "state", "mode", "soc", "phase", "phase_left_s", "phase_left_wall_s", "busy_cores",
                  "orbit_busy_cores", "budget_w", "queued", "running", "committed_core_s", "headroom_c", "age_s")
"""Columns of ``ground fleet status`` (JSON keys; the table's headers say the units). ``phase_left_s``:
mission seconds to the end of the sunlit or eclipse phase, as the outlook says (an orbit's scale,
thousands of s); ``phase_left_wall_s``: the same in the ground's seconds (``/ mission_rate``: under a
plant simulator's warp a few s), what the dispatcher routes by."""


def status_row(status: Status, now_utc: float) -> dict[str, Any]:
    """One satellite's row of the fleet table (None where its status does not say)."""
    o = status.outlook
    rate = o.mission_rate if o is not None else 1.0
    phase = None if o is None or o.in_eclipse is None else ("eclipse" if o.in_eclipse else "sunlit")
    return {
        "sat": status.sat,
        "state": status.state,
        "mode": status.mode.value if status.mode is not None else None,
        "soc": None if o is None else o.soc,
        "phase": phase,
        "phase_left_s": None if o is None else o.phase_left_s,
        "phase_left_wall_s": None if o is None or o.phase_left_s is None else o.phase_left_s / rate,
        "busy_cores": None if o is None else o.busy_cores,
        "orbit_busy_cores": None if o is None else o.orbit_busy_cores,
        "budget_w": status.budget_w,
        "queued": status.queue_depth,
        "running": len(status.running),
        "committed_core_s": None if o is None else sum(o.committed_core_s) + o.running_core_s,
        "headroom_c": None if o is None else o.thermal_headroom_c,
        "age_s": status_age_s(status, now_utc),
    }


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "soc":
        return f"{value * 100:.1f}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        if key == "committed_core_s":
            return f"{value:.3g}"
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return str(value)


def print_status_table(rows: list[dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    headers = {"soc": "SoC %", "phase_left_s": "left mission s", "phase_left_wall_s": "left wall s",
               "busy_cores": "cores now", "orbit_busy_cores":
               "cores/orbit", "budget_w": "budget W", "committed_core_s": "work core-s", "headroom_c":
               "headroom °C", "age_s": "age s"}
    table = Table(title=title)
    for key in STATUS_COLUMNS:
        table.add_column(headers.get(key, key), justify="left" if key in ("sat", "state", "mode", "phase") else "right")
    colours = {"safe": "red", "throttled": "yellow", "nominal": "green", "offline": "red"}
    for row in rows:
        cells = [_cell(k, row[k]) for k in STATUS_COLUMNS]
        style = colours.get(row["mode"] if row["state"] == "online" else "offline")
        table.add_row(*cells, style=style)
    Console(width=180).print(table)


def _sats(value: str | None) -> list[str] | None:
    if value is None:
        return None
    sats = [check_id("satellite id", s.strip()) for s in value.split(",") if s.strip()]
    if not sats:
        raise GroundError("--sats names no satellite")
    return sats


async def _fleet_sats(args: argparse.Namespace) -> list[str]:
    sats = _sats(args.sats)
    if sats is not None:
        return sats
    found = sorted(await read_statuses(args.broker, wait_s=1.0))
    if not found:
        raise GroundError(f"no satellite has a retained status on {args.broker} (pass --sats)")
    return found


async def cmd_fleet_status(args: argparse.Namespace) -> int:
    statuses = await read_statuses(args.broker, wait_s=args.wait)
    wanted = _sats(args.sats)
    if wanted is not None:
        statuses = {sat: statuses[sat] for sat in wanted if sat in statuses}
        missing = [sat for sat in wanted if sat not in statuses]
        if missing:
            raise GroundError(f"no retained status from {', '.join(missing)}")
    if not statuses:
        raise GroundError(f"no satellite has a retained status on {args.broker}")
    now = time.time()
    rows = [status_row(statuses[sat], now) for sat in sorted(statuses)]
    if args.json:
        print_json(rows)
    else:
        print_status_table(rows, f"fleet on {args.broker}: {len(rows)} satellites")
    return 0


async def cmd_fleet_submit(args: argparse.Namespace) -> int:
    sats = await _fleet_sats(args)
    key = command_key(args)
    async with FleetDispatcher(args.broker, sats, timeout_s=args.timeout, key_id=args.key_id, key=key) as fleet:
        model_inputs = None
        if args.input.suffix != ".npz" and args.input_name is None:
            listing = await fleet.clients[sats[0]].models()
            match = [m for m in listing if m["name"] == args.model and m["active"]]
            if not match:
                raise GroundError(f"model {args.model!r} is not active onboard {sats[0]}: pass --input-name")
            model_inputs = match[0]["inputs"]
        inputs = load_inputs(args.input, args.input_name, model_inputs)
        job = await fleet.submit(args.model, inputs, priority=args.priority, deadline_s=args.deadline,
                                 job_id=args.job_id)
        if not args.json:
            print(f"{job.job_id} -> {job.course.sat} ({job.route.describe()})", flush=True)
        outcome = await fleet.follow(job, args.timeout)
    r = outcome.fetched.result
    if args.json:
        print_json({"job_id": outcome.job_id, "sat": outcome.sat, "sats": list(outcome.sats),
                    "rerouted": outcome.rerouted, "run_ms": r.run_ms, "provider": r.provider,
                    "predicted_finish_utc": outcome.route.finish_utc,
                    "outputs": {k: list(v.shape) for k, v in outcome.fetched.outputs.items()}})
    else:
        moved = f" (re-routed from {outcome.sats[0]}: SAFE)" if outcome.rerouted else ""
        print(f"{outcome.job_id} done on {outcome.sat}{moved} in {r.run_ms:.2f} ms on {r.provider}")
    if args.output:
        save_outputs(args.output, outcome.fetched.outputs)
        if not args.json:
            print(f"wrote {args.output}")
    return 0


def add_fleet_parser(subparsers: Any) -> None:
    """Add ``fleet`` (submit/status) to the ``ground`` command's subparsers."""
    fleet = subparsers.add_parser("fleet", help="jobs routed over a fleet; the fleet's status").add_subparsers(
        dest="fleet_command", required=True)
    s = fleet.add_parser("submit", help="route a job to the best satellite and wait for its result")
    s.add_argument("model")
    s.add_argument("input", type=Path, help=".npy (one input) or .npz (inputs by name)")
    s.add_argument("--sats", help="satellites to route over, comma-separated (default: all with a status)")
    s.add_argument("--input-name")
    s.add_argument("--job-id")
    s.add_argument("--priority", type=int, default=5, help="0..9, 9 most important")
    s.add_argument("--deadline", type=float, help="seconds from now")
    s.add_argument("-o", "--output", type=Path, help="write the result here (.npy, or .npz for several)")
    s.add_argument("--json", action="store_true", help="one JSON object: where it ran, the predictions")
    s.set_defaults(handler=cmd_fleet_submit)
    s = fleet.add_parser("status", help="one row per satellite from its retained status")
    s.add_argument("--sats", help="only these satellites, comma-separated")
    s.add_argument("--json", action="store_true")
    s.add_argument("--wait", type=float, default=1.0, help="seconds to collect retained statuses")
    s.set_defaults(handler=cmd_fleet_status)
