"""The job journal: every accepted job and every unacknowledged result, in SQLite (WAL).

A job is committed here before flightd acknowledges it (the ``queued`` state event), and its result is
committed before it is published, so a reset (kill -9, power loss with ``synchronous=FULL``) loses
nothing: on start, jobs found ``running`` are requeued and results not yet acknowledged by the ground
are published again. ``completions`` counts how often a job reached ``done`` (the invariant is <= 1).
Every time written is a finite number (:func:`_finite`): SQLite would store NaN as NULL, and a job
whose deadline became NULL would lose it across a restart.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from link.messages import JobState

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id        TEXT PRIMARY KEY,
    state         TEXT NOT NULL,
    model         TEXT NOT NULL,
    version       TEXT,
    priority      INTEGER NOT NULL,
    deadline_utc  REAL,
    received_utc  REAL NOT NULL,
    updated_utc   REAL NOT NULL,
    attempt       INTEGER NOT NULL DEFAULT 0,
    completions   INTEGER NOT NULL DEFAULT 0,
    reason        TEXT,
    request       BLOB
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE TABLE IF NOT EXISTS sequences (
    sequence_id   TEXT PRIMARY KEY,
    state         TEXT NOT NULL,
    document      TEXT NOT NULL,
    progress      TEXT NOT NULL,
    received_utc  REAL NOT NULL,
    updated_utc   REAL NOT NULL,
    reason        TEXT
);
CREATE TABLE IF NOT EXISTS sequence_firings (
    sequence_id   TEXT NOT NULL REFERENCES sequences(sequence_id) ON DELETE CASCADE,
    entry         TEXT NOT NULL,
    occurrence    INTEGER NOT NULL,
    job_id        TEXT NOT NULL,
    action        TEXT NOT NULL,
    late_s        REAL NOT NULL,
    mission_s     REAL,
    fired_utc     REAL NOT NULL,
    due           TEXT NOT NULL,
    PRIMARY KEY (sequence_id, entry, occurrence)
);
CREATE TABLE IF NOT EXISTS results (
    job_id        TEXT PRIMARY KEY REFERENCES jobs(job_id),
    payload       BLOB NOT NULL,
    created_utc   REAL NOT NULL,
    acked_utc     REAL
);
CREATE TABLE IF NOT EXISTS signing_keys (    -- the key ring: flight.keyring.KeyEntry.to_record as JSON
    fingerprint   TEXT PRIMARY KEY,
    record        TEXT NOT NULL,
    updated_utc   REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS replay_windows (  -- flight.antireplay.ReplayWindow per key (decimal text:
    fingerprint   TEXT PRIMARY KEY,          -- a uint64 sequence number exceeds SQLite's int64)
    top           TEXT NOT NULL,
    seen          TEXT NOT NULL,
    size          INTEGER NOT NULL
) WITHOUT ROWID;                             -- one b-tree: one page more in a job's commit, not two
"""
_MIGRATIONS = (
    ("jobs", "owner", "ALTER TABLE jobs ADD COLUMN owner TEXT"),  # the key name that signed the job
)
"""Columns added after a table first shipped: (table, column, statement), applied when missing."""


@dataclass(frozen=True)
class JobRecord:
    """One row of the journal (without the request bytes, which :meth:`JobJournal.request` reads)."""

    job_id: str
    state: JobState
    model: str
    version: str | None
    priority: int
    deadline_utc: float | None
    received_utc: float
    updated_utc: float
    attempt: int
    completions: int
    reason: str | None


_COLUMNS = (
    "job_id, state, model, version, priority, deadline_utc, received_utc, updated_utc, attempt, completions, reason"
)


def _finite(**times: float | None) -> None:
    """ValueError naming the first of ``times`` (POSIX s) that is given but not a finite number."""
    for name, value in times.items():
        if value is not None and not math.isfinite(value):
            raise ValueError(f"{name} {value} is not a finite number: not written to the journal")


def _record(row: tuple[Any, ...]) -> JobRecord:
    """A row of ``SELECT {_COLUMNS}`` as a record (SQLite gives str, int, float or None)."""
    return JobRecord(
        job_id=str(row[0]),
        state=JobState(str(row[1])),
        model=str(row[2]),
        version=None if row[3] is None else str(row[3]),
        priority=int(row[4]),
        deadline_utc=None if row[5] is None else float(row[5]),
        received_utc=float(row[6]),
        updated_utc=float(row[7]),
        attempt=int(row[8]),
        completions=int(row[9]),
        reason=None if row[10] is None else str(row[10]),
    )


@dataclass(frozen=True)
class SequenceRecord:
    """One stored sequence: its JSON document, the engine's progress (JSON) and its state."""

    sequence_id: str
    state: str
    document: str
    progress: str
    received_utc: float
    updated_utc: float
    reason: str | None


_SEQ_COLUMNS = "sequence_id, state, document, progress, received_utc, updated_utc, reason"


def _sequence_record(row: tuple[Any, ...]) -> SequenceRecord:
    return SequenceRecord(str(row[0]), str(row[1]), str(row[2]), str(row[3]), float(row[4]), float(row[5]),
                          None if row[6] is None else str(row[6]))


class JobJournal:
    """Durable job and result store. Single-threaded use: call it from the event loop thread only."""

    def __init__(self, path: Path, synchronous: str = "FULL", check_same_thread: bool = True) -> None:
        self.path = Path(path)
        self.synchronous = synchronous
        self._sync_now = synchronous
        self._batch_depth = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=check_same_thread)
        # 64 KiB pages (effective for a new file): a 3 MB request blob commits in 7 ms instead of
        # 15 ms with 4 KiB pages on the development machine.
        self._db.execute("PRAGMA page_size=65536")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        for table, column, statement in _MIGRATIONS:
            if column not in {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}:
                self._db.execute(statement)

    def close(self) -> None:
        self._db.close()

    def _set_sync(self, mode: str) -> None:
        if mode != self._sync_now:
            self._db.execute(f"PRAGMA synchronous={mode}")
            self._sync_now = mode

    @contextmanager
    def batch(self, durable: bool = True) -> Iterator[None]:
        """One transaction around several operations (group commit: one fsync for all of them).

        ``durable=False`` commits without waiting for the disk (WAL frames written, not fsynced); the
        change becomes durable with the next durable commit. Use it only where losing the change to
        a power cut is harmless. Operations inside a batch do not commit on their own.
        """
        if self._batch_depth:
            self._batch_depth += 1
            try:
                yield
            finally:
                self._batch_depth -= 1
            return
        self._set_sync(self.synchronous if durable else "OFF")
        self._db.execute("BEGIN IMMEDIATE")
        self._batch_depth = 1
        try:
            yield
        except BaseException:
            self._batch_depth = 0
            self._db.execute("ROLLBACK")
            raise
        self._batch_depth = 0
        self._db.execute("COMMIT")

    @contextmanager
    def _tx(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        with self.batch(durable):
            yield self._db

    # ---------------------------------------------------------------------------------- jobs

    def add(
        self,
        job_id: str,
        model: str,
        version: str | None,
        priority: int,
        deadline_utc: float | None,
        request: bytes,
        now_utc: float,
        state: JobState = JobState.QUEUED,
        reason: str | None = None,
        owner: str | None = None,
    ) -> bool:
        """Insert a new job; False (and nothing written) if ``job_id`` is already journaled.
        ``owner``: the name of the key that signed it (flight.keyring), None when unsigned. ValueError for
        a non-finite time."""
        _finite(deadline_utc=deadline_utc, now_utc=now_utc)
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO jobs (job_id, state, model, version, priority, deadline_utc,"
                " received_utc, updated_utc, reason, request, owner) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (job_id, state.value, model, version, priority, deadline_utc, now_utc, now_utc, reason, request,
                 owner),
            )
            return cur.rowcount == 1

    def get(self, job_id: str) -> JobRecord | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else _record(row)

    def request(self, job_id: str) -> bytes:
        """The job's request payload as received."""
        row = self._db.execute("SELECT request FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None or row[0] is None:
            raise KeyError(job_id)
        return bytes(row[0])

    def jobs(self, states: list[JobState] | None = None, limit: int = 100_000) -> list[JobRecord]:
        """Jobs, oldest first, optionally only in ``states``."""
        if states:
            marks = ",".join("?" for _ in states)
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE state IN ({marks}) ORDER BY received_utc LIMIT ?",
                (*[s.value for s in states], limit),
            ).fetchall()
        else:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM jobs ORDER BY received_utc LIMIT ?", (limit,)
            ).fetchall()
        return [_record(r) for r in rows]

    def set_state(self, job_id: str, state: JobState, now_utc: float, reason: str | None = None) -> JobRecord:
        """Move a job to ``state``; starting it (``running``) counts an attempt.

        ``running`` is committed without waiting for the disk: after a power cut a job found
        ``queued`` runs again exactly as one found ``running`` would (it is requeued at start)."""
        _finite(now_utc=now_utc)
        with self._tx(durable=state is not JobState.RUNNING) as db:
            row = db.execute(
                "UPDATE jobs SET state = ?, updated_utc = ?, reason = ?,"
                " attempt = attempt + (CASE WHEN ? = 'running' THEN 1 ELSE 0 END) WHERE job_id = ?"
                f" RETURNING {_COLUMNS}",
                (state.value, now_utc, reason, state.value, job_id),
            ).fetchone()
        if row is None:
            raise KeyError(job_id)
        return _record(row)

    def complete(self, job_id: str, result: bytes, now_utc: float) -> JobRecord:
        """Store the result and mark the job ``done`` in one transaction."""
        _finite(now_utc=now_utc)
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO results (job_id, payload, created_utc) VALUES (?,?,?)",
                (job_id, result, now_utc),
            )
            row = db.execute(
                "UPDATE jobs SET state = 'done', updated_utc = ?, reason = NULL, completions = completions + 1,"
                f" request = NULL WHERE job_id = ? RETURNING {_COLUMNS}",
                (now_utc, job_id),
            ).fetchone()
        if row is None:
            raise KeyError(job_id)
        return _record(row)

    def requeue_running(self, now_utc: float, reason: str) -> list[str]:
        """Jobs left ``running`` by a reset go back to ``queued``; returns their ids."""
        _finite(now_utc=now_utc)
        with self._tx() as db:
            ids = [r[0] for r in db.execute("SELECT job_id FROM jobs WHERE state = 'running'").fetchall()]
            db.execute(
                "UPDATE jobs SET state = 'queued', updated_utc = ?, reason = ? WHERE state = 'running'",
                (now_utc, reason),
            )
        return ids

    # ------------------------------------------------------------------------------- results

    def result(self, job_id: str) -> bytes | None:
        row = self._db.execute("SELECT payload FROM results WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else bytes(row[0])

    def unacked_results(self) -> list[str]:
        rows = self._db.execute("SELECT job_id FROM results WHERE acked_utc IS NULL ORDER BY created_utc")
        return [r[0] for r in rows.fetchall()]

    def ack_result(self, job_id: str, now_utc: float) -> bool:
        """The ground holds the result: drop its bytes. False if there was no unacked result."""
        _finite(now_utc=now_utc)
        with self._tx() as db:
            cur = db.execute(
                "UPDATE results SET acked_utc = ?, payload = x'' WHERE job_id = ? AND acked_utc IS NULL",
                (now_utc, job_id),
            )
            return cur.rowcount == 1

    def purge(self, older_than_utc: float) -> list[str]:
        """Forget terminal jobs (and their results, acked or expired) last updated before the cutoff."""
        with self._tx() as db:
            ids = [
                r[0]
                for r in db.execute(
                    "SELECT job_id FROM jobs WHERE state NOT IN ('queued', 'running') AND updated_utc < ?",
                    (older_than_utc,),
                ).fetchall()
            ]
            db.executemany("DELETE FROM results WHERE job_id = ?", [(i,) for i in ids])
            db.executemany("DELETE FROM jobs WHERE job_id = ?", [(i,) for i in ids])
        return ids

    # ----------------------------------------------------------------------------- sequences

    def add_sequence(self, sequence_id: str, document: str, progress: str, now_utc: float) -> bool:
        """Store a new armed sequence (its JSON ``document`` and engine ``progress``); False (nothing
        written) when ``sequence_id`` is onboard already."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO sequences (sequence_id, state, document, progress, received_utc, updated_utc)"
                " VALUES (?, 'armed', ?, ?, ?, ?)",
                (sequence_id, document, progress, now_utc, now_utc),
            )
            return cur.rowcount == 1

    def save_sequence(self, sequence_id: str, state: str, progress: str, now_utc: float,
                      reason: str | None = None, firings: Sequence[tuple[Any, ...]] = ()) -> None:
        """Record a sequence's state and progress, and its new ``firings`` (entry, occurrence,
        job_id, action, late_s, mission_s, due), in one transaction."""
        with self._tx() as db:
            db.execute(
                "UPDATE sequences SET state = ?, progress = ?, updated_utc = ?, reason = COALESCE(?, reason)"
                " WHERE sequence_id = ?",
                (state, progress, now_utc, reason, sequence_id),
            )
            db.executemany(
                "INSERT OR IGNORE INTO sequence_firings (sequence_id, entry, occurrence, job_id, action, late_s,"
                " mission_s, due, fired_utc) VALUES (?,?,?,?,?,?,?,?,?)",
                [(sequence_id, *f, now_utc) for f in firings],
            )

    def sequences(self, states: list[str] | None = None) -> list[SequenceRecord]:
        """Stored sequences, oldest first, optionally only in ``states``."""
        query = f"SELECT {_SEQ_COLUMNS} FROM sequences"
        args: tuple[Any, ...] = ()
        if states:
            query += f" WHERE state IN ({','.join('?' for _ in states)})"
            args = tuple(states)
        return [_sequence_record(r) for r in self._db.execute(query + " ORDER BY received_utc", args).fetchall()]

    def get_sequence(self, sequence_id: str) -> SequenceRecord | None:
        row = self._db.execute(f"SELECT {_SEQ_COLUMNS} FROM sequences WHERE sequence_id = ?", (sequence_id,)).fetchone()
        return None if row is None else _sequence_record(row)

    def sequence_firings(self, sequence_id: str) -> list[dict[str, Any]]:
        """The sequence's firings in the order they happened."""
        rows = self._db.execute(
            "SELECT entry, occurrence, job_id, action, late_s, mission_s, due, fired_utc FROM sequence_firings"
            " WHERE sequence_id = ? ORDER BY fired_utc, rowid", (sequence_id,)
        ).fetchall()
        keys = ("entry", "occurrence", "job_id", "action", "late_s", "mission_s", "due", "fired_utc")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        return {str(s): int(n) for s, n in rows}

    # ------------------------------------------------------------------------------- security

    def owner(self, job_id: str) -> str | None:
        """The name of the key that signed job ``job_id`` (None: unknown job, or submitted unsigned)."""
        row = self._db.execute("SELECT owner FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def save_keys(self, records: Mapping[str, Mapping[str, Any]], now_utc: float) -> None:
        """Insert or replace key ring entries (fingerprint -> plain record) in one transaction."""
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO signing_keys (fingerprint, record, updated_utc) VALUES (?, ?, ?)",
                [(fp, json.dumps(dict(r), sort_keys=True), now_utc) for fp, r in records.items()],
            )

    def keys(self) -> dict[str, dict[str, Any]]:
        """The persisted key ring: fingerprint -> record."""
        rows = self._db.execute("SELECT fingerprint, record FROM signing_keys").fetchall()
        return {str(fp): json.loads(record) for fp, record in rows}

    def save_window(self, fingerprint: str, record: Mapping[str, Any], durable: bool = True) -> None:
        """Persist one key's anti-replay window (``ReplayWindow.to_record``). ``durable=False`` only
        where acting on a replay after a power cut would be harmless (read-only requests)."""
        with self._tx(durable) as db:
            db.execute(
                "INSERT OR REPLACE INTO replay_windows (fingerprint, top, seen, size) VALUES (?, ?, ?, ?)",
                (fingerprint, str(record["top"]), str(record["seen"]), int(record["size"])),
            )

    def windows(self) -> dict[str, dict[str, Any]]:
        """Every key's persisted anti-replay window: fingerprint -> record."""
        rows = self._db.execute("SELECT fingerprint, top, seen, size FROM replay_windows").fetchall()
        return {str(fp): {"top": str(top), "seen": str(seen), "size": int(size)} for fp, top, seen, size in rows}
