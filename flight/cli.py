"""``flightd``: the onboard daemon's command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from flight.allocator import pin_mmap_threshold
from flight.daemon import FlightDaemon
from flight.journal import JournalFault
from flight.log_format import OneLineFormatter
from flight.session import EXIT_SESSION_CONFLICT
from flight.settings import FlightSettings
from link.codec import describe_validation_error


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flightd", description="orbitd onboard job daemon")
    p.add_argument("--broker", help="mqtt://HOST:PORT, or a cluster's nodes comma-separated (default from config, "
                   "else mqtt://127.0.0.1:1883)")
    p.add_argument("--sat", help="satellite id (topic level)")
    p.add_argument("--data-dir", type=Path, help="journal and state directory")
    p.add_argument("--models", type=Path, dest="models_dir", help="model registry directory")
    p.add_argument("--config", type=Path, help="TOML configuration file")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter())  # a reason quoting the wire cannot forge log lines
    logging.basicConfig(level=args.log_level, handlers=[handler])
    pin_mmap_threshold()  # a flood of large payloads must not leave the heap grown (flight.allocator)
    try:
        settings = FlightSettings.load(
            args.config, broker=args.broker, sat=args.sat, data_dir=args.data_dir, models_dir=args.models_dir
        )
    except ValidationError as exc:
        print(f"flightd: invalid configuration: {describe_validation_error(exc)}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as exc:
        print(f"flightd: {exc}", file=sys.stderr)
        return 2

    async def serve() -> FlightDaemon:
        daemon = FlightDaemon(settings)
        await daemon.run()
        return daemon

    try:
        daemon = asyncio.run(serve())
    except JournalFault as exc:  # the data directory cannot hold the journal: as bad as a configuration error
        print(f"flightd: {exc}", file=sys.stderr)
        return 2
    if daemon.conflict is not None:
        print(f"flightd: {daemon.conflict}", file=sys.stderr)
        return EXIT_SESSION_CONFLICT
    if daemon.failure is not None:
        print(f"flightd: {daemon.failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
