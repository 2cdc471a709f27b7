"""The emulated Raspberry Pi's run: flightd from its board install inside a Debian bookworm arm64 root
(qemu-user), a Mosquitto on this host, the ground client here (scripts/pi-emulated.sh builds the root,
installs orbitd into it and calls this).

``python -m hil.emulated_pi --root ROOT [--json]``:

1. lays out an **emulated** Raspberry Pi 4's /sys, /proc and /etc for flightd's board probes at
   ``ROOT/opt/pi-board`` (:func:`lay_out_pi_tree`): the device-tree model, the SoC's ``cpu-thermal``
   zone (a fixed temperature this script writes: qemu-user has no sensor), the firmware's
   ``get_throttled`` word (written by this script to show the flags), one cpufreq policy for the four
   cores (writable files: a ceiling lands in the tree, nothing slows down), and ``/proc/stat`` as a
   link to the emulated system's own (under qemu-user: this host kernel's CPUs). Every file says it is
   emulated (the model string, ``EMULATED.txt``);
2. starts Mosquitto on a free loopback port, and flightd in the root (``chroot``; the root shares this
   host's network, so loopback reaches the broker) with the governor on (``PI_CONFIG``): the board's
   temperature stands in for the board ceiling's sensor, the throttle and under-voltage flags are soft
   limits, the cpufreq ceiling follows the mode;
3. measures the time from launch to the first answered ping, reads the status (what flightd found),
   the ``board`` channel, runs a job on the bundled INT8 tile model and compares its output with this
   host's ONNX Runtime, then sets the under-voltage and throttled bits and waits for THROTTLED and the
   lowered ceiling, clears them and waits for NOMINAL and the released ceiling;
4. prints a report (JSON with ``--json``) and stops flightd with SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ground.client import GroundClient, GroundError
from hil.mosquitto_broker import MosquittoBroker
from link.codec import decode
from link.messages import Mode, Status, Telemetry
from link.telemetry import BOARD

TREE = "/opt/pi-board"
"""Where the emulated Pi's /sys, /proc and /etc lie inside the root (flightd's ``board.root``)."""
VENV = "/opt/orbitd/venv"
MODELS = "/opt/orbitd/models"
CONFIG = "/opt/orbitd/flightd.toml"
MODEL_STRING = "Raspberry Pi 4 Model B Rev 1.4 (emulated: qemu-user, files by scripts/pi-emulated.sh)"
SOC_MILLI_C = 47236
"""The emulated SoC temperature (m°C): a fixed value; qemu-user has no sensor to read."""
POLICY = "sys/devices/system/cpu/cpufreq/policy0"
THROTTLED_FILE = "sys/devices/platform/soc/soc:firmware/get_throttled"
PI4_KHZ = (600000, 1800000)
"""The Raspberry Pi 4's cpufreq range (BCM2711 at 600 MHz..1.8 GHz, firmware 2020+), kHz."""

PI_CONFIG = f"""\
# flightd on the emulated Raspberry Pi (hil/emulated_pi.py): a board with no spacecraft around it.
[board]
root = "{TREE}"
period_s = 1.0

[governor]
telemetry_period_s = 1.0
stale_periods = 5.0                # qemu-user is slow: a sample may come late
required_channels = ["board"]
mode_min_dwell_s = 0.0
safe_min_dwell_s = 0.0

[[governor.limits]]
name = "board_ceiling"             # the Raspberry Pi's 85 °C hard limit, on the board's own sensor
channel = "thermal"
key = "board_c"
kind = "ceiling"
threshold = 85.0
hysteresis = 5.0
debounce = 3

[governor.board_inputs]
temperature_as_board_c = true
throttled = "soft"
under_voltage = "soft"

[governor.actuators]
frequency_ceiling = true
throttled_frequency_fraction = 0.5
"""


def _write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _symlink(link: Path, target: str) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)


def lay_out_pi_tree(tree: Path) -> Path:
    """The emulated Pi 4's files under ``tree`` (see the module docstring); rewritten on every run."""
    _write(tree, "EMULATED.txt", "Files laid out as on a Raspberry Pi 4 (Raspberry Pi OS bookworm) by "
           "scripts/pi-emulated.sh for flightd's board probes under qemu-user. Nothing here is a real "
           "sensor: the temperature is fixed, get_throttled is written by the script, cpufreq writes "
           "change nothing; proc/stat links to the emulated system's own.\n")
    _write(tree, "sys/firmware/devicetree/base/model", MODEL_STRING + "\x00")
    _symlink(tree / "proc/device-tree", "../sys/firmware/devicetree/base")
    _symlink(tree / "proc/stat", "/proc/stat")  # inside the root: the emulated system's /proc
    zone = "sys/devices/virtual/thermal/thermal_zone0"
    _write(tree, f"{zone}/type", "cpu-thermal\n")
    _write(tree, f"{zone}/temp", f"{SOC_MILLI_C}\n")
    _symlink(tree / "sys/class/thermal/thermal_zone0", f"../../{zone.removeprefix('sys/')}")
    _write(tree, THROTTLED_FILE, "0\n")
    low, high = PI4_KHZ
    for name, value in {"affected_cpus": "0 1 2 3", "related_cpus": "0 1 2 3", "cpuinfo_min_freq": low,
                        "cpuinfo_max_freq": high, "scaling_min_freq": low, "scaling_max_freq": high,
                        "scaling_cur_freq": high}.items():
        _write(tree, f"{POLICY}/{name}", f"{value}\n")
    return tree


def _ceiling(tree: Path) -> int:
    return int((tree / POLICY / "scaling_max_freq").read_text())


async def _until(what: str, timeout_s: float, check: Any) -> float:
    """Seconds until ``await check()`` is true; TimeoutError naming ``what``."""
    t0 = time.monotonic()
    while not await check():
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(0.25)
    return time.monotonic() - t0


async def drive(url: str, tree: Path, flightd: subprocess.Popen[bytes], launched: float,
                host_models: Path) -> dict[str, Any]:
    """The checks of the module docstring, against a flightd that was launched at ``launched``."""
    out: dict[str, Any] = {}
    async with GroundClient(url, "pi1", timeout_s=5.0) as ground:
        while True:
            try:
                await ground.ping()
                break
            except GroundError:
                if flightd.poll() is not None:
                    raise RuntimeError(f"flightd exited with {flightd.returncode}") from None
                if time.monotonic() - launched > 900:
                    raise
        out["time_to_ready_s"] = round(time.monotonic() - launched, 1)
        status: Status = await ground.status()
        assert status.board is not None
        out["status"] = {"board": status.board.model_dump(), "providers": status.providers,
                         "mode": str(status.mode)}
        board = await ground.watch_topic(ground.topics.telemetry(BOARD))
        _, payload = await asyncio.wait_for(board.get(), 30)
        out["board_sample"] = decode(payload, Telemetry).message.values

        tiles = np.random.default_rng(11).random((4, 3, 128, 128), dtype=np.float32)
        job = await ground.submit("tile-int8", {"tile": tiles}, ack_timeout_s=60.0)
        fetched = await ground.wait_result(job.job_id, timeout_s=300)
        import onnxruntime as ort  # the host's ONNX Runtime, x86-64: the reference

        session = ort.InferenceSession(str(host_models / "tile-int8/1.0.0/model.onnx"))
        reference = np.asarray(session.run(None, {"tile": tiles})[0])
        got = fetched.outputs["keep_logit"]
        out["job"] = {"job_id": job.job_id, "run_ms": round(fetched.result.run_ms, 1),
                      "provider": fetched.result.provider, "keep_logit": [round(float(v), 4) for v in got.ravel()],
                      "max_abs_diff_vs_host_x86": float(np.max(np.abs(got - reference))),
                      "energy_j": fetched.result.energy_j, "energy_source": fetched.result.energy_source}

        flags = tree / THROTTLED_FILE
        flags.write_text("50005\n")  # under-voltage now + throttled now (and both since boot)

        async def throttled() -> bool:
            return (await ground.status()).mode is Mode.THROTTLED and _ceiling(tree) < PI4_KHZ[1]

        out["throttle"] = {"get_throttled": "0x50005", "to_throttled_s": round(await _until("THROTTLED", 60,
                                                                                           throttled), 1),
                           "ceiling_khz": _ceiling(tree)}
        flags.write_text("50000\n")  # the since-boot bits stay, nothing now

        async def nominal() -> bool:
            return (await ground.status()).mode is Mode.NOMINAL and _ceiling(tree) == PI4_KHZ[1]

        out["throttle"]["cleared_to_nominal_s"] = round(await _until("NOMINAL", 60, nominal), 1)
        out["throttle"]["ceiling_after_khz"] = _ceiling(tree)
    return out


def run(root: Path, workdir: Path, host_models: Path) -> dict[str, Any]:
    tree = lay_out_pi_tree(root / TREE.lstrip("/"))
    _write(root, CONFIG.lstrip("/"), PI_CONFIG)
    broker = MosquittoBroker(workdir / "mosquitto")
    broker.start()
    log_path = workdir / "flightd.log"
    argv = ["chroot", str(root), "/usr/bin/env", "-i", "PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/root",
            "PYTHONUNBUFFERED=1", f"{VENV}/bin/flightd", "--broker", broker.url, "--sat", "pi1",
            "--data-dir", "/var/lib/orbitd/flightd", "--models", MODELS, "--config", CONFIG]
    launched = time.monotonic()
    with log_path.open("wb") as log:
        flightd = subprocess.Popen(argv, stdout=log, stderr=log)
    try:
        report = asyncio.run(drive(broker.url, tree, flightd, launched, host_models))
    finally:
        if flightd.poll() is None:
            flightd.send_signal(signal.SIGTERM)
            try:
                flightd.wait(120)
            except subprocess.TimeoutExpired:
                flightd.kill()
                flightd.wait(10)
        broker.stop()
    text = log_path.read_text(errors="replace")
    started = re.search(r"flightd \S+ \(python (\S+)\)", text)
    report.update({
        "flightd_exit": flightd.returncode,
        "flightd_python": started.group(1) if started else None,
        "flightd_board_log": [line.split("flightd: ", 1)[-1] for line in text.splitlines()
                              if "flightd: board:" in line],
        "host": {"machine": platform.machine(), "kernel": platform.release()},
        "log": str(log_path),
    })
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hil.emulated_pi", description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, required=True, help="the arm64 root (scripts/pi-emulated.sh)")
    p.add_argument("--workdir", type=Path, help="broker config and flightd's log (default: a temporary directory)")
    p.add_argument("--models", type=Path, default=Path(__file__).resolve().parent.parent / "models",
                   help="this host's copy of the bundled models (the reference run)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("hil.emulated_pi: chroot needs root", file=sys.stderr)
        return 2
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="orbitd-pi-"))
    workdir.mkdir(parents=True, exist_ok=True)
    report = run(args.root.resolve(), workdir, args.models)
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    return 0 if report["flightd_exit"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
