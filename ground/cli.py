"""``ground``: the operator's command line, built on :class:`ground.client.GroundClient`.

Every failure ends with exit status 1 and one line ``ground: error: ...`` on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiomqtt

from ground.client import GroundError
from ground.fleet.cli import add_fleet_parser
from ground.model.cli import add_model_parser
from ground.options import add_global_options, client_from_args, load_inputs, print_json, save_outputs
from ground.security_cli import add_security_parsers
from ground.seq import add_seq_parser
from ground.tlm.cli import add_tlm_parser
from link.auth import AuthError
from link.codec import WireError
from link.messages import JobState

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int] | int]


async def cmd_submit(args: argparse.Namespace) -> int:
    async with client_from_args(args) as ground:
        model_inputs = None
        if args.input.suffix != ".npz" and args.input_name is None:
            listing = await ground.models()
            match = [m for m in listing if m["name"] == args.model and (m["active"] or m["version"] == args.version)]
            if not match:
                raise GroundError(f"model {args.model!r} is not onboard {args.sat}")
            model_inputs = match[0]["inputs"]
        inputs = load_inputs(args.input, args.input_name, model_inputs)
        options = {"job_id": args.job_id, "version": args.version, "priority": args.priority,
                   "deadline_s": args.deadline, "framed": not args.json_encoding}
        if args.queue_only:  # store and forward: the ground broker holds it for the next contact
            prepared = await ground.prepare_job(args.model, inputs, **options)
            await ground.send_job(prepared)
            job_id = prepared.job_id
            print(f"{job_id} sent: the ground broker holds it until {args.sat} takes it")
        else:
            job = await ground.submit(args.model, inputs, **options)
            job_id = job.job_id
            print(f"{job_id} {job.ack.state.value}" + (f" ({job.ack.reason})" if job.ack.reason else ""))
        if args.wait or args.output:
            fetched = await ground.wait_result(job_id, args.timeout)
            r = fetched.result
            print(f"{job_id} done in {r.run_ms:.2f} ms on {r.provider}")
            if args.output:
                save_outputs(args.output, fetched.outputs)
                print(f"wrote {args.output}")
    return 0


async def cmd_jobs(args: argparse.Namespace) -> int:
    async with client_from_args(args) as ground:
        jobs = await ground.jobs([JobState(s) for s in args.state] if args.state else None, args.limit)
    if args.json:
        print_json(jobs)
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"jobs on {args.sat}")
    for col in ("job_id", "state", "model", "version", "priority", "attempt", "reason"):
        table.add_column(col)
    for j in jobs:
        table.add_row(*(str(j[c] if j[c] is not None else "") for c in
                        ("job_id", "state", "model", "version", "priority", "attempt", "reason")))
    Console().print(table)
    return 0


async def cmd_watch(args: argparse.Namespace) -> int:
    async with client_from_args(args) as ground:
        async for event in ground.watch(args.job_id):
            reason = f" ({event.reason})" if event.reason else ""
            print(f"{event.at_utc:.3f} {event.job_id} {event.state.value} attempt={event.attempt}{reason}", flush=True)
            if event.state.terminal:
                return 0 if event.state is JobState.DONE else 1
    return 1


async def cmd_result(args: argparse.Namespace) -> int:
    async with client_from_args(args) as ground:
        fetched = await ground.wait_result(args.job_id, args.timeout, ack=not args.keep)
    save_outputs(args.output, fetched.outputs)
    print(f"wrote {args.output} ({', '.join(f'{k}{list(v.shape)}' for k, v in fetched.outputs.items())})")
    return 0


async def cmd_cancel(args: argparse.Namespace) -> int:
    async with client_from_args(args) as ground:
        data = await ground.cancel(args.job_id)
    print(f"{data['job_id']} {data['state']}")
    return 0


async def cmd_status(args: argparse.Namespace) -> int:
    async with client_from_args(args) as ground:
        status = await ground.status(timeout_s=min(args.timeout, 5.0))
    if args.json:
        print(status.model_dump_json(indent=2))
    else:
        for key, value in status.model_dump(exclude_none=True).items():
            print(f"{key:>18}: {value}")
    return 0 if status.state == "online" else 1


async def cmd_icd_schemas(args: argparse.Namespace) -> int:
    from ground.icd import write_schemas

    for path in write_schemas(args.output):
        print(path)
    return 0


async def cmd_icd_xtce(args: argparse.Namespace) -> int:
    from ground.xtce import configured_limits, write_mission_database

    print(write_mission_database(args.output, configured_limits(args.config), name=args.sat))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ground", description="orbitd ground segment")
    add_global_options(p)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("submit", help="send a job")
    s.add_argument("model")
    s.add_argument("input", type=Path, help=".npy (one input) or .npz (inputs by name)")
    s.add_argument("--input-name")
    s.add_argument("--version")
    s.add_argument("--job-id")
    s.add_argument("--priority", type=int, default=5, help="0..9, 9 most important")
    s.add_argument("--deadline", type=float, help="seconds from now")
    s.add_argument("--wait", action="store_true", help="wait for the result")
    s.add_argument("-o", "--output", type=Path, help="write the result here (.npy, or .npz for several)")
    s.add_argument("--json-encoding", action="store_true", help="send tensors as JSON+base64, not framed")
    s.add_argument("--queue-only", action="store_true",
                   help="return once the ground broker holds the job, without waiting for the satellite "
                   "(out of contact the bridge delivers it at the next pass; follow it with `ground watch`)")
    s.set_defaults(handler=cmd_submit)

    s = sub.add_parser("jobs", help="list jobs onboard")
    s.add_argument("--json", action="store_true")
    s.add_argument("--state", action="append", choices=[st.value for st in JobState])
    s.add_argument("--limit", type=int, default=1000)
    s.set_defaults(handler=cmd_jobs)

    s = sub.add_parser("watch", help="follow a job's states")
    s.add_argument("job_id")
    s.set_defaults(handler=cmd_watch)

    s = sub.add_parser("result", help="fetch a job's result")
    s.add_argument("job_id")
    s.add_argument("-o", "--output", type=Path, required=True)
    s.add_argument("--keep", action="store_true", help="do not acknowledge (flightd keeps it)")
    s.set_defaults(handler=cmd_result)

    s = sub.add_parser("cancel", help="cancel a queued or running job")
    s.add_argument("job_id")
    s.set_defaults(handler=cmd_cancel)

    s = sub.add_parser("status", help="the satellite's retained status")
    s.add_argument("--json", action="store_true")
    s.set_defaults(handler=cmd_status)

    add_model_parser(sub)
    add_seq_parser(sub)
    add_fleet_parser(sub)

    icd = sub.add_parser("icd", help="interface control").add_subparsers(dest="icd_command", required=True)
    s = icd.add_parser("schemas", help="write JSON Schema files of every message")
    s.add_argument("-o", "--output", type=Path, required=True)
    s.set_defaults(handler=cmd_icd_schemas)
    s = icd.add_parser("xtce", help="write the XTCE 1.2 mission database (telemetry, limits, commands)")
    s.add_argument("-o", "--output", type=Path, required=True, help="the XML file to write")
    s.add_argument("--config", type=Path, help="flightd's TOML configuration: the governor limits to export")
    s.set_defaults(handler=cmd_icd_xtce)
    add_tlm_parser(sub)
    add_security_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        outcome = handler(args)
        return asyncio.run(outcome) if asyncio.iscoroutine(outcome) else int(outcome)
    except (GroundError, AuthError, WireError, aiomqtt.MqttError, OSError, ValueError) as exc:
        print(f"ground: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
