"""The satellite's public signing keys, each with a role, and what each role may ask for.

A :class:`KeyRing` is plain data: which Ed25519 public keys (``link.envelope``) may sign requests
to this satellite, under which name and role, and which keys were revoked. Keys are added, rotated
and revoked by operator commands; every change returns a new ring, which the caller persists before
it answers. Revoked keys stay in the ring as tombstones: a revoked key cannot be added again (a
replayed ``add`` of it would be refused even if it got past anti-replay).

Roles (:data:`PERMISSIONS`):

- ``operator``: everything: commands, model uploads, jobs of any priority, key management.
- ``user``: jobs up to the key's ``priority_cap``; the read-only commands ``ping``, ``get_job``,
  ``list_jobs``, ``list_models`` (what the user could read on the broker anyway: job states and
  results are published to the ground roles); ``cancel`` and ``ack_result`` of its own jobs (those
  submitted under the key's name, which a rotation keeps). Nothing else that changes state onboard.

A ring always keeps one active operator key: revoking or rotating away the last one is refused, so
a mistaken command cannot lock the ground out of its satellite.

Everything here is pure: plain data in, plain data out; no clock (times are passed in), no disk.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from link.auth import AuthError
from link.envelope import fingerprint, load_public_key
from link.messages import AddKey, RevokeKey, Role, RotateKey
from link.topics import check_id

MAX_PRIORITY = 9
"""Highest job priority (link.messages.JobRequest.priority is 0..9)."""
DEFAULT_USER_PRIORITY_CAP = 5
"""A user key's cap unless configured: the default job priority (link.messages.JobRequest)."""

JOB = "job"
COMMAND = "command"
UPLOAD = "upload"
KINDS = (JOB, COMMAND, UPLOAD)
"""What arrives on each ground -> satellite topic: ``jobs/submit``, ``cmd``, ``models/upload/<id>``.
:meth:`KeyRing.authorize` takes ``job``, ``upload`` or, for a command, ``command:<action>``."""
USER_COMMANDS = ("ping", "get_job", "list_jobs", "list_models")
"""The read-only commands a ``user`` key may sign."""
OWN_JOB_COMMANDS = ("cancel", "ack_result")
"""Commands a ``user`` key may sign for jobs submitted under its own name only."""


def command_request(action: str) -> str:
    """What a command whose body has ``action`` asks for, as :meth:`KeyRing.authorize` takes it."""
    return f"{COMMAND}:{action}"


PERMISSIONS: dict[Role, frozenset[str] | None] = {
    Role.OPERATOR: None,  # everything
    Role.USER: frozenset({JOB, *(command_request(a) for a in (*USER_COMMANDS, *OWN_JOB_COMMANDS))}),
}
"""Request kinds each role may sign; None: all of them. (:data:`OWN_JOB_COMMANDS` also need the
job's owner to be the key's name, see :meth:`KeyRing.authorize`.)"""


class KeyRefused(AuthError):
    """A request signed by an unknown, revoked or insufficient key, or a key change the ring refuses."""


@dataclass(frozen=True)
class KeyEntry:
    """One public key. ``priority_cap``: the highest job priority it may ask for (0..9).
    ``revoked_utc`` is set once revoked; ``replaced_by`` names the fingerprint that rotated it out."""

    name: str
    role: Role
    public_key: bytes
    priority_cap: int = MAX_PRIORITY
    added_utc: float = 0.0
    revoked_utc: float | None = None
    replaced_by: str | None = None

    def __post_init__(self) -> None:
        check_id("key name", self.name)
        if not 0 <= self.priority_cap <= MAX_PRIORITY:
            raise KeyRefused(f"priority cap {self.priority_cap} is outside 0..{MAX_PRIORITY}")
        fingerprint(self.public_key)  # raises for a key of the wrong length

    @classmethod
    def parse(
        cls, name: str, role: str, public_key: str, priority_cap: int | None = None, added_utc: float = 0.0
    ) -> KeyEntry:
        """An entry from text (hex public key, role name); the cap defaults by role. :class:`KeyRefused`
        (or :class:`link.envelope.SignatureError`) with the reason when something is malformed."""
        try:
            parsed_role = Role(role)
        except ValueError:
            raise KeyRefused(f"unknown role {role!r}: one of {', '.join(r.value for r in Role)}") from None
        try:
            check_id("key name", name)
        except ValueError as exc:
            raise KeyRefused(str(exc)) from None
        if priority_cap is None:
            priority_cap = DEFAULT_USER_PRIORITY_CAP if parsed_role is Role.USER else MAX_PRIORITY
        return cls(name, parsed_role, load_public_key(public_key), priority_cap, added_utc)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    @property
    def active(self) -> bool:
        return self.revoked_utc is None

    def describe(self) -> str:
        return f"key {self.fingerprint} ({self.name}, {self.role.value})"

    def summary(self) -> dict[str, Any]:
        """What status and ``list_keys`` report: never more than the public key's fingerprint."""
        out: dict[str, Any] = {
            "fingerprint": self.fingerprint,
            "name": self.name,
            "role": self.role.value,
            "active": self.active,
        }
        if self.role is Role.USER:
            out["priority_cap"] = self.priority_cap
        if self.replaced_by is not None:
            out["replaced_by"] = self.replaced_by
        return out

    def to_record(self) -> dict[str, Any]:
        """Plain data for the journal (the public key in hex)."""
        return {
            "name": self.name,
            "role": self.role.value,
            "public_key": self.public_key.hex(),
            "priority_cap": self.priority_cap,
            "added_utc": self.added_utc,
            "revoked_utc": self.revoked_utc,
            "replaced_by": self.replaced_by,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> KeyEntry:
        return cls(
            name=str(record["name"]),
            role=Role(record["role"]),
            public_key=load_public_key(str(record["public_key"])),
            priority_cap=int(record["priority_cap"]),
            added_utc=float(record["added_utc"]),
            revoked_utc=None if record.get("revoked_utc") is None else float(record["revoked_utc"]),
            replaced_by=record.get("replaced_by"),
        )


@dataclass(frozen=True)
class KeyRing:
    """Keys by fingerprint. Every change returns a new ring; the ring it was called on is unchanged."""

    entries: Mapping[str, KeyEntry] = field(default_factory=dict)

    @classmethod
    def of(cls, entries: Iterable[KeyEntry]) -> KeyRing:
        """A ring holding ``entries``; :class:`KeyRefused` for two entries with one fingerprint."""
        ring = cls()
        for entry in entries:
            ring = ring._with_new(entry)
        return ring

    # ------------------------------------------------------------------------------------- queries

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def active(self) -> list[KeyEntry]:
        return [e for e in self.entries.values() if e.active]

    def signer(self, key_fingerprint: str) -> KeyEntry:
        """The active entry that a message's key id names; :class:`KeyRefused` when unknown or revoked."""
        entry = self.entries.get(key_fingerprint)
        if entry is None:
            raise KeyRefused(f"unknown signing key {key_fingerprint}")
        if not entry.active:
            raise KeyRefused(f"{entry.describe()} was revoked")
        return entry

    @staticmethod
    def authorize(entry: KeyEntry, request: str, priority: int | None = None, owner: str | None = None) -> None:
        """Return if ``entry``'s role may sign ``request`` (:data:`JOB`, :data:`UPLOAD`, ``command:<action>``)
        at ``priority`` (jobs), for a job whose submitter was ``owner`` (a key name; None: unknown, e.g.
        submitted unsigned); :class:`KeyRefused` naming the key, its role and what it asked otherwise."""
        allowed = PERMISSIONS[entry.role]
        what = request.replace(":", " ", 1)
        if allowed is not None and request not in allowed:
            raise KeyRefused(f"{entry.describe()} may not sign {what}: role {entry.role.value} lacks it")
        own_only = {command_request(a) for a in OWN_JOB_COMMANDS}
        if entry.role is not Role.OPERATOR and request in own_only and owner != entry.name:
            whose = f"{owner}'s" if owner else "another key's"
            raise KeyRefused(f"{entry.describe()} may {what} only its own jobs, not {whose}")
        if request == JOB and priority is not None and priority > entry.priority_cap:
            raise KeyRefused(f"{entry.describe()} may submit jobs up to priority {entry.priority_cap}, not {priority}")

    def summary(self) -> list[dict[str, Any]]:
        """Every key's :meth:`KeyEntry.summary`, active ones first, then by name."""
        return [e.summary() for e in sorted(self.entries.values(), key=lambda e: (not e.active, e.name, e.added_utc))]

    # ------------------------------------------------------------------------------------- changes

    def add(self, entry: KeyEntry) -> KeyRing:
        """The ring with ``entry`` added; refused when its key is known (even revoked) or its name is in
        use by an active key."""
        for other in self.active:
            if other.name == entry.name:
                raise KeyRefused(f"key name {entry.name!r} is in use by {other.describe()}: rotate it instead")
        return self._with_new(entry)

    def revoke(self, key_fingerprint: str, at_utc: float) -> KeyRing:
        """The ring with the key revoked; refused when unknown, already revoked, or the last operator key."""
        entry = self.signer(key_fingerprint)
        self._keep_an_operator(entry)
        return self._replace(replace(entry, revoked_utc=at_utc))

    def rotate(self, key_fingerprint: str, new_public_key: bytes, at_utc: float) -> KeyRing:
        """The ring with the key replaced by ``new_public_key`` (same name, role and cap), the old one revoked."""
        old = self.signer(key_fingerprint)
        new = replace(old, public_key=new_public_key, added_utc=at_utc, revoked_utc=None, replaced_by=None)
        ring = self._with_new(new)
        return ring._replace(replace(old, revoked_utc=at_utc, replaced_by=new.fingerprint))

    def _keep_an_operator(self, leaving: KeyEntry) -> None:
        if leaving.role is Role.OPERATOR and not any(
            e.role is Role.OPERATOR and e.fingerprint != leaving.fingerprint for e in self.active
        ):
            raise KeyRefused(f"{leaving.describe()} is the last active operator key: add another one first")

    def _with_new(self, entry: KeyEntry) -> KeyRing:
        known = self.entries.get(entry.fingerprint)
        if known is not None:
            state = "a revoked key" if not known.active else "already known"
            raise KeyRefused(f"key {entry.fingerprint} is {state} ({known.name}, {known.role.value})")
        return KeyRing({**self.entries, entry.fingerprint: entry})

    def _replace(self, entry: KeyEntry) -> KeyRing:
        return KeyRing({**self.entries, entry.fingerprint: entry})

    # ----------------------------------------------------------------------------------- persistence

    def to_records(self) -> list[dict[str, Any]]:
        return [e.to_record() for e in self.entries.values()]

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> KeyRing:
        return cls.of(KeyEntry.from_record(r) for r in records)


# ------------------------------------------------------------------------------- key commands


@dataclass(frozen=True)
class KeyChange:
    """The outcome of a key command: the new ring, the entries to persist, a line for the event log."""

    ring: KeyRing
    changed: tuple[KeyEntry, ...]
    message: str

    def reply(self) -> list[dict[str, Any]]:
        """What the command's reply carries: the changed entries' summaries (fingerprints, no key material)."""
        return [e.summary() for e in self.changed]


def change_keys(ring: KeyRing, command: AddKey | RotateKey | RevokeKey, at_utc: float) -> KeyChange:
    """Apply an operator's key command to ``ring`` (pure); :class:`KeyRefused` with the reason when refused."""
    if isinstance(command, AddKey):
        entry = KeyEntry.parse(command.name, command.role.value, command.public_key, command.priority_cap, at_utc)
        return KeyChange(ring.add(entry), (entry,), f"signing {entry.describe()} added")
    if isinstance(command, RevokeKey):
        new_ring = ring.revoke(command.fingerprint, at_utc)
        revoked = new_ring.entries[command.fingerprint]
        return KeyChange(new_ring, (revoked,), f"signing {revoked.describe()} revoked")
    new_public = load_public_key(command.public_key)
    new_ring = ring.rotate(command.fingerprint, new_public, at_utc)
    old, new = new_ring.entries[command.fingerprint], new_ring.entries[fingerprint(new_public)]
    return KeyChange(new_ring, (old, new), f"signing {old.describe()} rotated to {new.fingerprint}")
