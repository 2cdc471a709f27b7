"""What the journal's start-up check costs (flight.journal_recovery): SQLite's quick_check and
integrity_check on journals of growing size, from the page cache (warm) and from the disk (cold: the
file's pages dropped from the cache with posix_fadvise(DONTNEED), nothing else on the machine).

``python -m bench.journal_check --json`` prints one JSON object: per journal size (MB, jobs) the seconds
of ``quick_check`` and ``integrity_check`` warm and cold, the read rate (MB/s) of the cold quick check,
the directory's file system, and ``cpu``. A journal is filled as flightd fills it: jobs with request
blobs of ``--request-kb`` (queued), half of them done with a result of the same size (not acknowledged).
The cold check reads the whole file once, so its time is the file's size over the storage's read rate:
run it on the board (``--dir /var/lib/orbitd``) to know it there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import cpu_info, progress
from flight.journal import JobJournal
from flight.journal_recovery import check_file
from link.messages import JobState


def build(path: Path, size_mb: int, request_kb: int) -> int:
    """A journal of about ``size_mb`` MB at ``path``; returns the number of jobs in it."""
    journal = JobJournal(path, synchronous="OFF")
    blob = os.urandom(request_kb * 1024)
    n = 0
    while path.stat().st_size + _wal(path) < size_mb * 1e6:
        with journal.batch(durable=False):
            for _ in range(50):
                job_id = f"job-{n:07d}"
                journal.add(job_id, "m", "1.0.0", 5, None, blob, 1e9 + n)
                if n % 2:
                    journal.set_state(job_id, JobState.RUNNING, 1e9 + n)
                    journal.complete(job_id, blob, 1e9 + n)
                n += 1
    journal.close()  # checkpoints the WAL into the file
    return n


def _wal(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def drop_from_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def timed_check(path: Path, full: bool, cold: bool) -> float:
    if cold:
        drop_from_cache(path)
    started = time.perf_counter()
    problem = check_file(path, full=full)
    elapsed = time.perf_counter() - started
    assert problem is None, problem
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[20, 200])
    parser.add_argument("--request-kb", type=int, default=196)
    parser.add_argument("--dir", type=Path, default=None, help="where the journals are built (default: a temp dir)")
    args = parser.parse_args()
    out: dict[str, object] = {"cpu": cpu_info(), "request_kb": args.request_kb, "journals": []}
    with tempfile.TemporaryDirectory(prefix="orbitd-journal-check-", dir=args.dir) as tmp:
        fs = subprocess.run(["df", "--output=fstype", tmp], capture_output=True, text=True, check=False)
        out["filesystem"] = fs.stdout.split()[-1] if fs.returncode == 0 else "unknown"
        for size_mb in args.sizes_mb:
            path = Path(tmp) / f"journal-{size_mb}.sqlite3"
            progress(f"building a {size_mb} MB journal")
            jobs = build(path, size_mb, args.request_kb)
            mb = path.stat().st_size / 1e6
            row: dict[str, float | int] = {"size_mb": round(mb, 1), "jobs": jobs}
            for full in (False, True):
                name = "integrity_check" if full else "quick_check"
                for cold in (False, True):
                    row[f"{name}_{'cold' if cold else 'warm'}_s"] = round(timed_check(path, full, cold), 4)
            row["quick_check_cold_mb_per_s"] = round(mb / row["quick_check_cold_s"], 1)
            out["journals"].append(row)  # type: ignore[union-attr]
            path.unlink()
    if args.json:
        print(json.dumps(out))
    else:
        json.dump(out, sys.stdout, indent=2)
        print()


if __name__ == "__main__":
    main()
