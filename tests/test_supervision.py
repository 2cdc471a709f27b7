"""Health table, sd_notify over real AF_UNIX datagram sockets, and the supervisor that joins them."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flight.health import HealthTable, TaskState
from flight.sd_notify import SystemdNotifier, parse_watchdog_s, socket_address
from flight.supervisor import Supervisor
from tests.support import ManualClock


def test_health_states_and_episode_counts() -> None:
    clock = ManualClock(1000.0)
    table = HealthTable(clock)
    table.register("dispatcher", period_s=2.0)
    table.register("link", period_s=10.0, fatal_s=20.0)
    assert table.evaluate().all_ok  # just registered: within the period
    clock.t += 2.5
    report = table.evaluate()
    assert not report.all_ok and [e.name for e in report.late] == ["dispatcher"]
    assert table.entry("dispatcher").state is TaskState.WARN
    clock.t += 1.0
    table.evaluate()  # still late: the same episode, not another warning
    assert table.entry("dispatcher").warn_count == 1
    clock.t += 3.0  # 6.5 s > 3 periods
    report = table.evaluate()
    assert table.entry("dispatcher").state is TaskState.FATAL and table.entry("dispatcher").fatal_count == 1
    assert "dispatcher fatal 6.5 s (period 2 s)" in report.describe_late()
    table.check_in("dispatcher")
    table.check_in("link")
    report = table.evaluate()
    assert report.all_ok and [e.name for e in report.changed] == ["dispatcher"]
    clock.t += 30.0  # both late at once, straight to fatal: the warning is counted too
    table.evaluate()
    assert (table.entry("link").warn_count, table.entry("link").fatal_count) == (1, 1)
    assert (table.entry("dispatcher").warn_count, table.entry("dispatcher").fatal_count) == (2, 2)
    assert table.entry("link").check_ins == 1


def test_health_refuses_bad_entries() -> None:
    table = HealthTable()
    table.register("a", 1.0)
    with pytest.raises(ValueError):
        table.register("a", 1.0)
    with pytest.raises(ValueError):
        table.register("b", 0.0)
    with pytest.raises(ValueError):
        table.register("c", 2.0, fatal_s=1.0)
    with pytest.raises(KeyError):
        table.check_in("never-registered")


def test_watchdog_period_from_the_environment() -> None:
    assert parse_watchdog_s({"WATCHDOG_USEC": "30000000"}, 42) == 30.0
    assert parse_watchdog_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, 42) == 30.0
    assert parse_watchdog_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, 42) is None  # another process's
    assert parse_watchdog_s({"WATCHDOG_USEC": "0"}, 42) is None
    assert parse_watchdog_s({"WATCHDOG_USEC": "soon"}, 42) is None
    assert parse_watchdog_s({}, 42) is None
    assert socket_address("@/org/freedesktop/systemd1/notify") == "\0/org/freedesktop/systemd1/notify"
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("relative/path") is None


@pytest.fixture
def notify_path(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    server.bind(path)
    server.settimeout(2.0)
    try:
        yield server, path
    finally:
        server.close()


def test_notifications_reach_a_path_socket(notify_path: tuple[socket.socket, str]) -> None:
    server, path = notify_path
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"}, pid=os.getpid())
    assert notifier.enabled and notifier.watchdog_s == 4.0
    assert notifier.ready("online, mode NOMINAL")
    assert server.recv(4096) == b"READY=1\nSTATUS=online, mode NOMINAL"
    assert notifier.watchdog()
    assert server.recv(4096) == b"WATCHDOG=1"
    assert notifier.stopping("stopping")
    assert server.recv(4096) == b"STOPPING=1\nSTATUS=stopping"
    notifier.close()


def test_notifications_reach_an_abstract_socket() -> None:
    name = f"orbitd-test-{uuid.uuid4().hex}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind("\0" + name)
    server.settimeout(2.0)
    try:
        notifier = SystemdNotifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.watchdog()
        assert server.recv(4096) == b"WATCHDOG=1"
    finally:
        server.close()


def test_no_socket_no_notifications_and_a_vanished_socket_does_not_raise(tmp_path: Path) -> None:
    quiet = SystemdNotifier({})
    assert not quiet.enabled and not quiet.ready("x") and quiet.watchdog_s is None
    gone = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert gone.enabled and not gone.watchdog()
    assert gone.sent == 0


async def test_supervisor_stops_stroking_while_a_task_is_late(notify_path: tuple[socket.socket, str]) -> None:
    server, path = notify_path
    server.setblocking(False)
    clock = ManualClock(1000.0)
    table = HealthTable(clock)
    table.register("dispatcher", 2.0)
    table.register("journal", 5.0)
    wakes: list[int] = []
    replies: asyncio.Queue[None] = asyncio.Queue()
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "3000000"})
    changes: list[str] = []
    supervisor = Supervisor(table, notifier, lambda: "online",
                            lambda e, _: changes.append(f"{e.name}:{e.state.value}"))
    supervisor.wake_each_tick("dispatcher", lambda: wakes.append(1))
    pings: list[int] = []

    async def journal_ping() -> None:  # answered when the test puts a reply
        pings.append(1)
        await replies.get()

    supervisor.ping_each_tick("journal", journal_ping)
    assert supervisor.tick_s == 1.0

    def received() -> list[bytes]:
        out = []
        while True:
            try:
                out.append(server.recv(4096))
            except BlockingIOError:
                return out

    supervisor.mark_ready()
    assert received() == [b"READY=1\nSTATUS=online"]
    supervisor.tick()
    assert received() == [b"WATCHDOG=1"] and wakes == [1]
    replies.put_nowait(None)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert table.entry("journal").check_ins == 1
    clock.t += 2.5  # the dispatcher did not answer its wake-up
    table.check_in("journal")
    report = supervisor.tick()
    assert [e.name for e in report.late] == ["dispatcher"]
    msgs = received()
    assert b"WATCHDOG=1" not in msgs
    assert msgs == [b"STATUS=online; LATE: dispatcher warn 2.5 s (period 2 s)"]
    assert changes == ["dispatcher:warn"]
    table.check_in("dispatcher")
    supervisor.tick()
    assert received() == [b"WATCHDOG=1", b"STATUS=online"]
    assert changes == ["dispatcher:warn", "dispatcher:ok"]
    assert supervisor.strokes == 2
    clock.t += 6.0  # now the journal's second ping goes unanswered (one outstanding: no third is sent)
    table.check_in("dispatcher")
    supervisor.tick()
    assert b"WATCHDOG=1" not in received()
    assert table.entry("journal").state is TaskState.WARN
    await asyncio.sleep(0)  # let the outstanding ping start
    assert len(pings) == 2
    notifier.close()
