"""The journal's writes, on a thread of their own, with group commit.

The event loop must never wait for the disk: a 196 kB request blob and an fsync took about a
millisecond each on the development machine, and every millisecond the loop spends there is a
millisecond the dispatcher and the control cycle (governor) do not run. So the loop hands each write
to :class:`JournalWriter` as a function of the journal and awaits its future; the writer thread
takes every write waiting at that moment, runs them in ONE transaction and commits once (one fsync
for the whole batch, or none if no write in it asked to be durable), then resolves the futures in
order. Reads stay on the loop's own connection (SQLite WAL lets readers run beside the writer) and
see what has been committed.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from flight.journal import JobJournal

log = logging.getLogger("flightd.journal")

T = TypeVar("T")


@dataclass
class _Write:
    operation: Callable[[JobJournal], Any]
    durable: bool
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class JournalWriter:
    """``await writer.submit(lambda j: j.add(...))``; writes are applied in submission order."""

    def __init__(
        self,
        path: Path,
        synchronous: str = "FULL",
        max_batch: int = 256,
        on_commit: Callable[[int, float], None] | None = None,
    ) -> None:
        """``on_commit(writes, seconds)`` is called on the writer thread after each transaction
        (the time covers the writes and the commit with its fsync)."""
        self._path = Path(path)
        self._on_commit = on_commit
        self._synchronous = synchronous
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="orbitd-journal", daemon=True)
        self.batches = 0
        self.writes = 0
        self._thread.start()
        self._ready.wait()

    def submit(self, operation: Callable[[JobJournal], T], durable: bool = True) -> asyncio.Future[T]:
        """Queue ``operation`` (run on the writer thread with the journal); its result or exception
        arrives in the returned future once the transaction holding it has committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Write(operation, durable, future, loop))
        return future

    def _run(self) -> None:
        journal = JobJournal(self._path, self._synchronous, check_same_thread=False)
        self._ready.set()
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch = [first]
                stop = False
                while len(batch) < self._max_batch:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stop = True
                        break
                    batch.append(item)
                self._apply(journal, batch)
                if stop:
                    return
        finally:
            journal.close()

    def _apply(self, journal: JobJournal, batch: list[_Write]) -> None:
        outcomes: list[tuple[Any, BaseException | None]] = []
        started = time.perf_counter()
        try:
            with journal.batch(durable=any(w.durable for w in batch)):
                for write in batch:
                    try:
                        outcomes.append((write.operation(journal), None))
                    except Exception as exc:  # one bad write fails alone, the others commit
                        outcomes.append((None, exc))
        except Exception as exc:  # the commit itself failed (disk full, I/O error): every write fails
            log.error("journal commit of %d write(s) failed: %s", len(batch), exc)
            outcomes = [(None, exc)] * len(batch)
        self.batches += 1
        self.writes += len(batch)
        if self._on_commit is not None:
            try:
                self._on_commit(len(batch), time.perf_counter() - started)
            except Exception:  # a metrics hook must never stop the journal
                log.exception("journal on_commit hook failed")
        for write, (result, error) in zip(batch, outcomes, strict=True):
            write.loop.call_soon_threadsafe(_settle, write.future, result, error)

    def close(self) -> None:
        """Apply what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join()
