"""The job journal: every accepted job and every unacknowledged result, in SQLite (WAL).

A job is committed here before flightd acknowledges it (the ``queued`` state event), and its result is
committed before it is published, so a reset (kill -9, power loss with ``synchronous=FULL``) loses
nothing: on start, jobs found ``running`` are requeued and results not yet acknowledged by the ground
are published again. ``completions`` counts how often a job reached ``done`` (the invariant is <= 1).
Every time written is a finite number (:func:`_finite`): SQLite would store NaN as NULL, and a job
whose deadline became NULL would lose it across a restart.

Every stored request and result carries its sha256 (:func:`payload_digest`, columns ``request_sha256``
and ``payload_sha256``), checked whenever it is read back: a blob the disk or memory corrupted raises
:class:`StoredCorruption` instead of being returned (docs/radiation.md, "Storage"). A job's request is
kept until the ground acknowledges its result, so that flightd can compute a result again (a stored
result that fails its checksum, a job run on weights found corrupt afterwards); the acknowledgement
drops both. Rows written before the checksum columns existed have none and are read unchecked.

Storage faults: whatever fails for a reason of the disk or the file rather than of the data (disk
full, I/O error, read-only file system, a file that cannot be opened, a corrupted database) raises
:class:`JournalFault`, which names the journal's path and what failed, from every method (reads,
writes, the commit, opening). A failed transaction is rolled back (SQLite may already have done it),
so the connection is usable again as soon as the disk is. :meth:`JobJournal.probe` shows that it is.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from link.messages import JobState

P = ParamSpec("P")
T = TypeVar("T")

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
CREATE TABLE IF NOT EXISTS storage_probe (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    at_utc        REAL NOT NULL,
    filler        BLOB NOT NULL
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
    ("jobs", "request_sha256", "ALTER TABLE jobs ADD COLUMN request_sha256 TEXT"),  # storage checksums
    ("results", "payload_sha256", "ALTER TABLE results ADD COLUMN payload_sha256 TEXT"),
)
"""Columns added after a table first shipped: (table, column, statement), applied when missing."""

class StoredCorruption(ValueError):
    """A stored request or result whose bytes no longer hash to the checksum written with them."""

    def __init__(self, job_id: str, what: str) -> None:
        super().__init__(f"job {job_id}: stored {what} failed its sha256 check (corrupted on disk or in memory)")
        self.job_id = job_id
        self.what = what


def payload_digest(data: bytes) -> str:
    """The checksum stored with a request or result: lower-case hex sha256 (sha256 rather than a CRC:
    a blob of megabytes, where a CRC-32 lets 2^-32 of the patterns through; about 2 ms per MB here)."""
    return hashlib.sha256(data).hexdigest()


def _checked(job_id: str, what: str, data: bytes, digest: str | None) -> bytes:
    if digest is not None and payload_digest(data) != digest:
        raise StoredCorruption(job_id, what)
    return data


JOURNAL_TABLES = ("jobs", "results", "sequences", "sequence_firings", "signing_keys", "replay_windows")
"""The tables that hold the journal's content, parents before children (what a salvage copies): the
key ring and the anti-replay windows too (a window lost would let an old signed request in again)."""


class JournalFault(Exception):
    """The journal's storage cannot be used: ``reason`` says what failed (SQLite's or the OS's words,
    with the free space or a read-only file system when that explains it). ``str()`` is one line
    naming the path: ``journal /var/lib/orbitd/flightd/journal.sqlite3: database or disk is full
    (0 B free on its file system)``."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"journal {self.path}: {reason}")


def is_storage_error(exc: BaseException) -> bool:
    """True for a failure of the disk or the file (disk full, I/O error, read-only, cannot open,
    corrupted, locked): SQLite's OperationalError and bare DatabaseError, and OSError. False for an
    error of the data or of the code (IntegrityError, ProgrammingError, ...), which a retry on a
    healthy disk would repeat."""
    if isinstance(exc, JournalFault | OSError):
        return True
    if isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError | sqlite3.InterfaceError
                  | sqlite3.DataError | sqlite3.NotSupportedError):
        return False
    return isinstance(exc, sqlite3.DatabaseError)


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _os_says(folder: Path) -> OSError | None:
    """What the kernel answers to a small durable write in ``folder`` (None: it takes it). SQLite
    reports EROFS and EIO alike as ``disk I/O error``; this tells them apart."""
    probe = folder / ".journal-probe"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        try:
            os.write(fd, bytes(4096))
            os.fsync(fd)
        finally:
            os.close(fd)
        probe.unlink()
    except OSError as exc:
        with suppress(OSError):
            probe.unlink()
        return exc
    return None


def describe_storage_error(exc: BaseException, path: Path) -> str:
    """``exc`` in words, with what the file system of ``path`` says when it explains it: the kernel's
    answer to a small write there (``read-only file system``, ``input/output error``, ``no space left
    on device``) and the free space when it is full."""
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    folder = Path(path).parent
    if not folder.is_dir():
        return text
    said = exc if isinstance(exc, OSError) else _os_says(folder)
    notes = []
    if said is not None and said.strerror and said.strerror.lower() not in text.lower():
        notes.append(said.strerror.lower())
    if "full" in text or (said is not None and said.errno == errno.ENOSPC):
        with suppress(OSError):
            fs = os.statvfs(folder)
            notes.append(f"{_size(fs.f_bavail * fs.f_frsize)} free on its file system")
    return f"{text} ({'; '.join(notes)})" if notes else text


def _storage_faults(method: Callable[Concatenate[JobJournal, P], T]) -> Callable[Concatenate[JobJournal, P], T]:
    """Raise :class:`JournalFault` for a storage error inside a :class:`JobJournal` method."""

    def guarded(self: JobJournal, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(self, *args, **kwargs)
        except JournalFault:
            raise
        except Exception as exc:
            if is_storage_error(exc):
                raise self.fault(exc) from exc
            raise

    guarded.__name__, guarded.__qualname__, guarded.__doc__ = method.__name__, method.__qualname__, method.__doc__
    return guarded


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
    """Durable job and result store. Single-threaded use: call it from the event loop thread only.

    Opening creates the directory and the file when missing (``create``); :class:`JournalFault`
    (naming the path) when that or anything after it fails for a reason of the storage."""

    def __init__(self, path: Path, synchronous: str = "FULL", check_same_thread: bool = True,
                 create: bool = True) -> None:
        self.path = Path(path)
        self.synchronous = synchronous
        self._check_same_thread = check_same_thread
        self._batch_depth = 0
        if create:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise JournalFault(self.path, f"cannot create its directory: {describe_storage_error(exc, self.path)}"
                                   ) from exc
        self._db = self._connect(create)

    def _connect(self, create: bool) -> sqlite3.Connection:
        db: sqlite3.Connection | None = None
        if not create and not self.path.exists():  # never a new, empty journal where the old one was
            raise JournalFault(self.path, "the journal file is not there (is its file system mounted?)")
        try:
            uri = f"{self.path.absolute().as_uri()}?mode={'rwc' if create else 'rw'}"
            db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=self._check_same_thread)
            # 64 KiB pages (effective for a new file): a 3 MB request blob commits in 7 ms instead of
            # 15 ms with 4 KiB pages on the development machine.
            db.execute("PRAGMA page_size=65536")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            db.execute("PRAGMA foreign_keys=ON")
            db.executescript(SCHEMA)
            for table, column, statement in _MIGRATIONS:
                if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
                    db.execute(statement)
        except Exception as exc:
            if db is not None:
                with suppress(sqlite3.Error):
                    db.close()
            if is_storage_error(exc):
                raise self.fault(exc) from exc
            raise
        self._sync_now = self.synchronous
        return db

    def fault(self, exc: BaseException) -> JournalFault:
        """``exc`` (a storage error) as a :class:`JournalFault` naming this journal."""
        return exc if isinstance(exc, JournalFault) else JournalFault(self.path, describe_storage_error(exc, self.path))

    def close(self) -> None:
        with suppress(sqlite3.Error):  # a connection on a failed disk may not close cleanly: it is gone anyway
            self._db.close()

    def reopen(self) -> None:
        """Open a new connection on the same path and close the old one (after a storage fault: a
        file system remounted, a disk replaced). The file must be there: a journal is never created
        anew here, where an unmounted file system would leave an empty directory. JournalFault when
        the new one cannot be opened; the old one is then kept (it fails with storage errors too,
        never with a closed connection's)."""
        fresh = self._connect(create=False)
        self.close()
        self._db = fresh
        self._batch_depth = 0

    def _set_sync(self, mode: str) -> None:
        if mode != self._sync_now:
            self._db.execute(f"PRAGMA synchronous={mode}")
            self._sync_now = mode

    def _rollback(self) -> None:
        """Roll back the open transaction, if SQLite has not already (it does after some errors)."""
        if self._db.in_transaction:
            with suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    @contextmanager
    def batch(self, durable: bool = True) -> Iterator[None]:
        """One transaction around several operations (group commit: one fsync for all of them).

        ``durable=False`` commits without waiting for the disk (WAL frames written, not fsynced); the
        change becomes durable with the next durable commit. Use it only where losing the change to
        a power cut is harmless. Operations inside a batch do not commit on their own.

        JournalFault when beginning or committing fails for a reason of the storage; the transaction
        is then rolled back, and the connection can begin the next one.
        """
        if self._batch_depth:
            self._batch_depth += 1
            try:
                yield
            finally:
                self._batch_depth -= 1
            return
        try:
            self._set_sync(self.synchronous if durable else "OFF")
            self._db.execute("BEGIN IMMEDIATE")
        except Exception as exc:
            self._rollback()
            raise self.fault(exc) if is_storage_error(exc) else exc from exc
        self._batch_depth = 1
        try:
            yield
        except BaseException:
            self._batch_depth = 0
            self._rollback()
            raise
        self._batch_depth = 0
        try:
            self._db.execute("COMMIT")
        except Exception as exc:  # a failed COMMIT may leave the transaction open: never let it block the next
            self._rollback()
            raise self.fault(exc) if is_storage_error(exc) else exc from exc

    @contextmanager
    def _tx(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        with self.batch(durable):
            yield self._db

    # ---------------------------------------------------------------------------------- jobs

    @_storage_faults
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
                " received_utc, updated_utc, reason, request, owner, request_sha256)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (job_id, state.value, model, version, priority, deadline_utc, now_utc, now_utc, reason, request,
                 owner, payload_digest(request)),
            )
            return cur.rowcount == 1

    @_storage_faults
    def get(self, job_id: str) -> JobRecord | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else _record(row)

    @_storage_faults
    def request(self, job_id: str) -> bytes:
        """The job's request payload as received; KeyError when there is none (unknown job, or its result
        acknowledged), StoredCorruption when it fails its checksum."""
        row = self._db.execute("SELECT request, request_sha256 FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None or row[0] is None:
            raise KeyError(job_id)
        return _checked(job_id, "request", bytes(row[0]), row[1])

    @_storage_faults
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

    @_storage_faults
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

    @_storage_faults
    def complete(self, job_id: str, result: bytes, now_utc: float) -> JobRecord:
        """Store the result (with its checksum) and mark the job ``done`` in one transaction; the request
        stays until the result is acknowledged."""
        _finite(now_utc=now_utc)
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO results (job_id, payload, created_utc, payload_sha256) VALUES (?,?,?,?)",
                (job_id, result, now_utc, payload_digest(result)),
            )
            row = db.execute(
                "UPDATE jobs SET state = 'done', updated_utc = ?, reason = NULL, completions = completions + 1"
                f" WHERE job_id = ? RETURNING {_COLUMNS}",
                (now_utc, job_id),
            ).fetchone()
        if row is None:
            raise KeyError(job_id)
        return _record(row)

    @_storage_faults
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

    @_storage_faults
    def result(self, job_id: str) -> bytes | None:
        """The stored result (None: none; empty: acknowledged); StoredCorruption when it fails its checksum."""
        row = self._db.execute("SELECT payload, payload_sha256 FROM results WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else _checked(job_id, "result", bytes(row[0]), row[1])

    @_storage_faults
    def replace_result(self, job_id: str, result: bytes, now_utc: float) -> bool:
        """Store a result computed again in place of the job's unacknowledged one (and its checksum); the
        job's completions do not change. False if it has none left to replace (acknowledged, or none)."""
        _finite(now_utc=now_utc)
        with self._tx() as db:
            cur = db.execute(
                "UPDATE results SET payload = ?, payload_sha256 = ?, created_utc = ? WHERE job_id = ?"
                " AND acked_utc IS NULL", (result, payload_digest(result), now_utc, job_id))
            return cur.rowcount == 1

    @_storage_faults
    def flip_stored_bits(self, job_id: str, what: str, bits: list[int]) -> int:
        """TEST-ONLY fault injection: invert ``bits`` (indices modulo the blob's size in bits) of the job's
        stored ``request`` or ``result`` without touching its checksum, as a disk or memory upset would;
        returns the blob's size in bits (0: nothing stored, nothing flipped)."""
        table, column, key = ("jobs", "request", "job_id") if what == "request" else ("results", "payload", "job_id")
        with self._tx() as db:
            row = db.execute(f"SELECT {column} FROM {table} WHERE {key} = ?", (job_id,)).fetchone()
            if row is None or not row[0]:
                return 0
            blob = bytearray(row[0])
            for bit in bits:
                index = bit % (len(blob) * 8)
                blob[index // 8] ^= 1 << (index % 8)
            db.execute(f"UPDATE {table} SET {column} = ? WHERE {key} = ?", (bytes(blob), job_id))
            return len(blob) * 8

    @_storage_faults
    def unacked_results(self) -> list[str]:
        rows = self._db.execute("SELECT job_id FROM results WHERE acked_utc IS NULL ORDER BY created_utc")
        return [r[0] for r in rows.fetchall()]

    @_storage_faults
    def ack_result(self, job_id: str, now_utc: float) -> bool:
        """The ground holds the result: drop its bytes and the request's. False if there was no unacked result."""
        _finite(now_utc=now_utc)
        with self._tx() as db:
            cur = db.execute(
                "UPDATE results SET acked_utc = ?, payload = x'', payload_sha256 = NULL"
                " WHERE job_id = ? AND acked_utc IS NULL",
                (now_utc, job_id),
            )
            if cur.rowcount != 1:
                return False
            db.execute("UPDATE jobs SET request = NULL, request_sha256 = NULL WHERE job_id = ?", (job_id,))
            return True

    @_storage_faults
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

    @_storage_faults
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

    @_storage_faults
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

    @_storage_faults
    def sequences(self, states: list[str] | None = None) -> list[SequenceRecord]:
        """Stored sequences, oldest first, optionally only in ``states``."""
        query = f"SELECT {_SEQ_COLUMNS} FROM sequences"
        args: tuple[Any, ...] = ()
        if states:
            query += f" WHERE state IN ({','.join('?' for _ in states)})"
            args = tuple(states)
        return [_sequence_record(r) for r in self._db.execute(query + " ORDER BY received_utc", args).fetchall()]

    @_storage_faults
    def get_sequence(self, sequence_id: str) -> SequenceRecord | None:
        row = self._db.execute(f"SELECT {_SEQ_COLUMNS} FROM sequences WHERE sequence_id = ?", (sequence_id,)).fetchone()
        return None if row is None else _sequence_record(row)

    @_storage_faults
    def sequence_firings(self, sequence_id: str) -> list[dict[str, Any]]:
        """The sequence's firings in the order they happened."""
        rows = self._db.execute(
            "SELECT entry, occurrence, job_id, action, late_s, mission_s, due, fired_utc FROM sequence_firings"
            " WHERE sequence_id = ? ORDER BY fired_utc, rowid", (sequence_id,)
        ).fetchall()
        keys = ("entry", "occurrence", "job_id", "action", "late_s", "mission_s", "due", "fired_utc")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    @_storage_faults
    def counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        return {str(s): int(n) for s, n in rows}

    # ------------------------------------------------------------------------------- security

    @_storage_faults
    def owner(self, job_id: str) -> str | None:
        """The name of the key that signed job ``job_id`` (None: unknown job, or submitted unsigned)."""
        row = self._db.execute("SELECT owner FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    @_storage_faults
    def save_keys(self, records: Mapping[str, Mapping[str, Any]], now_utc: float) -> None:
        """Insert or replace key ring entries (fingerprint -> plain record) in one transaction."""
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO signing_keys (fingerprint, record, updated_utc) VALUES (?, ?, ?)",
                [(fp, json.dumps(dict(r), sort_keys=True), now_utc) for fp, r in records.items()],
            )

    @_storage_faults
    def keys(self) -> dict[str, dict[str, Any]]:
        """The persisted key ring: fingerprint -> record."""
        rows = self._db.execute("SELECT fingerprint, record FROM signing_keys").fetchall()
        return {str(fp): json.loads(record) for fp, record in rows}

    @_storage_faults
    def save_window(self, fingerprint: str, record: Mapping[str, Any], durable: bool = True) -> None:
        """Persist one key's anti-replay window (``ReplayWindow.to_record``). ``durable=False`` only
        where acting on a replay after a power cut would be harmless (read-only requests)."""
        with self._tx(durable) as db:
            db.execute(
                "INSERT OR REPLACE INTO replay_windows (fingerprint, top, seen, size) VALUES (?, ?, ?, ?)",
                (fingerprint, str(record["top"]), str(record["seen"]), int(record["size"])),
            )

    @_storage_faults
    def windows(self) -> dict[str, dict[str, Any]]:
        """Every key's persisted anti-replay window: fingerprint -> record."""
        rows = self._db.execute("SELECT fingerprint, top, seen, size FROM replay_windows").fetchall()
        return {str(fp): {"top": str(top), "seen": str(seen), "size": int(size)} for fp, top, seen, size in rows}

    # ---------------------------------------------------------------------------- the storage

    @_storage_faults
    def probe(self, now_utc: float, size_bytes: int) -> None:
        """Commit ``size_bytes`` (zeros) durably in the one row of ``storage_probe``, replacing the
        previous probe: JournalFault when the storage cannot take a write of that size now."""
        _finite(now_utc=now_utc)
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO storage_probe (id, at_utc, filler) VALUES (1, ?, zeroblob(?))",
                       (now_utc, size_bytes))

    # ------------------------------------------------------------------------------ salvage

    def columns(self, table: str) -> list[str]:
        """The columns of ``table`` (one of :data:`JOURNAL_TABLES`), in schema order."""
        if table not in JOURNAL_TABLES:
            raise ValueError(f"{table!r} is not a journal table")
        return [str(r[1]) for r in self._db.execute(f"PRAGMA table_info({table})")]

    @_storage_faults
    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> int:
        """Insert ``rows`` (values of ``columns``) into ``table`` in one transaction, skipping a row
        whose key is present already or whose parent row is missing; returns how many went in."""
        if table not in JOURNAL_TABLES or not set(columns) <= set(self.columns(table)):
            raise ValueError(f"not columns of journal table {table!r}: {columns}")
        sql = f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
        kept = 0
        with self._tx() as db:
            for row in rows:
                with suppress(sqlite3.IntegrityError):  # e.g. a result whose job row was not salvaged
                    kept += db.execute(sql, row).rowcount
        return kept

    @_storage_faults
    def done_without_result(self) -> list[str]:
        """Done jobs whose result row is missing (after a salvage: results lost), oldest first."""
        rows = self._db.execute("SELECT job_id FROM jobs WHERE state = 'done' AND job_id NOT IN"
                                " (SELECT job_id FROM results) ORDER BY updated_utc").fetchall()
        return [str(r[0]) for r in rows]
