"""The journal's writes, on a thread of their own, with group commit.

The event loop must never wait for the disk: a 196 kB request blob and an fsync took about a
millisecond each on the development machine, and every millisecond the loop spends there is a
millisecond the dispatcher and the control cycle (governor) do not run. So the loop hands each write
to :class:`JournalWriter` as a function of the journal and awaits its future; the writer thread
takes every write waiting at that moment, runs them in ONE transaction and commits once (one fsync
for the whole batch, or none if no write in it asked to be durable), then resolves the futures in
order. Reads stay on the loop's own connection (SQLite WAL lets readers run beside the writer) and
see what has been committed.

Storage faults: a write that fails for a reason of the storage (:class:`~flight.journal.JournalFault`:
disk full, I/O error, read-only file system) fails its whole transaction, and every write in it gets
the fault; an error of one write's data (a KeyError, an IntegrityError) fails that write alone. From
the first fault the writer is *faulted* (:attr:`JournalWriter.fault`) until :meth:`JournalWriter.probe`
commits: a durable write of a given size on a connection opened anew (a file system remounted after
an error holds a new file under the same path). ``on_fault`` hears each fault and each probe that
commits (None), on the event loop of the write that found it.
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

from flight.journal import JobJournal, JournalFault

log = logging.getLogger("flightd.journal")

T = TypeVar("T")


@dataclass
class _Write:
    operation: Callable[[JobJournal], Any]
    durable: bool
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    reopen: bool = False  # a probe: open the connection anew first


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
        on_fault: Callable[[JournalFault | None], None] | None = None,
    ) -> None:
        """``on_commit(writes, seconds)`` is called on the writer thread after each transaction that
        committed (the time covers the writes and the commit with its fsync); ``on_fault(fault)``
        on the event loop after each storage fault, ``on_fault(None)`` when a probe commits after
        one. JournalFault when the journal cannot be opened."""
        self._path = Path(path)
        self._on_commit = on_commit
        self._on_fault = on_fault
        self._synchronous = synchronous
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="orbitd-journal", daemon=True)
        self._journal: JobJournal | None = None
        self._open_error: BaseException | None = None
        self.fault: JournalFault | None = None
        """The last storage fault, until a probe commits (None: the journal takes writes)."""
        self.batches = 0
        self.writes = 0
        self._thread.start()
        self._ready.wait()
        if self._open_error is not None:
            raise self._open_error

    def submit(self, operation: Callable[[JobJournal], T], durable: bool = True) -> asyncio.Future[T]:
        """Queue ``operation`` (run on the writer thread with the journal); its result or exception
        arrives in the returned future once the transaction holding it has committed (JournalFault
        when the storage failed it)."""
        return self._submit(operation, durable)

    def _submit(self, operation: Callable[[JobJournal], T], durable: bool, reopen: bool = False) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Write(operation, durable, future, loop, reopen))
        return future

    async def probe(self, now_utc: float, size_bytes: int) -> None:
        """Show that the journal takes a durable write of ``size_bytes`` now (JournalFault if not), on
        a connection opened anew (the file under the path may be a new one, on a remounted file
        system). A probe that commits ends the fault (``on_fault(None)``)."""
        await self._submit(lambda j: j.probe(now_utc, size_bytes), durable=True, reopen=True)

    def _run(self) -> None:
        try:
            self._journal = JobJournal(self._path, self._synchronous, check_same_thread=False)
        except BaseException as exc:
            self._open_error = exc
            self._ready.set()
            return
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
                self._apply(batch)
                if stop:
                    return
        finally:
            if self._journal is not None:
                self._journal.close()

    def _apply(self, batch: list[_Write]) -> None:
        outcomes: list[tuple[Any, BaseException | None]] = []
        started = time.perf_counter()
        probed = any(w.reopen for w in batch)
        try:
            journal = self._journal
            if journal is None or probed:
                journal = self._reopen()
            with journal.batch(durable=any(w.durable for w in batch)):
                for write in batch:
                    try:
                        outcomes.append((write.operation(journal), None))
                    except JournalFault:
                        raise  # the storage failed: the whole transaction fails
                    except Exception as exc:  # one bad write fails alone, the others commit
                        outcomes.append((None, exc))
        except JournalFault as fault:
            again = self.fault is not None and self.fault.reason == fault.reason
            log.log(logging.DEBUG if again else logging.ERROR, "journal transaction of %d write(s) failed: %s",
                    len(batch), fault.reason)
            outcomes = [(None, fault)] * len(batch)
            self._report(batch, fault)
        except Exception as exc:  # not the storage's doing (a bug): every write of the batch fails
            log.error("journal transaction of %d write(s) failed: %s", len(batch), exc)
            outcomes = [(None, exc)] * len(batch)
        else:
            self.batches += 1
            self.writes += len(batch)
            if self._on_commit is not None:
                try:
                    self._on_commit(len(batch), time.perf_counter() - started)
                except Exception:  # a metrics hook must never stop the journal
                    log.exception("journal on_commit hook failed")
            if probed:  # reported even when this writer saw no fault: the reader may have
                if self.fault is not None:
                    log.warning("journal %s takes writes again (probe committed)", self._path)
                self._report(batch, None)
        for write, (result, error) in zip(batch, outcomes, strict=True):
            write.loop.call_soon_threadsafe(_settle, write.future, result, error)

    def _reopen(self) -> JobJournal:
        """A new connection (the old one closed) to the journal that is there (never a new one):
        JournalFault when it cannot be opened."""
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        self._journal = JobJournal(self._path, self._synchronous, check_same_thread=False, create=False)
        return self._journal

    def _report(self, batch: list[_Write], fault: JournalFault | None) -> None:
        """Set the fault state and tell ``on_fault`` on the loop of the batch's first write (before
        the batch's futures settle, so callers find the new state)."""
        self.fault = fault
        if self._on_fault is not None:
            batch[0].loop.call_soon_threadsafe(self._on_fault, fault)

    def close(self) -> None:
        """Apply what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join()
