"""The ground telemetry archive: record (MQTT -> SQLite), query, plot and replay (docs/telemetry-archive.md).

Library entry points: :class:`~ground.tlm.archive.Archive`, :func:`~ground.tlm.recorder.record`,
:func:`~ground.tlm.replay.replay` / :func:`~ground.tlm.replay.replay_async`, :func:`~ground.tlm.plot.plot`.
"""
