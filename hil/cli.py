"""``hil``: the test rig's command line.

    hil plant  --broker URL --sat ID --scenario NAME --warp X [--rate HZ] [--duration S]
               [--warp-schedule JSON] [--lockstep S] [--json]
               [--tls-ca F --tls-cert F --tls-key F]  (the plant-<sat> identity on an mqtts:// broker)
    hil broker [--host H] [--port P]      (embedded amqtt broker, zero-setup path)
    hil nats   [--dir DIR] [--nodes 3]    (nats-server cluster with MQTT: the fleet's ground broker)
    hil scenarios                         (list the bundled scenarios)

    hil sil    --scenario NAME [--orbits N] [--warp X] [--broker URL] [--report DIR] [--json]
               [--radiation [--upset-scale K] [--run-upset-scale K] [--scrub-period S]]
               [--link passes|relay [--contact-warp X] [--board auto|netns|loopback|ssh]]
               [--ssh [USER@]HOST --board-address A --ground-address A [--board-python P]]  (--board ssh)
    hil fleet  --sats N [--orbits N] [--warp X] [--broker mosquitto|nats-cluster|URL] [--dropout K]
               [--soc F] [--mqtt-port P] [--report DIR] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ground.tls_options import add_tls_options, tls_from_args

if TYPE_CHECKING:
    from hil.link.board import SshBoard


def _add_plant(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("plant", help="run the plant simulator on MQTT")
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="broker URL (mqtt://host:port)")
    p.add_argument("--sat", default="sat1", help="satellite id")
    p.add_argument("--scenario", default="nominal-550km", help="scenario name (hil/scenarios) or .toml path")
    p.add_argument("--warp", type=float, default=1.0, help="simulated seconds per wall-clock second")
    p.add_argument("--rate", type=float, default=None, help="telemetry samples per simulated second")
    p.add_argument("--duration", type=float, default=None, help="stop after this many simulated seconds")
    p.add_argument("--physics-dt", type=float, default=1.0, help="plant integration step, simulated s")
    p.add_argument("--warp-schedule", help='warp by simulated time, replaces --warp: '
                   '{"base": W, "spans": [[start_s, end_s, warp], ...]} (hil.plant_service.WarpSchedule)')
    p.add_argument("--lockstep", type=float, default=None,
                   help="stay at most this many simulated s ahead of flightd's reported mission time")
    p.add_argument("--json", action="store_true", help="at the end, print {wall_s, pace_slips} as JSON")
    add_tls_options(p)  # the plant-<sat> identity of `ground pki init`, for an mqtts:// broker


def _add_broker(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("broker", help="run the embedded MQTT broker (amqtt; no authentication, loopback only)")
    p.add_argument("--host", default="127.0.0.1", help="a loopback address (127.0.0.0/8, ::1, localhost)")
    p.add_argument("--port", type=int, default=1883)


def _add_nats(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("nats", help="run a nats-server cluster with its MQTT listener on loopback (fleet ground)")
    p.add_argument("--dir", type=Path, default=Path("var/nats"), help="configs, logs and JetStream stores")
    p.add_argument("--nodes", type=int, default=3, help="cluster size (MQTT streams replicated on up to 3)")
    p.add_argument("--mqtt-port", type=int, help="MQTT port of node 1; node i listens on PORT + i - 1 "
                   "(default: free ports)")


def _add_sil(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("sil", help="software-in-the-loop run: broker, plant, flightd, workload, report")
    p.add_argument("--scenario", default="nominal-550km", help="scenario name (hil/scenarios) or .toml path")
    p.add_argument("--orbits", type=float, default=2.0)
    p.add_argument("--warp", type=float, default=200.0, help="simulated seconds per wall-clock second")
    p.add_argument("--broker", help="use this broker instead of starting the embedded one")
    p.add_argument("--report", type=Path, help="report directory (default runs/sil-<scenario>-<time>)")
    p.add_argument("--models", type=Path, help="model registry (default: the bundled models)")
    p.add_argument("--backlog", type=int, default=8, help="jobs kept outstanding by the ground workload")
    p.add_argument("--model", default="tile-fp32", help="bundled model the workload runs")
    p.add_argument("--tiles", type=int, default=4, help="128x128 tiles per job (a frame)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")
    p.add_argument("--radiation", action="store_true", help="inject upsets at the plant's rate into flightd's "
                   "held weights and runs (TEST-ONLY fault injection) and report them (docs/radiation.md)")
    p.add_argument("--upset-scale", type=float, default=10.0, help="with --radiation: upset rate multiplier for "
                   "the held weights")
    p.add_argument("--run-upset-scale", type=float, default=3.0, help="with --radiation: upset rate multiplier "
                   "for runs (hil/upsets.py says why it is lower)")
    p.add_argument("--scrub-period", type=float, default=2.0, help="with --radiation: flightd's scrub period, "
                   "wall s")
    p.add_argument("--link", choices=["passes", "relay"],
                   help="run across the space link of the scenario's [link] table: board side (flightd, onboard "
                   "Mosquitto, plant) bridged to the ground broker through the link emulator (docs/hil.md); "
                   "default: the perfect link")
    p.add_argument("--contact-warp", type=float, default=10.0,
                   help="--link: warp while in contact (Mosquitto's bridge retries every 1-2 s of wall time; keep it "
                   "<= 10 for passes); --warp applies in the gaps")
    p.add_argument("--board", choices=["auto", "netns", "loopback", "ssh"], default="auto",
                   help="--link: where the board side runs (auto: its own network namespace when root; ssh: a board "
                   "reached by ssh, with --ssh, --board-address, --ground-address)")
    p.add_argument("--ssh", metavar="[USER@]HOST", help="--board ssh: the board's ssh destination (key login; "
                   "options from ~/.ssh/config)")
    p.add_argument("--board-address", help="--board ssh: the board's address on the bench network (its broker)")
    p.add_argument("--ground-address", help="--board ssh: this host's address on the bench network (the relay)")
    p.add_argument("--board-python", default="python3",
                   help="--board ssh: the board's interpreter with orbitd installed (default python3)")
    p.add_argument("--resend-contact", type=float, default=300.0,
                   help="--link: contact seconds without an acknowledgement before a job is sent again")


def _add_fleet(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("fleet", help="a real fleet: N flightd with their plants, the ground fleet dispatcher, report")
    p.add_argument("--sats", type=int, default=6, help="satellites, phased evenly around one orbit")
    p.add_argument("--scenario", default="nominal-550km", help="every satellite's scenario (a circular orbit)")
    p.add_argument("--orbits", type=float, default=2.0)
    p.add_argument("--warp", type=float, default=300.0, help="simulated seconds per wall-clock second")
    p.add_argument("--broker", default="mosquitto",
                   help="mosquitto (default: started for the run), nats-cluster (three nodes started), or a URL list")
    p.add_argument("--dropout", type=int, metavar="K", help="satellite K loses its telemetry for a quarter of the run")
    p.add_argument("--soc", type=float, default=0.5, help="every battery's state of charge at the start (0..1)")
    p.add_argument("--mqtt-port", type=int, help="MQTT port of the broker it starts (a cluster's node i: PORT + i)")
    p.add_argument("--report", type=Path, help="report directory (default runs/fleet-<sats>-<time>)")
    p.add_argument("--models", type=Path, help="model registry (default: the bundled models)")
    p.add_argument("--model", default="tile-fp32", help="bundled model the workload runs")
    p.add_argument("--tiles", type=int, default=4, help="128x128 tiles per job")
    p.add_argument("--backlog", type=int, default=12, help="jobs the ground keeps outstanding over the fleet")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")


def board_from_args(args: argparse.Namespace) -> str | SshBoard:
    """``--board``: a name (auto, netns, loopback) or, for ssh, the board side from ``--ssh`` and the
    two addresses (SystemExit naming what is missing)."""
    if args.board != "ssh":
        return str(args.board)
    missing = [f"--{n.replace('_', '-')}" for n in ("ssh", "board_address", "ground_address") if not getattr(args, n)]
    if missing:
        raise SystemExit(f"hil sil --board ssh needs {', '.join(missing)}")
    from hil.link.board import SshBoard

    return SshBoard(args.ssh, args.board_address, args.ground_address, python=args.board_python)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hil", description="orbitd test rig: plant simulator, brokers, SIL")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_plant(sub)
    _add_broker(sub)
    _add_nats(sub)
    sub.add_parser("scenarios", help="list the bundled scenarios")
    _add_sil(sub)
    _add_fleet(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    try:
        if args.command == "plant":
            import json

            from hil.plant_service import WarpSchedule, serve

            wall0 = time.monotonic()
            pacer = asyncio.run(
                serve(
                    args.broker,
                    args.sat,
                    args.scenario,
                    warp=WarpSchedule.from_json(args.warp_schedule) if args.warp_schedule else args.warp,
                    rate_hz=args.rate,
                    duration_s=args.duration,
                    physics_dt_s=args.physics_dt,
                    lockstep_s=args.lockstep,
                    tls=tls_from_args(args),
                )
            )
            if args.json:
                print(json.dumps({"wall_s": time.monotonic() - wall0, "pace_slips": pacer.slips}), flush=True)
        elif args.command == "broker":
            from hil.embedded_broker import serve_forever

            asyncio.run(serve_forever(args.host, args.port))
        elif args.command == "nats":
            import signal

            from hil.nats_cluster import NatsCluster

            signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops the nodes too
            ports = None if args.mqtt_port is None else [args.mqtt_port + i for i in range(args.nodes)]
            with NatsCluster(args.dir, size=args.nodes, mqtt_ports=ports) as cluster:
                print(f"{args.nodes} nodes ready in {cluster.ready_s:.1f} s; configs and logs under {args.dir}")
                print(f"broker list: {cluster.url}", flush=True)
                while all(node.alive() for node in cluster.nodes):
                    time.sleep(0.5)
                raise RuntimeError("a nats-server node exited: see its nats.log")
        elif args.command == "sil":
            import json
            from dataclasses import asdict

            from hil.sil import LinkOptions, print_report, run_sil

            link = None if args.link is None else LinkOptions(
                args.link, contact_warp=args.contact_warp, board=board_from_args(args),
                resend_contact_s=args.resend_contact)
            report = asyncio.run(
                run_sil(args.scenario, orbits=args.orbits, warp=args.warp, broker=args.broker,
                        report_dir=args.report, models=args.models, model=args.model, backlog=args.backlog,
                        tiles=args.tiles, progress=not args.json, link=link, radiation=args.radiation,
                        upset_scale=args.upset_scale, run_upset_scale=args.run_upset_scale,
                        scrub_period_s=args.scrub_period)
            )
            if args.json:
                print(json.dumps(asdict(report)))
            else:
                print_report(report)
        elif args.command == "fleet":
            import json
            from dataclasses import asdict

            from hil.fleet_sil import print_fleet_report, run_fleet_sil

            fleet_report = asyncio.run(
                run_fleet_sil(args.sats, args.scenario, orbits=args.orbits, warp=args.warp, broker=args.broker,
                              report_dir=args.report, models=args.models, model=args.model, tiles=args.tiles,
                              backlog=args.backlog, dropout_sat=args.dropout, initial_soc=args.soc,
                              mqtt_port=args.mqtt_port, progress=not args.json)
            )
            if args.json:
                print(json.dumps(asdict(fleet_report)))
            else:
                print_fleet_report(fleet_report)
        elif args.command == "scenarios":
            from hil.scenario import list_scenarios, load_scenario

            for name in list_scenarios():
                print(f"{name}: {load_scenario(name).description}")
    except KeyboardInterrupt:
        return 130
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"hil: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
