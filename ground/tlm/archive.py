"""The telemetry archive: every telemetry, status, event, job-state and result message a recorder saw,
indexed by receive time and channel, in one SQLite file in WAL mode (see docs/telemetry-archive.md).

A row keeps the payload bytes exactly as received, so a replay publishes what flew. Times are POSIX
seconds (UTC) for ``rx_utc`` (ground receive time) and ``msg_utc`` (the message's own ``at_utc`` /
``finished_utc``), mission seconds for ``t_s`` (``Telemetry.t_s``, ``Event.t_s``) where present.

Channels: ``tlm/<channel>``, ``status``, ``events``, ``jobs`` (``jobs/<id>/state``), ``results``.

Nothing non-finite is written: a payload whose JSON header holds a non-finite number (NaN, Infinity:
refused on the link, :mod:`link.numbers`) is not archived (:func:`make_row` raises
:class:`Unarchivable`; the recorder counts and reports it), and :meth:`Archive.append` refuses a row
whose time columns are not finite numbers.
Durability: WAL with ``synchronous=NORMAL`` survives a kill -9 of the writer with every committed
batch intact (the WAL lives in the OS page cache); ``synchronous=FULL`` also survives power loss.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from link.codec import peek_header
from link.numbers import first_bad_number
from link.topics import LIVE_ROOT

SCHEMA_VERSION = 1
ROOT_LEVELS = LIVE_ROOT.count("/") + 1
"""Topic levels of a root (``orbitd/v1`` and ``orbitd-replay/v1`` are both two levels)."""

FIXED_CHANNELS = ("status", "events", "jobs", "results")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id       INTEGER PRIMARY KEY,   -- insertion order = receive order
    rx_utc   REAL NOT NULL,         -- ground receive time, POSIX s
    t_s      REAL,                  -- mission time of the message, s (Telemetry/Event t_s)
    msg_utc  REAL,                  -- the message's own UTC time, POSIX s (at_utc, finished_utc)
    root     TEXT NOT NULL,         -- topic root, e.g. orbitd/v1
    sat      TEXT NOT NULL,
    channel  TEXT NOT NULL,         -- tlm/<ch> | status | events | jobs | results
    suffix   TEXT NOT NULL,         -- topic after <root>/<sat>/, e.g. tlm/power, jobs/j1/state
    qos      INTEGER NOT NULL,
    retained INTEGER NOT NULL,      -- 1: delivered from the broker's retained store on subscribe
    truncated INTEGER NOT NULL DEFAULT 0,  -- 1: only the JSON header kept (results --results header)
    payload  BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_channel_rx ON messages (channel, rx_utc);
CREATE INDEX IF NOT EXISTS messages_channel_t ON messages (channel, t_s);
CREATE INDEX IF NOT EXISTS messages_rx ON messages (rx_utc);
"""

_COLUMNS = "id, rx_utc, t_s, msg_utc, root, sat, channel, suffix, qos, retained, truncated, payload"


@dataclass(frozen=True, slots=True)
class Topic:
    """A topic split into ``<root>/<sat>/<suffix>`` and the archive channel it belongs to."""

    root: str
    sat: str
    suffix: str
    channel: str

    @property
    def topic(self) -> str:
        return f"{self.root}/{self.sat}/{self.suffix}"


def classify(topic: str) -> Topic | None:
    """The archive channel of ``topic``, or None for topics the archive does not keep (commands,
    job submissions, model uploads)."""
    parts = topic.split("/")
    if len(parts) < ROOT_LEVELS + 2:
        return None
    root = "/".join(parts[:ROOT_LEVELS])
    sat = parts[ROOT_LEVELS]
    rest = parts[ROOT_LEVELS + 1 :]
    suffix = "/".join(rest)
    if len(rest) == 2 and rest[0] == "tlm":
        return Topic(root, sat, suffix, suffix)
    if len(rest) == 1 and rest[0] in ("status", "events"):
        return Topic(root, sat, suffix, rest[0])
    if len(rest) == 3 and rest[0] == "jobs" and rest[2] == "state":
        return Topic(root, sat, suffix, "jobs")
    if len(rest) == 2 and rest[0] == "results":
        return Topic(root, sat, suffix, "results")
    return None


class Unarchivable(ValueError):
    """A message the archive does not keep because a number in it is not finite; ``str()`` says where."""


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def message_times(payload: bytes) -> tuple[float | None, float | None]:
    """(t_s, msg_utc) read from the payload's JSON header where present; (None, None) otherwise.

    Raises :class:`Unarchivable` when the header holds a non-finite number (anywhere, not only in
    the times)."""
    doc = peek_header(payload)
    if doc is None:
        return None, None
    bad = first_bad_number(doc)
    if bad is not None:
        raise Unarchivable(f"{bad[0]}: {bad[1]}")
    msg_utc = _number(doc.get("at_utc"))
    if msg_utc is None:
        msg_utc = _number(doc.get("finished_utc"))
    return _number(doc.get("t_s")), msg_utc


@dataclass(frozen=True, slots=True)
class Record:
    """One archived message."""

    id: int
    rx_utc: float
    t_s: float | None
    msg_utc: float | None
    root: str
    sat: str
    channel: str
    suffix: str
    qos: int
    retained: bool
    truncated: bool
    payload: bytes

    @property
    def topic(self) -> str:
        return f"{self.root}/{self.sat}/{self.suffix}"


Row = tuple[float, float | None, float | None, str, str, str, str, int, int, int, bytes]
"""(rx_utc, t_s, msg_utc, root, sat, channel, suffix, qos, retained, truncated, payload)."""


def make_row(
    topic: Topic, payload: bytes, rx_utc: float, qos: int = 0, retained: bool = False, truncated: bool = False
) -> Row:
    """The row a received message becomes; :class:`Unarchivable` for a payload or receive time with a
    non-finite number."""
    if not math.isfinite(rx_utc):
        raise Unarchivable(f"receive time {rx_utc} is not a finite number")
    t_s, msg_utc = message_times(payload)
    return (
        rx_utc,
        t_s,
        msg_utc,
        topic.root,
        topic.sat,
        topic.channel,
        topic.suffix,
        qos,
        int(retained),
        int(truncated),
        payload,
    )


def _finite_times(row: Row) -> Row:
    for column, value in (("rx_utc", row[0]), ("t_s", row[1]), ("msg_utc", row[2])):
        if value is not None and not math.isfinite(value):
            raise Unarchivable(f"{column} {value} is not a finite number ({row[6]})")
    return row


def topic_row(topic: str, payload: bytes, rx_utc: float, qos: int = 0, retained: bool = False) -> Row:
    """The row of a message on ``topic`` (a full topic string); ValueError for topics not archived."""
    parsed = classify(topic)
    if parsed is None:
        raise ValueError(f"the archive does not keep topic {topic!r}")
    return make_row(parsed, payload, rx_utc, qos, retained)


def channel_clause(channels: Sequence[str]) -> tuple[str, list[str]]:
    """SQL condition matching any of ``channels``: exact names (``tlm/power``, ``status``), ``tlm`` or
    ``tlm/*`` for every telemetry channel, and a bare telemetry name (``power`` = ``tlm/power``)."""
    terms: list[str] = []
    params: list[str] = []
    for spec in channels:
        if spec in ("tlm", "tlm/*", "tlm/+"):
            terms.append("channel LIKE 'tlm/%'")
        elif spec in FIXED_CHANNELS or spec.startswith("tlm/"):
            terms.append("channel = ?")
            params.append(spec)
        elif "/" not in spec:
            terms.append("channel = ?")
            params.append(f"tlm/{spec}")
        else:
            raise ValueError(f"unknown channel {spec!r}: use tlm/<name>, tlm, {', '.join(FIXED_CHANNELS)}")
    return "(" + " OR ".join(terms) + ")", params


class Archive:
    """A telemetry archive file. ``Archive(path)`` opens an existing archive for reading;
    ``Archive(path, writable=True)`` creates it if needed and allows :meth:`append`.

    Readers and one writer may use the same file at once (WAL).
    """

    def __init__(
        self, path: str | Path, *, writable: bool = False, synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    ) -> None:
        self.path = Path(path)
        if not writable and not self.path.exists():
            raise FileNotFoundError(f"no archive at {self.path}")
        self.writable = writable
        self.db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA busy_timeout = 10000")
        if writable:
            mode = self.db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RuntimeError(f"{self.path}: cannot switch to WAL (journal_mode={mode})")
            self.db.execute(f"PRAGMA synchronous = {synchronous}")
            self.db.executescript(_SCHEMA)
            self.db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        else:
            version = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if version is None or int(version[0]) != SCHEMA_VERSION:
                raise ValueError(f"{self.path}: not an orbitd telemetry archive of schema {SCHEMA_VERSION}")

    # ------------------------------------------------------------------------------------ writing

    def append(self, rows: Iterable[Row]) -> int:
        """Insert ``rows`` in one transaction (committed on return); the number inserted.

        Raises :class:`Unarchivable` (and inserts nothing) when a row's ``rx_utc``, ``t_s`` or
        ``msg_utc`` is not a finite number (SQLite would store NaN as NULL)."""
        if not self.writable:
            raise PermissionError(f"{self.path} is open read-only")
        cur = self.db.cursor()
        cur.execute("BEGIN")
        try:
            cur.executemany(
                "INSERT INTO messages (rx_utc, t_s, msg_utc, root, sat, channel, suffix, qos, retained,"
                " truncated, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (_finite_times(row) for row in rows),
            )
            n = cur.rowcount
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return n

    # ------------------------------------------------------------------------------------ reading

    def _where(
        self,
        channels: Sequence[str] | None,
        sats: Sequence[str] | None,
        t_from: float | None,
        t_to: float | None,
        utc_from: float | None,
        utc_to: float | None,
    ) -> tuple[str, list[object]]:
        terms: list[str] = []
        params: list[object] = []
        if channels:
            clause, cparams = channel_clause(channels)
            terms.append(clause)
            params.extend(cparams)
        if sats:
            terms.append("sat IN (" + ",".join("?" * len(sats)) + ")")
            params.extend(sats)
        for column, op, value in (
            ("t_s", ">=", t_from),
            ("t_s", "<=", t_to),
            ("rx_utc", ">=", utc_from),
            ("rx_utc", "<=", utc_to),
        ):
            if value is not None:
                terms.append(f"{column} {op} ?")
                params.append(value)
        return (" WHERE " + " AND ".join(terms)) if terms else "", params

    def messages(
        self,
        channels: Sequence[str] | None = None,
        *,
        sats: Sequence[str] | None = None,
        t_from: float | None = None,
        t_to: float | None = None,
        utc_from: float | None = None,
        utc_to: float | None = None,
    ) -> Iterator[Record]:
        """Archived messages in receive order, filtered by channel (see :func:`channel_clause`),
        satellite, mission time ``t_s`` (messages without ``t_s`` never match a ``t_*`` bound) and
        receive time ``rx_utc`` (POSIX s). Bounds are inclusive."""
        where, params = self._where(channels, sats, t_from, t_to, utc_from, utc_to)
        cur = self.db.execute(f"SELECT {_COLUMNS} FROM messages{where} ORDER BY id", params)
        for row in cur:
            yield Record(
                row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8],
                bool(row[9]), bool(row[10]), bytes(row[11]),
            )  # fmt: skip

    def count(
        self,
        channels: Sequence[str] | None = None,
        *,
        sats: Sequence[str] | None = None,
        t_from: float | None = None,
        t_to: float | None = None,
        utc_from: float | None = None,
        utc_to: float | None = None,
    ) -> int:
        """How many messages :meth:`messages` would yield with the same filters."""
        where, params = self._where(channels, sats, t_from, t_to, utc_from, utc_to)
        n: int = self.db.execute(f"SELECT COUNT(*) FROM messages{where}", params).fetchone()[0]
        return n

    def channels(self) -> dict[str, int]:
        """Message count per channel."""
        return dict(self.db.execute("SELECT channel, COUNT(*) FROM messages GROUP BY channel ORDER BY channel"))

    def sats(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT sat FROM messages ORDER BY sat")]

    def integrity_ok(self) -> bool:
        return bool(self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
