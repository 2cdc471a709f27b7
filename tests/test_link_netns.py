"""The board side in its own network namespace: it starts, is reachable only through its veth pair,
carries the bridged link through the relay, and tears down without leftovers. Needs root and iproute2
(skipped otherwise, with the reason)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.link.netns import NetnsBoard, NetnsError, namespaces
from hil.mosquitto_broker import MosquittoBroker
from link.transport import BrokerUrl, make_client
from tests.test_link_bridge import outage_exactly_once

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="network namespaces need root and iproute2"
)


def link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True, check=False).returncode == 0


@pytest.fixture
def board() -> Iterator[NetnsBoard]:
    with NetnsBoard(f"t{os.getpid() % 10**6}") as b:
        yield b


async def test_namespace_starts_isolated_and_tears_down_cleanly(tmp_path: Path) -> None:
    board = NetnsBoard(f"u{os.getpid() % 10**6}")
    with board:
        assert board.name in namespaces()
        assert link_exists(board.host_if) and not link_exists(board.board_if)  # the board end is inside
        inside = board.run(["ip", "-o", "-4", "addr", "show"]).stdout
        assert board.board_address in inside and board.ground_address not in inside
        # a broker on the board, reached from the ground side over the veth pair
        onboard = MosquittoBroker(tmp_path / "onboard", host=board.board_address, launcher=board.launcher)
        onboard.start()
        proc = onboard.proc
        assert proc is not None
        sub = board.popen(
            ["mosquitto_sub", "-h", board.board_address, "-p", str(onboard.port), "-t", "probe", "-C", "1"],
            stdout=subprocess.PIPE,
        )
        await asyncio.sleep(0.3)
        async with make_client(BrokerUrl(board.board_address, onboard.port)) as client:
            await client.publish("probe", b"over-the-veth", qos=1)
        out, _ = sub.communicate(timeout=5)
        assert out.strip() == b"over-the-veth"
        # the board cannot reach the ground side's loopback: a ground broker there is invisible to it
        ground = MosquittoBroker(tmp_path / "ground")
        ground.start()
        try:
            bypass = board.run(
                ["mosquitto_pub", "-h", board.ground_address, "-p", str(ground.port), "-t", "x", "-m", "1"]
            )
            assert bypass.returncode != 0
        finally:
            ground.stop()
        sleeper = board.popen(["sleep", "300"])
        deadline = time.monotonic() + 5.0  # `ip netns exec` enters the namespace, then execs
        while not set(board.pids()) >= {proc.pid, sleeper.pid} and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert set(board.pids()) >= {proc.pid, sleeper.pid}
    assert board.name not in namespaces()
    assert not link_exists(board.host_if)
    assert sleeper.poll() is not None  # started by the board: terminated and reaped by destroy()
    assert proc.wait(5) is not None  # left in the namespace: killed by destroy(), gone within moments
    board.destroy()  # twice is harmless


def test_namespace_refuses_a_taken_name_and_bad_tags(board: NetnsBoard) -> None:
    with pytest.raises(NetnsError, match="already exists"):
        NetnsBoard(board.tag, index=1).create()
    assert board.name in namespaces()  # the failed twin did not tear down the live one
    with pytest.raises(ValueError):
        NetnsBoard("Bad_Tag")
    with pytest.raises(ValueError):
        NetnsBoard("waytoolongtag")


async def test_qos1_across_the_namespace_arrives_after_aos_exactly_once(board: NetnsBoard, tmp_path: Path) -> None:
    """The loopback outage test with the onboard broker in the namespace: its bridge's only way to the
    ground broker is the relay on the host end of the veth pair."""
    await outage_exactly_once(board, tmp_path)
