"""What the space segment does to a byte stream: rate, loss bursts and TCP's recovery from them.

Pure: times in, times out (mission seconds, the link's clock); no sockets. The relay
(:mod:`hil.link.relay`) applies it to real connections. What "loss" means there (docs/hil.md): MQTT
runs over TCP, so a lost segment is retransmitted and the application sees its bytes late, in order,
never missing; only when TCP gives up (or the contact ends) is the connection cut. So a loss burst is
modelled as the time TCP needs to get through it, not as dropped bytes:

* Loss bursts follow a two-state (Gilbert-Elliott) channel in continuous time: good periods and bad
  periods with exponential durations (means ``mean_gap_s`` and ``mean_burst_s``); in a bad period every
  segment is lost (Gilbert 1960, Elliott 1963).
* A segment first sent at t inside a burst is retransmitted after RTO, then 2 RTO, 4 RTO, ... (RFC 6298
  section 5, exponential backoff), each interval capped at ``rto_max_s``; it gets through at the first
  attempt outside every burst. RTO = RTT + ``rto_min_s`` (Linux: srtt + max(4 rttvar, TCP_RTO_MIN),
  TCP_RTO_MIN = 200 ms, TCP_RTO_MAX = 120 s, include/net/tcp.h). After ``retries`` failed
  retransmissions (Linux net.ipv4.tcp_retries2 = 15, about 15 min at RTO_MIN) TCP gives up and the
  connection is cut.
* Rate: a token bucket of ``rate`` bytes/s and ``depth`` bytes. With a depth of one packet it is a
  radio link's serialiser: bytes leave no faster than the rate, with no burst allowance.
"""

from __future__ import annotations

import bisect
import enum
import math
from dataclasses import dataclass, field

import numpy as np


class Direction(enum.Enum):
    """Uplink: ground -> satellite; downlink: satellite -> ground."""

    UP = "up"
    DOWN = "down"


@dataclass(frozen=True)
class TcpRecovery:
    """TCP retransmission on the space segment (Linux defaults; see the module docstring)."""

    rto_min_s: float = 0.2
    rto_max_s: float = 120.0
    retries: int = 15

    def first_rto_s(self, rtt_s: float) -> float:
        """The retransmission timeout of a connection with a steady round-trip time ``rtt_s``, s."""
        return rtt_s + self.rto_min_s


@dataclass(frozen=True)
class LossBursts:
    """Intervals [start, end) (mission s, sorted, disjoint) in which every segment is lost."""

    bursts: tuple[tuple[float, float], ...] = ()
    _starts: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for (a, b), (c, _) in zip(self.bursts, self.bursts[1:], strict=False):
            if not a < b <= c:
                raise ValueError(f"loss bursts must be sorted, disjoint and non-empty: {self.bursts}")
        if self.bursts and not self.bursts[-1][0] < self.bursts[-1][1]:
            raise ValueError(f"empty loss burst {self.bursts[-1]}")
        object.__setattr__(self, "_starts", tuple(a for a, _ in self.bursts))

    @classmethod
    def gilbert_elliott(
        cls, mean_gap_s: float, mean_burst_s: float, start_s: float, end_s: float, seed: int
    ) -> LossBursts:
        """A random schedule over [start_s, end_s): exponential good periods (mean ``mean_gap_s``)
        alternating with exponential bursts (mean ``mean_burst_s``), starting good. Deterministic in
        ``seed``. ``mean_gap_s`` = inf gives no bursts."""
        if mean_burst_s <= 0 or mean_gap_s <= 0:
            raise ValueError("mean gap and mean burst durations must be > 0")
        if math.isinf(mean_gap_s):
            return cls()
        rng = np.random.default_rng(seed)
        out: list[tuple[float, float]] = []
        t = start_s
        while True:
            t += float(rng.exponential(mean_gap_s))
            if t >= end_s:
                return cls(tuple(out))
            b = min(t + float(rng.exponential(mean_burst_s)), end_s)
            if b > t:
                out.append((t, b))
            t = b

    def holding(self, t_s: float) -> tuple[float, float] | None:
        """The burst that holds ``t_s``, or None."""
        i = bisect.bisect_right(self._starts, t_s) - 1
        if i >= 0 and t_s < self.bursts[i][1]:
            return self.bursts[i]
        return None

    def through(self, t_s: float, rto_s: float, tcp: TcpRecovery) -> Recovery:
        """When a segment first sent at ``t_s`` gets through: ``t_s`` itself outside a burst, else the
        first retransmission (backoff from ``rto_s``) outside every burst; or when TCP gives up on it
        (its last retransmission timeout expired)."""
        attempt, rto = t_s, rto_s
        for _ in range(tcp.retries + 1):
            if self.holding(attempt) is None:
                return Recovery(attempt, True)
            attempt += rto
            rto = min(2.0 * rto, tcp.rto_max_s)
        return Recovery(attempt, False)


@dataclass(frozen=True)
class Recovery:
    """A segment's fate: it gets through at ``t_s`` (``delivered``), or TCP gives up at ``t_s``."""

    t_s: float
    delivered: bool


class TokenBucket:
    """Rate limit in the link's time: ``rate_bytes_s`` (None: unlimited), ``depth_bytes`` of burst.

    ``reserve(n, now)`` takes n bytes offered at ``now`` (s, non-decreasing across calls) and returns when
    their last byte has left. The bucket may go into debt: later bytes wait until it is repaid, so a
    stream offered faster than the rate leaves at exactly the rate.
    """

    def __init__(self, rate_bytes_s: float | None, depth_bytes: float = 1500.0) -> None:
        if rate_bytes_s is not None and rate_bytes_s <= 0:
            raise ValueError(f"rate {rate_bytes_s} bytes/s must be > 0")
        if depth_bytes < 0:
            raise ValueError(f"bucket depth {depth_bytes} bytes must be >= 0")
        self.rate_bytes_s = rate_bytes_s
        self.depth_bytes = depth_bytes
        self._tokens = depth_bytes
        self._t: float | None = None

    def reserve(self, n_bytes: int, now_s: float) -> float:
        if self.rate_bytes_s is None:
            return now_s
        if self._t is None or now_s > self._t:
            elapsed = 0.0 if self._t is None else now_s - self._t
            self._tokens = min(self.depth_bytes, self._tokens + elapsed * self.rate_bytes_s)
            self._t = now_s
        self._tokens -= n_bytes
        if self._tokens >= 0:
            return self._t
        return self._t + (-self._tokens) / self.rate_bytes_s


@dataclass(frozen=True)
class LinkParams:
    """The link between the contact windows' edges: rates (bytes/s of TCP payload, None = unlimited),
    loss bursts, TCP's recovery and the token bucket's depth (bytes)."""

    up_bytes_s: float | None = None
    down_bytes_s: float | None = None
    loss: LossBursts = field(default_factory=LossBursts)
    tcp: TcpRecovery = field(default_factory=TcpRecovery)
    bucket_depth_bytes: float = 1500.0

    def rate(self, direction: Direction) -> float | None:
        return self.up_bytes_s if direction is Direction.UP else self.down_bytes_s


def arrival_s(
    sent_s: float, one_way_delay_s: float, loss: LossBursts, tcp: TcpRecovery, previous_s: float = -math.inf
) -> Recovery:
    """When bytes whose transmission ended at ``sent_s`` reach the far end: recovered through the loss
    bursts, plus the one-way delay, never before ``previous_s`` (TCP delivers in order); or when TCP
    gives up on them (``delivered`` False)."""
    got = loss.through(sent_s, tcp.first_rto_s(2.0 * one_way_delay_s), tcp)
    if not got.delivered:
        return got
    return Recovery(max(got.t_s + one_way_delay_s, previous_s), True)
