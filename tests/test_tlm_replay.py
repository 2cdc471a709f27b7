"""ground tlm replay: order, relative timing, payload bytes, the replay namespace vs --as-live."""

from __future__ import annotations

import math
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ground.tlm.archive import Archive, topic_row
from ground.tlm.replay import Outgoing, pace, replay
from hil.mosquitto_broker import MosquittoBroker
from link.codec import encode
from link.messages import Event, EventKind, Status, Telemetry
from link.topics import LIVE_ROOT, REPLAY_ROOT, TopicMap

REPO = Path(__file__).resolve().parent.parent


class Listener:
    """A paho subscriber on both roots, noting (arrival perf_counter, topic, payload, qos)."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.got: list[tuple[float, str, bytes, int]] = []
        self.lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port)
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.subscribe([(f"{LIVE_ROOT}/#", 1), (f"{REPLAY_ROOT}/#", 1)])
        self.client.loop_start()
        assert subscribed.wait(5)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.got.append((time.perf_counter(), msg.topic, bytes(msg.payload), msg.qos))

    def wait(self, n: int, timeout_s: float = 20.0) -> list[tuple[float, str, bytes, int]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.got) >= n:
                    break
            time.sleep(0.01)
        time.sleep(0.1)  # anything extra would show up now
        with self.lock:
            return list(self.got)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def listener(mosquitto: MosquittoBroker) -> Iterator[Listener]:
    lis = Listener(mosquitto)
    yield lis
    lis.close()


def build(path: Path, n: int, seed: int = 7) -> list[tuple[float, str, bytes, float | None]]:
    """n messages of sat1 with irregular gaps (1..15 ms): power/thermal telemetry, every 10th a
    status, every 25th an event. Returns (rx_utc, topic, payload, t_s) in order."""
    rng = random.Random(seed)
    tm = TopicMap("sat1")
    rx = 1_750_000_000.0
    out = []
    for i in range(n):
        rx += rng.uniform(0.001, 0.015)
        if i % 25 == 0:
            topic, payload = tm.events, encode(Event(kind=EventKind.MODE, message=f"m{i}", at_utc=rx, t_s=i / 10))
        elif i % 10 == 0:
            topic, payload = tm.status, encode(Status(sat="sat1", state="online", at_utc=rx))
        else:
            ch = "power" if i % 2 else "thermal"
            topic, payload = tm.telemetry(ch), encode(Telemetry(sat="sat1", channel=ch, t_s=i / 10, values={"i": i}))
        out.append((rx, topic, payload, None if "/status" in topic else i / 10))
    with Archive(path, writable=True) as archive:
        archive.append(topic_row(t, p, r, 0) for r, t, p, _ in out)
    return out


def test_replay_keeps_order_bytes_and_relative_timing(
    tmp_path: Path, mosquitto: MosquittoBroker, listener: Listener
) -> None:
    path = tmp_path / "a.db"
    sent = build(path, 150)
    speed = 2.0
    report = replay(path, mosquitto.url, speed=speed)
    got = listener.wait(len(sent))
    assert report.sent == len(got) == len(sent)
    assert [g[2] for g in got] == [s[2] for s in sent]
    assert [g[1] for g in got] == [s[1].replace(LIVE_ROOT, REPLAY_ROOT, 1) for s in sent]
    # QoS follows the link: 0 for telemetry, 1 for status and events
    assert all(g[3] == (0 if "/tlm/" in g[1] else 1) for g in got)
    # arrival times follow the recorded gaps divided by the speed (independent clock: the subscriber's)
    dev_ms = [((g[0] - got[0][0]) - (s[0] - sent[0][0]) / speed) * 1000 for g, s in zip(got, sent, strict=True)]
    assert max(abs(d) for d in dev_ms) < 25.0
    assert sum(abs(d) for d in dev_ms) / len(dev_ms) < 5.0
    duration = (sent[-1][0] - sent[0][0]) / speed
    assert report.duration_s == pytest.approx(duration, abs=0.05)
    assert report.mean_lag_ms is not None and report.mean_lag_ms < 5.0


def test_as_live_cli_rewrites_root_and_sat_and_filters(
    tmp_path: Path, mosquitto: MosquittoBroker, listener: Listener
) -> None:
    path = tmp_path / "a.db"
    sent = build(path, 120)
    proc = subprocess.run(
        [sys.executable, "-m", "ground.tlm.cli", "--broker", mosquitto.url, "tlm", "replay", str(path),
         "--speed", "max", "--as-live", "--sat", "sat9", "--channels", "tlm/power", "events",
         "--from", "2", "--to", "9", "--no-progress", "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    want = [
        (t.replace("/sat1/", "/sat9/"), p)
        for _, t, p, t_s in sent
        if t.endswith(("/tlm/power", "/events")) and t_s is not None and 2 <= t_s <= 9
    ]
    got = listener.wait(len(want))
    assert [(g[1], g[2]) for g in got] == want
    assert all(g[1].startswith(f"{LIVE_ROOT}/sat9/") for g in got)
    assert f'"sent": {len(want)}' in proc.stdout


def test_default_replay_is_invisible_to_live_consumers(
    tmp_path: Path, mosquitto: MosquittoBroker, listener: Listener
) -> None:
    path = tmp_path / "a.db"
    sent = build(path, 200)
    report = replay(path, mosquitto.url, speed=math.inf)
    got = listener.wait(len(sent))
    assert report.sent == len(got) == 200 and report.mean_lag_ms is None
    assert not any(g[1].startswith(LIVE_ROOT + "/") for g in got)
    assert [g[2] for g in got] == [s[2] for s in sent]


def test_pacer_due_times_follow_receive_times() -> None:
    """The pacer on a fake clock: each message is released at start + (rx - rx0) / speed, never early."""
    now = [100.0]
    waits: list[float] = []

    def clock() -> float:
        now[0] += 1e-5  # every reading advances time a little, so spinning terminates
        return now[0]

    def wait(s: float) -> None:
        waits.append(s)
        now[0] += s

    msgs = [Outgoing("t", b"", 0, 1000.0 + x) for x in (0.0, 0.5, 0.5, 2.0)]
    out = list(pace(msgs, 4.0, wait=wait, clock=clock))
    start = out[0][1]
    assert [due - start for _, due in out] == pytest.approx([0.0, 0.125, 0.125, 0.5])
    assert len(waits) == 2  # no sleep for the message due at once
