"""The journal's security tables: key ring, anti-replay windows and job owners survive a reopen."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flight.antireplay import ReplayWindow
from flight.journal import SCHEMA, JobJournal
from flight.keyring import KeyEntry, KeyRing
from link.envelope import public_bytes
from link.messages import JobState, Role


def pub(seed: int) -> bytes:
    return public_bytes(Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32))


def test_key_ring_and_windows_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    ring = KeyRing.of([KeyEntry("ops", Role.OPERATOR, pub(1)), KeyEntry("lab", Role.USER, pub(2), 5)])
    ring = ring.rotate(ring.active[1].fingerprint, pub(3), at_utc=10.0)
    window = ReplayWindow().accept(2**64 - 2).accept(2**64 - 5)
    journal = JobJournal(path)
    journal.save_keys({e.fingerprint: e.to_record() for e in ring.entries.values()}, now_utc=10.0)
    journal.save_window("00aa", window.to_record())
    journal.save_window("00aa", window.accept(2**64 - 1).to_record())  # replaces
    journal.close()

    reopened = JobJournal(path)
    assert KeyRing.from_records(reopened.keys().values()) == ring
    restored = ReplayWindow.from_record(reopened.windows()["00aa"])
    assert restored == window.accept(2**64 - 1)
    assert restored.refusal(2**64 - 5) is not None
    reopened.close()


def test_job_owner_is_kept_with_the_job_and_purged_with_it(tmp_path: Path) -> None:
    journal = JobJournal(tmp_path / "journal.sqlite3")
    assert journal.add("j1", "m", None, 5, None, b"{}", now_utc=1.0, owner="lab")
    assert not journal.add("j1", "m", None, 5, None, b"{}", now_utc=1.0, owner="someone-else")
    assert journal.add("j2", "m", None, 5, None, b"{}", now_utc=1.0)
    assert journal.owner("j1") == "lab" and journal.owner("j2") is None and journal.owner("j3") is None
    journal.set_state("j1", JobState.CANCELLED, now_utc=2.0)
    assert journal.purge(older_than_utc=3.0) == ["j1"]
    assert journal.owner("j1") is None
    journal.close()


def test_a_journal_from_before_owners_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)  # the tables as first shipped: jobs without the owner column
    assert "owner" not in {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
    db.execute("INSERT INTO jobs (job_id, state, model, priority, received_utc, updated_utc) "
               "VALUES ('old', 'done', 'm', 5, 1, 1)")
    db.commit()
    db.close()
    journal = JobJournal(path)
    assert journal.owner("old") is None
    assert journal.add("new", "m", None, 5, None, b"{}", now_utc=2.0, owner="ops")
    assert journal.owner("new") == "ops"
    journal.close()
