"""Test support: a flightd subprocess, model registries in temporary directories, waiting helpers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from link.manifest import MODEL_FILE

if TYPE_CHECKING:
    import onnx

REPO = Path(__file__).resolve().parent.parent
BUNDLED = REPO / "models"


def copy_bundled(models_dir: Path, *names: str) -> Path:
    """Copy bundled models (all versions) into a registry directory of the test's own."""
    models_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copytree(BUNDLED / name, models_dir / name)
    return models_dir


def _conv_stack(rng: np.random.Generator, first: str, last: str, layers: int, channels: int
                ) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """``layers`` 3x3 convolutions of ``channels`` channels from tensor ``first`` to tensor ``last``."""
    from onnx import helper, numpy_helper  # the ground's model tools: imported here so the board-install
    # tests (no onnx there) can import this module

    nodes, inits = [], []
    prev = first
    for i in range(layers):
        w = (rng.standard_normal((channels, channels, 3, 3)) * (1.0 / (3 * channels**0.5))).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        out = last if i == layers - 1 else f"h{i}"
        nodes.append(helper.make_node("Conv", [prev, f"w{i}"], [out], pads=[1, 1, 1, 1]))
        prev = out
    return nodes, inits


def _save_model(models_dir: Path, name: str, graph: onnx.GraphProto) -> Path:
    import onnx
    from onnx import helper

    from ground.model.files import build_manifest, write_manifest

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9  # what ONNX Runtime 1.18+ loads
    directory = models_dir / name / "1.0.0"
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(directory / MODEL_FILE))
    write_manifest(build_manifest(directory / MODEL_FILE, name=name, version="1.0.0"), directory)
    return directory


def build_slow_model(models_dir: Path, name: str = "slow", layers: int = 40, channels: int = 64) -> Path:
    """A conv stack (float32 [1, C, 64, 64] -> same shape) that takes about 85 ms per run on 2 cores."""
    from onnx import TensorProto, helper

    nodes, inits = _conv_stack(np.random.default_rng(0), "x", "y", layers, channels)
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 64, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, 64, 64])],
        inits,
    )
    return _save_model(models_dir, name, graph)


def build_long_model(models_dir: Path, name: str = "long", tile: int = 64, layers: int = 60) -> Path:
    """A job that runs for seconds from a 16 kB input: float32 x [1, 16, 16, 16] tiled to
    [1, 16, 16 * tile, 16 * tile], through ``layers`` 3x3 convolutions, averaged to y [1, 16]. About
    2 s per run with the defaults on the 2-core development machine (more under load)."""
    from onnx import TensorProto, helper, numpy_helper

    channels, side = 16, 16
    repeats = numpy_helper.from_array(np.array([1, 1, tile, tile], dtype=np.int64), "repeats")
    stack, inits = _conv_stack(np.random.default_rng(0), "big", "h", layers, channels)
    nodes = [helper.make_node("Tile", ["x", "repeats"], ["big"]), *stack,
             helper.make_node("ReduceMean", ["h"], ["y"], axes=[2, 3], keepdims=0)]
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, side, side])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels])],
        [repeats, *inits],
    )
    return _save_model(models_dir, name, graph)


class ManualClock:
    """A clock for code that takes one (``clock=``): it reads ``t`` (s), which the test advances."""

    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class FlightdProcess:
    """``flightd`` as a child process with its own data directory; logs go to ``log_path``.
    ``python``: the interpreter that runs it (default: this one; the board install's in
    tests/test_board_install.py)."""

    def __init__(self, broker: str, data_dir: Path, models_dir: Path, sat: str = "sat1",
                 config: Path | None = None, env: dict[str, str] | None = None, log_level: str | None = None,
                 python: str | None = None) -> None:
        self.broker, self.data_dir, self.models_dir, self.sat = broker, data_dir, models_dir, sat
        self.log_level = log_level
        self.config = config
        self.env = env or {}
        self.python = python or sys.executable
        self.log_path = data_dir.parent / f"flightd-{sat}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [self.python, "-m", "flight.cli", "--broker", self.broker, "--sat", self.sat,
                "--data-dir", str(self.data_dir), "--models", str(self.models_dir),
                # ORBITD_TEST_LOG_LEVEL=DEBUG to debug a test
                "--log-level", self.log_level or os.environ.get("ORBITD_TEST_LOG_LEVEL", "INFO")]
        if self.config is not None:
            args += ["--config", str(self.config)]
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, env=env, cwd=REPO)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout_s: float = 30.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)


@contextlib.asynccontextmanager
async def running_flightd(broker: str, data_dir: Path, models_dir: Path, sat: str = "sat1",
                          config: Path | None = None, python: str | None = None) -> AsyncIterator[FlightdProcess]:
    """A :class:`FlightdProcess` started and answering pings on ``broker``; killed on exit."""
    proc = FlightdProcess(broker, data_dir, models_dir, sat=sat, config=config, python=python)
    proc.start()
    try:
        await wait_online(broker, sat=sat, timeout_s=60.0)
        yield proc
    finally:
        proc.stop()


async def wait_online(
    broker: str, sat: str = "sat1", timeout_s: float = 30.0, key_id: str | None = None, key: bytes | None = None
) -> None:
    """Return once flightd answers a ping on ``broker`` (signed with ``key`` when given)."""
    from ground.client import GroundClient, GroundError

    deadline = time.monotonic() + timeout_s
    async with GroundClient(broker, sat, key_id=key_id, key=key, timeout_s=1.0) as ground:
        while True:
            try:
                await ground.ping()
                return
            except GroundError:
                if time.monotonic() > deadline:
                    raise


async def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(poll_s)
