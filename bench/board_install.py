"""The board install, measured: ``pip install orbitd`` (no extras) in a fresh virtual environment.

``python -m bench.board_install --json [--python python3.10]`` builds orbitd's wheel, makes a fresh venv
with ``--python`` (default: this interpreter), installs the wheel there (its dependencies from the
package index, through pip's cache: a warm-cache time), and prints one JSON object:

- ``distributions``: how many distributions (wheels) the install holds besides pip/setuptools, each
  with its version and installed size; ``installed_mb`` their total (the files each one's RECORD
  lists), ``venv_mb`` the whole venv on disk (the interpreter links and pip included);
- ``absent``: the ground's and the simulator's packages (scipy, matplotlib, sgp4, onnx, ...), each
  False when it cannot be imported there, as it must not;
- ``flightd_rss_mb``: flightd from that venv on a loopback Mosquitto: resident memory once online
  with no model loaded (``idle``), after a job on the INT8 tile model (``tile_int8_loaded``), and its
  peak (``peak``, VmHWM), MiB from /proc; ``job_ms`` that job's run time (4 tiles of 3x128x128).

The CPU it ran on comes with the figures (``cpu``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import REPO, cpu_info, progress, rig, settle
from ground.client import GroundClient

ABSENT = ("scipy", "matplotlib", "sgp4", "onnx", "amqtt", "rich", "sklearn", "ppigrf", "pandas", "paho_mqtt_ground")
"""Packages the board install must not hold (``paho_mqtt_ground`` is a control: never a package)."""
BOOTSTRAP = ("pip", "setuptools")
"""What ``python -m venv`` puts in every venv: not counted as the board install."""

INSPECT = """
import importlib.metadata as md, importlib.util, json, sys
dists = []
for d in md.distributions():
    size = 0
    for f in d.files or []:
        try:
            size += f.locate().stat().st_size
        except OSError:
            pass
    dists.append({"name": d.metadata["Name"], "version": d.version, "kb": round(size / 1024)})
absent = {n: importlib.util.find_spec(n) is None for n in sys.argv[1:]}
print(json.dumps({"python": "%d.%d.%d" % sys.version_info[:3], "dists": dists, "absent": absent}))
"""


def du_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20


async def flightd_rss(python: str) -> dict[str, Any]:
    """flightd from ``python``'s venv: RSS idle, after a tile-int8 job, and its peak (MiB)."""
    tiles = np.random.default_rng(0).random((4, 3, 128, 128), dtype=np.float32)
    async with rig(None, python=python) as r, GroundClient(r.broker.url, "bench", timeout_s=60) as ground:
        await settle(1.0)
        idle = r.rss_mb()["VmRSS"]
        job = await ground.submit("tile-int8", {"tile": tiles})
        result = (await ground.wait_result(job.job_id)).result
        await settle(1.0)
        after = r.rss_mb()
    return {"rss": {"idle": round(idle, 1), "tile_int8_loaded": round(after["VmRSS"], 1),
                    "peak": round(after["VmHWM"], 1)}, "job_ms": round(result.run_ms, 1)}


def measure(python: str, keep: Path | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="orbitd-board-") as tmp:
        work = keep or Path(tmp)
        wheels, venv = work / "wheel", work / "venv"
        shutil.rmtree(venv, ignore_errors=True)
        progress("bench.board_install: building the wheel")
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)],
                       check=True, capture_output=True)
        wheel = next(wheels.glob("orbitd-*.whl"))
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        progress(f"bench.board_install: pip install {wheel.name} into a fresh venv ({python})")
        t0 = time.monotonic()
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], check=True, capture_output=True)
        install_s = time.monotonic() - t0
        out = subprocess.run([str(venv / "bin" / "python"), "-c", INSPECT, *ABSENT], check=True,
                             capture_output=True, text=True, cwd=venv)  # not the source tree: its egg-info
        inspected = json.loads(out.stdout)
        dists = sorted((d for d in inspected["dists"] if d["name"].lower() not in BOOTSTRAP),
                       key=lambda d: -d["kb"])
        progress("bench.board_install: flightd from the board venv on a loopback Mosquitto")
        rss = asyncio.run(flightd_rss(str(venv / "bin" / "python")))
        return {
            "python": inspected["python"],
            "wheel": {"name": wheel.name, "kb": round(wheel.stat().st_size / 1024)},
            "distributions": len(dists),
            "dists": dists,
            "installed_mb": round(sum(d["kb"] for d in dists) / 1024, 1),
            "venv_mb": round(du_mb(venv), 1),
            "install_s": round(install_s, 1),
            "absent": inspected["absent"],
            "flightd_rss_mb": rss["rss"],
            "job_ms": rss["job_ms"],
            "cpu": cpu_info(),
        }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.board_install", description=__doc__.split("\n\n")[0])
    p.add_argument("--python", default=sys.executable, help="interpreter of the fresh venv (e.g. python3.10)")
    p.add_argument("--keep", type=Path, help="build in this directory and keep it (default: a temporary one)")
    p.add_argument("--json", action="store_true", help="print one JSON object (the default output too)")
    args = p.parse_args(argv)
    result = measure(args.python, args.keep)
    print(json.dumps(result))
    return 0 if not [n for n, gone in result["absent"].items() if not gone] else 1


if __name__ == "__main__":
    raise SystemExit(main())
