"""The MQTT topic tree, one place for every topic string (documented in docs/icd.md).

``<root>/<sat>/...`` with root ``orbitd/v1``; a replay publishes under ``orbitd-replay/v1`` so that
live consumers never see replayed traffic unless it is replayed ``--as-live``.
"""

from __future__ import annotations

from dataclasses import dataclass

from link.messages import TOPIC_ID_PATTERN, is_identifier

LIVE_ROOT = "orbitd/v1"
REPLAY_ROOT = "orbitd-replay/v1"


def check_id(kind: str, value: str) -> str:
    """``value`` if it is a valid identifier for a topic level, else ValueError naming ``kind``.

    Topic levels follow :data:`link.messages.TOPIC_ID_PATTERN` (no ``.``: nats-server 2.9 refuses it)."""
    if not is_identifier(value):
        raise ValueError(f"invalid {kind} {value!r}: must match {TOPIC_ID_PATTERN}")
    return value


@dataclass(frozen=True)
class TopicMap:
    """All topics of one satellite. QoS: 1 for jobs, results, commands, replies, status, events;
    0 for telemetry (fresh data beats retransmitted stale data)."""

    sat: str
    root: str = LIVE_ROOT

    def __post_init__(self) -> None:
        check_id("satellite id", self.sat)

    @property
    def base(self) -> str:
        return f"{self.root}/{self.sat}"

    # ground -> satellite
    @property
    def job_submit(self) -> str:
        return f"{self.base}/jobs/submit"

    @property
    def command(self) -> str:
        return f"{self.base}/cmd"

    @property
    def sequence_command(self) -> str:
        """Sequence uploads and their management (:class:`link.sequence.SequenceCommand`)."""
        return f"{self.base}/seq/cmd"

    def upload(self, upload_id: str) -> str:
        return f"{self.base}/models/upload/{check_id('upload id', upload_id)}"

    @property
    def upload_all(self) -> str:
        return f"{self.base}/models/upload/+"

    # satellite -> ground
    def job_state(self, job_id: str) -> str:
        return f"{self.base}/jobs/{check_id('job id', job_id)}/state"

    @property
    def job_state_all(self) -> str:
        return f"{self.base}/jobs/+/state"

    def result(self, job_id: str) -> str:
        return f"{self.base}/results/{check_id('job id', job_id)}"

    @property
    def result_all(self) -> str:
        return f"{self.base}/results/+"

    def command_reply(self, command_id: str) -> str:
        return f"{self.base}/cmd/{check_id('command id', command_id)}/reply"

    @property
    def command_reply_all(self) -> str:
        return f"{self.base}/cmd/+/reply"

    def upload_progress(self, upload_id: str) -> str:
        return f"{self.base}/models/upload/{check_id('upload id', upload_id)}/progress"

    @property
    def upload_progress_all(self) -> str:
        return f"{self.base}/models/upload/+/progress"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    # telemetry (plant / board probes -> flightd and ground; flightd -> ground)
    def telemetry(self, channel: str) -> str:
        return f"{self.base}/tlm/{check_id('telemetry channel', channel)}"

    @property
    def telemetry_all(self) -> str:
        return f"{self.base}/tlm/+"

    def probe(self, probe_id: str) -> str:
        """Where a flightd's own echo goes while it reads the retained status before connecting
        (``flight.session.read_status``); nobody else publishes or subscribes here."""
        return f"{self.base}/probe/{check_id('probe id', probe_id)}"

    @property
    def everything(self) -> str:
        return f"{self.base}/#"

    @staticmethod
    def all_satellites(root: str = LIVE_ROOT) -> str:
        return f"{root}/#"

    def _levels(self, topic: str) -> list[str] | None:
        """The topic levels after this satellite's ``base``, or None for another satellite's topic."""
        parts = topic.split("/")
        base = self.base.split("/")
        if parts[: len(base)] != base:
            return None
        return parts[len(base) :]

    def job_id_of(self, topic: str) -> str | None:
        """The job id in a ``jobs/<id>/state`` or ``results/<id>`` topic of this satellite."""
        rest = self._levels(topic)
        if rest is None:
            return None
        if len(rest) == 3 and rest[0] == "jobs" and rest[2] == "state":
            return rest[1]
        if len(rest) == 2 and rest[0] == "results":
            return rest[1]
        return None

    def telemetry_channel_of(self, topic: str) -> str | None:
        """The channel in a ``tlm/<channel>`` topic of this satellite, None for any other topic or a
        level that is no valid identifier."""
        rest = self._levels(topic)
        if rest is not None and len(rest) == 2 and rest[0] == "tlm" and is_identifier(rest[1]):
            return rest[1]
        return None

    def upload_id_of(self, topic: str) -> str | None:
        """The upload id in a ``models/upload/<id>`` topic of this satellite (not its ``/progress``)."""
        rest = self._levels(topic)
        if rest is not None and len(rest) == 3 and rest[:2] == ["models", "upload"]:
            return rest[2]
        return None
