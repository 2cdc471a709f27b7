"""Telemetry archive benchmark: replay throughput, replay slip at 10x, recorder throughput.

``python -m bench.replay --json`` prints one JSON object:

- ``max_msgs_per_s``: an archive of ``--n`` (50,000) synthetic ~200 B power-telemetry messages replayed
  at max speed through a loopback Mosquitto; messages a separate subscriber process (mosquitto_sub)
  received, divided by the time from the replay's start to the last one's arrival.
- ``mean_slip_ms_10x`` (and ``max_slip_ms_10x``, ``late_10x``): a 100 Hz recording of 30 s replayed
  at 10x (1 kHz); lag of each publish behind its due time, from the replay's slip report.
- ``record_msgs_per_s``: a burst of ``--record-n`` messages published (QoS 0) to a recorder running as
  its own process (``python -m ground.tlm.cli ... tlm record``); messages committed to the archive
  divided by the time from the first publish until the archive held them all.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from ground.tlm.archive import Archive, topic_row
from ground.tlm.replay import replay
from hil.mosquitto_broker import MosquittoBroker
from link.codec import encode
from link.messages import Telemetry
from link.telemetry import BATTERY_A, BATTERY_V, BATTERY_WH, BUS_W, COMPUTE_W, LOAD_W, POWER, SOC, SOLAR_W, SUNLIT
from link.topics import REPLAY_ROOT, TopicMap


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def synthetic_payload(i: int, sat: str = "bench1", period_s: float = 0.01) -> bytes:
    """A ~200 B power telemetry message."""
    return encode(
        Telemetry(
            sat=sat,
            channel=POWER,
            t_s=round(i * period_s, 3),
            values={
                SOC: 0.8123,
                BATTERY_V: 27.91,
                BATTERY_A: -3.42,
                BATTERY_WH: 812.3,
                SOLAR_W: 412.7,
                LOAD_W: 318.2,
                BUS_W: 120.0,
                COMPUTE_W: 198.2,
                SUNLIT: 1.0,
            },
        )
    )


def fill(path: Path, n: int, rate_hz: float, sat: str = "bench1") -> None:
    topic = TopicMap(sat).telemetry(POWER)
    t0 = time.time() - 3600
    with Archive(path, writable=True) as archive:
        archive.append(topic_row(topic, synthetic_payload(i, sat, 1 / rate_hz), t0 + i / rate_hz, 0) for i in range(n))


def subscriber(broker: MosquittoBroker, count: int, out: Path) -> subprocess.Popen[bytes]:
    """mosquitto_sub on the replay root and a probe topic, exiting after ``count`` + 1 messages;
    returns once it has received the probe (so it is subscribed)."""
    proc = subprocess.Popen(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "0", "-C", str(count + 1),
         "-t", f"{REPLAY_ROOT}/#", "-t", "bench/probe"],
        stdout=out.open("wb"),
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    probe = paho.Client(CallbackAPIVersion.VERSION2)
    probe.connect("127.0.0.1", broker.port)
    deadline = time.monotonic() + 10
    while out.stat().st_size == 0:
        if time.monotonic() > deadline:
            raise TimeoutError("mosquitto_sub never received the probe")
        probe.publish("bench/probe", b"probe")
        probe.loop(0.05)
    probe.disconnect()
    return proc


def bench_max(broker: MosquittoBroker, work: Path, n: int) -> dict[str, Any]:
    path = work / "max.db"
    fill(path, n, 100.0)
    out = work / "sub.out"
    proc = subscriber(broker, n, out)
    start = time.perf_counter()
    report = replay(path, broker.url, speed=float("inf"))
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    elapsed = time.perf_counter() - start
    received = out.read_bytes().count(b"\n") - 1
    log(
        f"max: sent {report.sent} ({report.msgs_per_s:,.0f} msg/s publish side), received {received} in {elapsed:.2f} s"
    )
    return {
        "max_msgs_per_s": round(received / elapsed),
        "max_publish_msgs_per_s": round(report.msgs_per_s),
        "max_sent": report.sent,
        "max_received": received,
    }


def bench_10x(broker: MosquittoBroker, work: Path, seconds: float = 30.0, rate_hz: float = 100.0) -> dict[str, Any]:
    path = work / "slip.db"
    n = int(seconds * rate_hz)
    fill(path, n, rate_hz)
    out = work / "sub10.out"
    proc = subscriber(broker, n, out)
    report = replay(path, broker.url, speed=10.0)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    received = out.read_bytes().count(b"\n") - 1
    log(f"10x: {report.summary()}; received {received}")
    return {
        "mean_slip_ms_10x": round(report.mean_lag_ms or 0.0, 4),
        "max_slip_ms_10x": round(report.max_lag_ms or 0.0, 4),
        "late_10x": report.late,
        "sent_10x": report.sent,
        "received_10x": received,
    }


def bench_record(broker: MosquittoBroker, work: Path, n: int) -> dict[str, Any]:
    path = work / "rec.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ground.tlm.cli", "--broker", broker.url, "--sat", "bench1",
         "tlm", "record", "--out", str(path)],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        proc.stderr.readline()  # "recording ..." once subscribed
        payloads = [synthetic_payload(i) for i in range(n)]
        topic = TopicMap("bench1").telemetry(POWER)
        client = paho.Client(CallbackAPIVersion.VERSION2)
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        archive = Archive(path)
        start = time.perf_counter()
        for payload in payloads:
            client.publish(topic, payload, qos=0)
        published = time.perf_counter()
        count = 0
        deadline = start + 60
        while time.perf_counter() < deadline:
            count = archive.count()
            if count >= n:
                break
            time.sleep(0.005)
        elapsed = time.perf_counter() - start
        archive.close()
        client.loop_stop()
        client.disconnect()
    finally:
        proc.terminate()
        proc.wait(10)
    log(f"record: {count}/{n} committed in {elapsed:.2f} s (publish took {published - start:.2f} s)")
    return {"record_msgs_per_s": round(count / elapsed), "record_committed": count, "record_n": n}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--n", type=int, default=50_000, help="messages replayed at max speed")
    parser.add_argument("--record-n", type=int, default=20_000, help="messages in the recorder burst")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        work = Path(tmp)
        with MosquittoBroker(work / "mosquitto") as broker:
            result.update(bench_max(broker, work, args.n))
            result.update(bench_10x(broker, work))
            result.update(bench_record(broker, work, args.record_n))
    result["payload_bytes"] = len(synthetic_payload(0))
    result["ok"] = result["max_msgs_per_s"] >= 10_000 and result["mean_slip_ms_10x"] <= 5.0
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
