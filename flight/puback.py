"""QoS 1 publishes followed to their PUBACK without a task, a timer and an event loop round trip each.

``await aiomqtt.Client.publish(..., timeout=10)`` costs a task of the caller's, an ``asyncio.wait_for``
(a second task and a timer) and an ``asyncio.Event`` per message; flightd publishes four QoS 1
messages per job (its queued, running and done states and its result), and that machinery was a
fifth of the event loop's CPU per job (docs/performance.md). :class:`PubackTracker` hands the message
to paho at once (so the order of calls is the order on the wire) and puts a :class:`_Awaited` where
aiomqtt keeps the events of publishes awaiting their PUBACK (``Client._pending_publishes``: aiomqtt's
``on_publish`` calls ``set()`` on it); :meth:`PubackTracker.expire`, called on the control cycle,
fails those older than ``timeout_s``. The same private hook as :func:`link.transport.make_client`'s
``manual_ack`` (aiomqtt 2.x exposes neither).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import aiomqtt
import paho.mqtt.client as mqtt

PUBACK_TIMEOUT_S = 10.0
"""A QoS 1 publish not acknowledged within this (s) counts as failed (as ``timeout=10.0`` did)."""


class _Awaited(asyncio.Event):
    """One publish awaiting its PUBACK; aiomqtt's ``on_publish`` calls :meth:`set`."""

    def __init__(self, tracker: PubackTracker, client: aiomqtt.Client, mid: int, deadline_s: float,
                 on_done: Callable[[bool], None]) -> None:
        super().__init__()
        self.tracker, self.client, self.mid, self.deadline_s, self.on_done = tracker, client, mid, deadline_s, on_done

    def set(self) -> None:
        self.tracker._settle(self, True)


class PubackTracker:
    """Publishes at QoS 1 awaiting their PUBACK, oldest first; ``on_done(ok)`` is called once for each."""

    def __init__(self, timeout_s: float = PUBACK_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._waiting: dict[_Awaited, None] = {}
        self._empty = asyncio.Event()
        self._empty.set()

    def __len__(self) -> int:
        return len(self._waiting)

    def publish(self, client: aiomqtt.Client, topic: str, payload: bytes, retain: bool,
                on_done: Callable[[bool], None]) -> None:
        """Hand a QoS 1 publish to ``client``'s paho now. ``on_done(True)`` once the broker acknowledged
        it; ``on_done(False)`` at once when paho refuses it (no connection), or from :meth:`expire` when
        no PUBACK came in time. ValueError (paho's) for a topic or payload it cannot send."""
        info = client._client.publish(topic, payload, 1, retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            on_done(False)
            return
        if info.is_published():
            on_done(True)
            return
        waiter = _Awaited(self, client, info.mid, time.monotonic() + self.timeout_s, on_done)
        client._pending_publishes[info.mid] = waiter
        self._waiting[waiter] = None
        self._empty.clear()

    def _settle(self, waiter: _Awaited, ok: bool) -> None:
        if self._waiting.pop(waiter, False) is None:  # settled once only
            if not self._waiting:
                self._empty.set()
            waiter.on_done(ok)

    def expire(self, now_s: float | None = None) -> int:
        """Fail the publishes older than ``timeout_s`` at ``now_s`` (``time.monotonic()``); how many."""
        now = time.monotonic() if now_s is None else now_s
        expired = 0
        for waiter in list(self._waiting):
            if waiter.deadline_s > now:
                break
            if waiter.client._pending_publishes.get(waiter.mid) is waiter:  # its message id may be reused
                del waiter.client._pending_publishes[waiter.mid]
            self._settle(waiter, False)
            expired += 1
        return expired

    async def drain(self, timeout_s: float) -> bool:
        """Wait (at most ``timeout_s``) until every publish is settled; False if some are not."""
        with contextlib.suppress(asyncio.TimeoutError):  # not the builtin on Python 3.10
            await asyncio.wait_for(self._empty.wait(), timeout_s)
        return not self._waiting
