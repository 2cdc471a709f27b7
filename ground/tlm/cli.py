"""``ground tlm record|query|plot|replay``: the telemetry archive from the command line.

Mounted by the ``ground`` command through :func:`add_tlm_parser`; runnable on its own as
``python -m ground.tlm.cli [--broker URL] [--sat ID] tlm ...`` (same global options). Each subcommand
sets ``args.handler``, an ``async def`` of the parsed arguments returning the exit status (the
``ground`` command's convention: ``asyncio.run(args.handler(args))``); it reads the global options as
``args.broker`` and ``args.sat``.

Satellite selection: ``record`` records the subcommand's ``--sat``, else every satellite with
``--all``, else the global ``--sat``. ``query`` and ``plot`` show every satellite unless the
subcommand's ``--sat`` names one, and ``replay`` rewrites the satellite id only when the subcommand's
``--sat`` is given (the global ``--sat`` has a default and must not silently rename a replay).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence
from typing import Any

from ground.tlm.archive import Archive
from ground.tls_options import tls_from_args
from link.topics import LIVE_ROOT, REPLAY_ROOT

DEFAULT_BROKER = "mqtt://127.0.0.1:1883"


def _sat(args: argparse.Namespace) -> str | None:
    """The satellite given on the subcommand (not the global ``--sat``)."""
    own: str | None = getattr(args, "tlm_sat", None)
    return own


async def cmd_record(args: argparse.Namespace) -> int:
    from ground.tlm.recorder import Recorder, announce, record, subscriptions

    sat = None if args.all else (_sat(args) or getattr(args, "sat", None))
    if sat is None and not args.all:
        print("tlm record: give --sat ID or --all", file=sys.stderr)
        return 2
    root = {"live": LIVE_ROOT, "replay": REPLAY_ROOT}.get(args.root, args.root)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    recorder: Recorder = await record(
        args.out,
        args.broker,
        sat=sat,
        root=root,
        results=args.results,
        synchronous=args.sync.upper(),
        on_ready=lambda rec: announce(rec, subscriptions(sat, root)),
        stop=stop,
        tls=tls_from_args(args),
    )
    refused = f"; {recorder.refused} not archived (non-finite numbers)" if recorder.refused else ""
    print(f"recorded {recorder.written} messages in {recorder.batches} commits{refused}", file=sys.stderr)
    return 0


async def cmd_query(args: argparse.Namespace) -> int:
    from ground.tlm.query import query, write_csv, write_jsonl

    sat = _sat(args)
    with Archive(args.archive) as archive:
        records = query(archive, args.channel, args.t_from, args.t_to, [sat] if sat else None)
        out = open(args.output, "w", newline="") if args.output else sys.stdout  # noqa: SIM115
        try:
            n = write_csv(records, out) if args.csv else write_jsonl(records, out)
        finally:
            if out is not sys.stdout:
                out.close()
    print(f"{n} messages", file=sys.stderr)
    return 0


async def cmd_plot(args: argparse.Namespace) -> int:
    from ground.tlm.plot import plot

    sat = _sat(args)
    with Archive(args.archive) as archive:
        path = plot(archive, args.output, sats=[sat] if sat else None, title=args.title)
    print(f"wrote {path}", file=sys.stderr)
    return 0


async def cmd_replay(args: argparse.Namespace) -> int:
    from ground.tlm.query import bounds
    from ground.tlm.replay import parse_speed, replay_async

    report = await replay_async(
        args.archive,
        args.broker,
        speed=parse_speed(args.speed),
        as_live=args.as_live,
        sat=_sat(args),
        channels=args.channels,
        sats=args.from_sat,
        late_ms=args.late_ms,
        progress=not args.no_progress,
        tls=tls_from_args(args),
        **bounds(args.t_from, args.t_to),
    )
    print(report.summary(), file=sys.stderr)
    if args.json:
        print(json.dumps(report.as_dict()))
    return 0


def add_tlm_parser(subparsers: Any) -> None:
    """Add ``tlm`` (record/query/plot/replay) to the ``ground`` command's subparsers. Each leaf sets
    ``handler`` (``await args.handler(args) -> int``); global options are read as ``args.broker`` and
    ``args.sat``."""
    tlm = subparsers.add_parser("tlm", help="telemetry archive: record, query, plot, replay")
    sub = tlm.add_subparsers(dest="tlm_command", required=True, metavar="{record,query,plot,replay}")
    time_help = "mission seconds t_s (a number) or ISO-8601 UTC receive time (e.g. 2025-06-01T12:00:00Z)"

    p = sub.add_parser("record", help="append telemetry, status, events, job states and results to an archive")
    p.add_argument("--out", required=True, help="archive file (SQLite, created if missing, appended to)")
    who = p.add_mutually_exclusive_group()
    who.add_argument(
        "--sat", dest="tlm_sat", metavar="ID", default=None, help="satellite id (default: the global --sat)"
    )
    who.add_argument("--all", action="store_true", help="every satellite")
    p.add_argument("--root", default="live", help="topic root: live (orbitd/v1), replay, or a root string")
    p.add_argument(
        "--results", choices=("full", "header", "none"), default="full",
        help="store results whole (default), their JSON header only, or not at all",
    )  # fmt: skip
    p.add_argument("--sync", choices=("normal", "full"), default="normal", help="SQLite synchronous mode")
    p.set_defaults(handler=cmd_record)

    p = sub.add_parser("query", help="print archived messages as JSON Lines or CSV")
    p.add_argument("archive")
    p.add_argument(
        "--channel", action="append", required=True,
        help="tlm/<name> (or <name>), tlm (all telemetry), status, events, jobs, results; repeatable",
    )  # fmt: skip
    p.add_argument("--from", dest="t_from", metavar="T", help=time_help)
    p.add_argument("--to", dest="t_to", metavar="T", help=time_help)
    p.add_argument("--sat", dest="tlm_sat", metavar="ID", default=None, help="only this satellite (default: all)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="JSON Lines, one message per line (default)")
    fmt.add_argument("--csv", action="store_true", help="CSV with a header row, values flattened")
    p.add_argument("-o", "--output", help="write here instead of stdout")
    p.set_defaults(handler=cmd_query)

    p = sub.add_parser("plot", help="PNG overview: SoC, temperatures, power, compute, jobs, modes, eclipses")
    p.add_argument("archive")
    p.add_argument("-o", "--output", required=True, help="PNG file to write")
    p.add_argument("--sat", dest="tlm_sat", metavar="ID", default=None, help="only this satellite (default: all)")
    p.add_argument("--title")
    p.set_defaults(handler=cmd_plot)

    p = sub.add_parser("replay", help="publish archived messages again with their original timing")
    p.add_argument("archive")
    p.add_argument("--speed", default="1", help="1 = real time, 10 = ten times faster, max = no pacing")
    p.add_argument("--from", dest="t_from", metavar="T", help=time_help)
    p.add_argument("--to", dest="t_to", metavar="T", help=time_help)
    p.add_argument("--channels", nargs="+", help="channels to replay (as for query; default all)")
    p.add_argument(
        "--sat", dest="tlm_sat", metavar="ID", default=None, help="publish as this satellite id (default: as recorded)"
    )
    p.add_argument("--from-sat", action="append", help="replay only this recorded satellite; repeatable")
    p.add_argument(
        "--as-live", action="store_true",
        help=f"publish under the live root {LIVE_ROOT} (default: {REPLAY_ROOT}, unseen by live consumers)",
    )  # fmt: skip
    p.add_argument("--late-ms", type=float, default=5.0, help="lag beyond which a message counts as late")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--json", action="store_true", help="print the slip report as JSON on stdout")
    p.set_defaults(handler=cmd_replay)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ground", description="orbitd ground telemetry archive")
    parser.add_argument("--broker", default=DEFAULT_BROKER, help=f"broker URL (default {DEFAULT_BROKER})")
    parser.add_argument("--sat", default=None, help="satellite id")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_tlm_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rc: int = asyncio.run(args.handler(args))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
