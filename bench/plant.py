"""Plant speed: 24 h of simulated time at 1 s steps (86,400 steps), pure models, no MQTT.

``python -m bench.plant --json`` prints one JSON object: ``wall_s_24h`` (median of ``--repeat`` runs of
``Plant.run(86400, 1.0)`` at constant full compute on nominal-550km, plant construction and the numpy
illumination precompute included), and for context: the illumination precompute alone, the same day
with a closed-loop policy (a PlantState built per step), the TLE (sgp4) path, and the cost of one
``Plant.step`` call. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

from hil.plant import IlluminationModel, Plant, PlantConfig, TleOrbit
from hil.plant.illumination import IlluminationTable
from hil.plant.tle import checksum
from hil.scenario import load_scenario

DAY_S = 86400.0

# a Starlink-like 550 km / 53 deg element set (checksums valid)
TLE_1 = "1 99999U 24001A   24172.50000000  .00000000  00000-0  00000-0 0  9990"
TLE_2 = "2 99999  53.0000  40.0000 0001000  90.0000 270.0000 15.05520000    10"


def _fix(line: str) -> str:
    return line[:68] + str(checksum(line))


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    sc = load_scenario("nominal-550km")

    def day_open_loop() -> None:
        tr = sc.build_plant().run(DAY_S, 1.0, busy_cores=2.0)
        assert len(tr) == 86400

    print("24 h open loop ...", file=sys.stderr)
    open_loop = timed(day_open_loop, args.repeat)

    def illumination_only() -> None:
        IlluminationTable(IlluminationModel(sc.config.orbit)).ensure(DAY_S)

    illum = timed(illumination_only, args.repeat)

    print("24 h closed loop ...", file=sys.stderr)

    def day_closed_loop() -> None:
        sc.build_plant().run(DAY_S, 1.0, policy=lambda s: 2.0 if s.sunlit and s.soc > 0.3 else 0.0)

    closed = timed(day_closed_loop, 1)

    print("24 h TLE path ...", file=sys.stderr)
    cfg = sc.config
    tle_cfg = PlantConfig(
        TleOrbit(_fix(TLE_1), _fix(TLE_2)), cfg.array, cfg.battery, cfg.thermal, cfg.loads, cfg.board, cfg.initial_soc
    )
    tle = timed(lambda: Plant(tle_cfg).run(DAY_S, 1.0, busy_cores=2.0), 1)

    plant = sc.build_plant()
    n = 20_000
    t = time.perf_counter()
    for _ in range(n):
        plant.step(1.0, busy_cores=1.0)
    step_us = (time.perf_counter() - t) / n * 1e6

    result = {
        "wall_s_24h": round(statistics.median(open_loop), 3),
        "wall_s_24h_runs": [round(x, 3) for x in open_loop],
        "steps": 86400,
        "dt_s": 1.0,
        "scenario": "nominal-550km",
        "illumination_precompute_s_24h": round(statistics.median(illum), 4),
        "wall_s_24h_closed_loop_policy": round(closed[0], 3),
        "wall_s_24h_tle_sgp4": round(tle[0], 3),
        "step_call_us": round(step_us, 1),
        "realtime_factor": round(DAY_S / statistics.median(open_loop)),
        "numpy": np.__version__,
        "python": sys.version.split()[0],
    }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
