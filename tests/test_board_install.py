"""The board install (``pip install orbitd``, no extras) in its own virtual environment: it holds none of
the ground's, the simulator's or the model tools' packages, and flightd runs a job from it, with the
governor on and its board probes reading this machine.

The environment is scripts/test.sh's ``.venv310`` (Python 3.10, JetPack 6's Python, with the board
install and the test runner only), named by ``ORBITD_BOARD_PYTHON``; where test.sh found no Python 3.10
it does not exist, and these tests are skipped saying so.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ground.client import GroundClient
from hil.mosquitto_broker import MosquittoBroker
from link.codec import decode
from link.messages import Telemetry
from link.telemetry import BOARD, BUSY_CORES
from tests.support import REPO, copy_bundled, running_flightd

BOARD_PYTHON = os.environ.get("ORBITD_BOARD_PYTHON") or str(REPO / ".venv310" / "bin" / "python")

pytestmark = pytest.mark.skipif(
    not Path(BOARD_PYTHON).is_file(),
    reason=f"no board install at {BOARD_PYTHON} (scripts/test.sh makes .venv310 where it finds a Python 3.10)",
)

ABSENT = ("scipy", "matplotlib", "sgp4", "onnx", "amqtt", "rich", "sklearn", "ppigrf", "pandas")
"""The ground's, the simulator's and the model tools' packages: none is on the board."""
PRESENT = ("onnxruntime", "numpy", "aiomqtt", "pydantic", "pydantic_settings", "prometheus_client")

PROBE = """
import importlib.util, json, sys
names = sys.argv[1:]
print(json.dumps({"python": list(sys.version_info[:2]),
                  "found": {n: importlib.util.find_spec(n) is not None for n in names}}))
"""

GOVERNOR = """\
[governor]
required_channels = ["board"]
limits = []
mode_min_dwell_s = 0.0
safe_min_dwell_s = 0.0
"""


def board_report() -> dict[str, Any]:
    out = subprocess.run([BOARD_PYTHON, "-c", PROBE, *ABSENT, *PRESENT], capture_output=True, text=True,
                         timeout=60, check=True)
    report: dict[str, Any] = json.loads(out.stdout)
    return report


def test_the_board_install_has_flightds_packages_and_nothing_else() -> None:
    report = board_report()
    found = report["found"]
    assert [n for n in ABSENT if found[n]] == [], "ground/simulation packages in the board install"
    assert [n for n in PRESENT if not found[n]] == []
    assert report["python"][0] == 3 and report["python"][1] >= 10


async def test_flightd_from_the_board_install_runs_a_job(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    models = copy_bundled(tmp_path / "models", "tile-int8")
    config = tmp_path / "flightd.toml"
    config.write_text(GOVERNOR)
    async with (running_flightd(mosquitto.url, tmp_path / "data", models, config=config, python=BOARD_PYTHON) as proc,
                GroundClient(mosquitto.url, "sat1", timeout_s=30.0) as ground):
        board = await ground.watch_topic(ground.topics.telemetry(BOARD))
        _, payload = await board.get()
        sample = decode(payload, Telemetry).message
        assert BUSY_CORES in sample.values  # /proc/stat: every Linux has it
        tiles = np.random.default_rng(1).random((4, 3, 128, 128), dtype=np.float32)
        job = await ground.submit("tile-int8", {"tile": tiles})
        fetched = await ground.wait_result(job.job_id)
        status = await ground.status()
    assert fetched.outputs["keep_logit"].shape == (4, 1)
    assert fetched.result.energy_source in ("measured", "estimated")  # the governor is on
    assert status.board is not None and status.mode is not None
    log = proc.log()
    major, minor = board_report()["python"]
    assert f"(python {major}.{minor}." in log, "flightd did not run on the board install's interpreter"
    assert f"board: {status.board.kind} " in log and "Traceback" not in log
