"""``hil``: the test rig's command line.

    hil plant  --broker URL --sat ID --scenario NAME --warp X [--rate HZ] [--duration S]
    hil broker [--host H] [--port P]      (embedded amqtt broker, zero-setup path)
    hil scenarios                         (list the bundled scenarios)

A ``sil`` subcommand (software-in-the-loop runner) is added by the lead: see ``_add_sil`` below.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence


def _add_plant(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("plant", help="run the plant simulator on MQTT")
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="broker URL (mqtt://host:port)")
    p.add_argument("--sat", default="sat1", help="satellite id")
    p.add_argument("--scenario", default="nominal-550km", help="scenario name (hil/scenarios) or .toml path")
    p.add_argument("--warp", type=float, default=1.0, help="simulated seconds per wall-clock second")
    p.add_argument("--rate", type=float, default=None, help="telemetry samples per simulated second")
    p.add_argument("--duration", type=float, default=None, help="stop after this many simulated seconds")
    p.add_argument("--physics-dt", type=float, default=1.0, help="plant integration step, simulated s")


def _add_broker(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("broker", help="run the embedded MQTT broker (amqtt)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)


def _add_sil(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Placeholder for the lead's ``hil sil`` (software-in-the-loop runner)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hil", description="orbitd test rig: plant simulator, brokers, SIL")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_plant(sub)
    _add_broker(sub)
    sub.add_parser("scenarios", help="list the bundled scenarios")
    _add_sil(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    try:
        if args.command == "plant":
            from hil.plant_service import serve

            asyncio.run(
                serve(
                    args.broker,
                    args.sat,
                    args.scenario,
                    warp=args.warp,
                    rate_hz=args.rate,
                    duration_s=args.duration,
                    physics_dt_s=args.physics_dt,
                )
            )
        elif args.command == "broker":
            from hil.embedded_broker import serve_forever

            asyncio.run(serve_forever(args.host, args.port))
        elif args.command == "scenarios":
            from hil.scenario import list_scenarios, load_scenario

            for name in list_scenarios():
                print(f"{name}: {load_scenario(name).description}")
    except KeyboardInterrupt:
        return 130
    except (ValueError, FileNotFoundError) as exc:
        print(f"hil: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
