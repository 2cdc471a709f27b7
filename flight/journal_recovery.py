"""flightd's journal at start: checked, a corrupted one moved aside and what reads of it kept.

Before flightd opens its journal it makes sure the data directory can hold one, and that the file it
finds is sound, so that a damaged journal never makes it crash at every start (systemd would give up
after ``StartLimitBurst`` starts) and a disk that cannot take the journal is named in one line:

1. The directory is created if missing and a journal opened (created if missing) and made to commit
   a durable write of one 64 KiB page (:meth:`JobJournal.probe`). Any storage failure there is a
   :class:`~flight.journal.JournalFault` naming the path (``flightd`` prints it and exits with 2,
   like a configuration error): the directory cannot be created, the file system is read-only, the
   disk is full, the file cannot be opened.
2. An existing journal is checked first with SQLite's ``PRAGMA quick_check`` (``check = "full"``:
   ``integrity_check``, which also compares every index with its table; ``"off"``: not checked).
   quick_check reads every page once, so its cost is the file's size over the storage's read rate:
   for a 186 MB journal (900 jobs of 196 kB requests, half with results) 0.015 s from the page cache
   and 0.23 s from the development machine's disk (800 MB/s; integrity_check 0.29 s), measured by
   ``python -m bench.journal_check --json``; on a board's SD card, run it there to know.
3. A journal that fails the check, or that SQLite cannot read at all (``file is not a database``,
   ``database disk image is malformed``), is *moved aside*: renamed, with its WAL, to
   ``journal.sqlite3.corrupt-<UTC time>`` in the same directory (kept for analysis, never deleted),
   and a new journal is started. What can still be read from the old one is copied into the new one,
   table by table in :data:`~flight.journal.JOURNAL_TABLES` order, each table up to the first damaged
   page: jobs (queued ones with their requests, so they still run; terminal ones, so a resubmitted
   id is still not run twice), results, sequences and their firings.

What a clean start cannot keep is lost, and said so (:meth:`JournalStart.describe`, which flightd
logs and publishes as an ``error`` event once connected): rows behind a damaged page, and in
particular *results the ground had not acknowledged*. Done jobs without a salvaged result are listed
by id; the retained result the broker may still hold for them stays there until acknowledged.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from flight.journal import JOURNAL_TABLES, JobJournal, JournalFault

log = logging.getLogger("flightd.journal")

JOURNAL_FILE = "journal.sqlite3"
START_PROBE_BYTES = 64 * 1024
"""The start-up write: one page of the journal (``PRAGMA page_size=65536``)."""
CORRUPTION_WORDS = ("malformed", "not a database", "corrupt")
"""SQLite's words for a damaged file (SQLITE_CORRUPT, SQLITE_NOTADB); Python 3.10 has no error codes."""

Check = Literal["quick", "full", "off"]


@dataclass
class JournalStart:
    """What :func:`open_journal` found and did. ``problem``: why the journal was moved aside (None:
    it was not); ``moved_to``: where; ``salvaged``: rows copied per table; ``unreadable``: tables
    whose copy stopped at a damaged page, with SQLite's error; ``lost_results``: done jobs whose
    result was not salvaged; ``check_s``: time the check took, s."""

    path: Path
    check: Check
    check_s: float = 0.0
    problem: str | None = None
    moved_to: Path | None = None
    salvaged: dict[str, int] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)
    lost_results: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One paragraph for the log and the ``error`` event ("" when nothing was moved aside)."""
        if self.problem is None:
            return ""
        kept = ", ".join(f"{n} rows of {table}" for table, n in self.salvaged.items() if n) or "nothing"
        text = (f"journal {self.path} was corrupted ({self.problem}): moved aside to {self.moved_to}; "
                f"started a new journal with what could be read: {kept}")
        errors = set(self.unreadable.values())
        if kept == "nothing" and len(errors) == 1:
            text += f"; lost: all of it ({errors.pop()})"
        elif self.unreadable:
            text += "; lost: the rest of " + ", ".join(f"{t} ({e})" for t, e in self.unreadable.items())
        if self.lost_results:
            shown = ", ".join(self.lost_results[:20])
            more = f" and {len(self.lost_results) - 20} more" if len(self.lost_results) > 20 else ""
            text += (f"; results not salvaged for done jobs {shown}{more} (a result not yet acknowledged is "
                     f"lost here; its retained copy on the broker stays until acknowledged)")
        return text


def is_corruption(exc: BaseException) -> bool:
    """SQLite says the file is damaged (not that the disk failed to read or write it)."""
    return isinstance(exc, sqlite3.DatabaseError) and any(w in str(exc).lower() for w in CORRUPTION_WORDS)


def open_journal(path: Path, synchronous: str = "FULL", check: Check = "quick", now_utc: float | None = None
                 ) -> JournalStart:
    """Make ``path`` a sound journal that takes writes (see the module docstring); the journal is
    closed again, flightd opens its own connections. JournalFault when the storage cannot hold it."""
    path = Path(path)
    report = JournalStart(path, check)
    if path.exists() and check != "off":
        started = time.perf_counter()
        report.problem = check_file(path, full=check == "full")
        report.check_s = time.perf_counter() - started
        log.info("journal %s checked (%s_check) in %.3f s: %s", path, "integrity" if check == "full" else "quick",
                 report.check_s, report.problem or "ok")
    if report.problem is not None:
        report.moved_to = _move_aside(path)
    try:
        journal = JobJournal(path, synchronous)
    except JournalFault as exc:  # not checked (check "off"), and too damaged to open: aside too
        if report.moved_to is not None or exc.__cause__ is None or not is_corruption(exc.__cause__):
            raise
        report.problem = str(exc.__cause__)
        report.moved_to = _move_aside(path)
        journal = JobJournal(path, synchronous)
    try:
        journal.probe(time.time() if now_utc is None else now_utc, START_PROBE_BYTES)
        if report.moved_to is not None:
            _salvage(report.moved_to, journal, report)
    finally:
        journal.close()
    if report.problem is not None:
        log.error("%s", report.describe())
    return report


def check_file(path: Path, full: bool) -> str | None:
    """None when the journal at ``path`` is sound, else what is wrong with it. JournalFault when the
    storage (not the file) fails: an I/O error is not a reason to move a journal aside."""
    try:
        with closing(sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)) as db:
            rows = db.execute(f"PRAGMA {'integrity_check' if full else 'quick_check'}(20)").fetchall()
    except sqlite3.Error as exc:
        if is_corruption(exc):
            return str(exc)
        raise JournalFault(path, f"cannot be checked: {exc}") from exc
    findings = [str(r[0]) for r in rows]
    return None if findings == ["ok"] else "; ".join(findings[:3]) + (" ..." if len(findings) > 3 else "")


def _move_aside(path: Path) -> Path:
    """Rename the journal and its WAL to ``<name>.corrupt-<UTC>``; the shared-memory index is deleted
    (SQLite rebuilds it from the WAL). JournalFault when the directory does not allow it."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    try:
        os.replace(path, aside)
        wal = path.with_name(path.name + "-wal")
        if wal.exists():
            os.replace(wal, aside.with_name(aside.name + "-wal"))
        path.with_name(path.name + "-shm").unlink(missing_ok=True)
    except OSError as exc:
        raise JournalFault(path, f"corrupted, and cannot be moved aside: {exc.strerror}") from exc
    return aside


def _salvage(source: Path, journal: JobJournal, report: JournalStart) -> None:
    """Copy what reads of ``source`` into ``journal`` (see the module docstring)."""
    try:
        src = sqlite3.connect(f"{source.absolute().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        report.unreadable["journal"] = str(exc)
        return
    with closing(src):
        for table in JOURNAL_TABLES:
            columns = journal.columns(table)
            rows: list[tuple[object, ...]] = []
            try:
                for row in src.execute(f"SELECT {', '.join(columns)} FROM {table}"):
                    rows.append(row)
            except sqlite3.Error as exc:  # the first damaged page ends the copy of this table
                report.unreadable[table] = str(exc)
            report.salvaged[table] = journal.insert_rows(table, columns, rows)
    report.lost_results = journal.done_without_result()
