"""The space–ground interface shared by every orbitd segment.

Everything that crosses the link is defined here and nowhere else: the pydantic message models
(:mod:`link.messages`), the topic tree (:mod:`link.topics`), tensor encoding (:mod:`link.tensor`),
the framed wire codec (:mod:`link.codec`), command authentication (:mod:`link.auth`), signed
requests (:mod:`link.envelope`), the model manifest (:mod:`link.manifest`) and the telemetry
dictionary (:mod:`link.telemetry`). docs/icd.md is the prose version of this package.
"""

SCHEMA_VERSION = 1
"""Version of every message schema in this package; a message carrying another version is rejected."""
