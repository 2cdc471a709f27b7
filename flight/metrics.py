"""flightd's Prometheus metrics: every metric defined here, fed by a few calls from the daemon, served
on ``http://<host>:<port>/metrics`` when ``[metrics] enabled = true`` (off by default).

Names follow Prometheus's conventions (base units in the name: seconds, watts, celsius; ``_total``
for counters). Each metric and what feeds it:

==========================================  =========  ==========================================================
``orbitd_info{sat, version}``               info       constant 1: which satellite, which flightd
``orbitd_mode{orbitd_mode}``                enum       governor mode: 1 for the current of nominal/throttled/safe
``orbitd_power_budget_watts``               gauge      board power budget the governor allows, W (NaN: no governor)
``orbitd_queue_depth``                      gauge      jobs queued onboard
``orbitd_jobs_running``                     gauge      jobs running
``orbitd_jobs{state}``                      gauge      jobs in the journal by state (updated every heartbeat)
``orbitd_inference_duration_seconds``       histogram  inference run time per finished job, by ``model``, s
``orbitd_control_cycle_slip_seconds``       histogram  how late each control cycle started, s
``orbitd_control_cycle_overruns_total``     counter    control cycles that started more than one period late
``orbitd_journal_commit_duration_seconds``  histogram  one journal transaction (writes + commit/fsync), s
``orbitd_journal_writes_total``             counter    journal writes committed
``orbitd_board_power_watts``                gauge      compute board power, W (a board probe, else ``power.compute_w``)
``orbitd_board_temperature_celsius``        gauge      compute board temperature, °C (a probe, else ``thermal.board_c``)
``orbitd_sequence_firings_total{sequence}`` counter    sequence entries fired (jobs submitted by the sequencer)
``orbitd_inbound_shed_total{pipe}``         counter    messages dropped from a full inbound pipe (flight/inbox.py)
==========================================  =========  ==========================================================

Board power and temperature: the daemon feeds them from telemetry (:meth:`FlightMetrics.board`:
the power system's ``compute_w`` and the thermal sensors' ``board_c``, i.e. the plant simulator under
``hil``) and from each sample of its board monitor (:meth:`FlightMetrics.board_probe`, the same sample
that goes out on ``tlm/board``; flight/board_monitor.py): once a probe has measured a quantity, the
probe's reading is the one served and telemetry no longer overwrites it (flightd measures the board
it runs on directly). A board without a power sensor keeps telemetry's power.

Every metric lives in the :class:`FlightMetrics` object's own registry (not prometheus_client's
global one), so two daemons in one process, or a test, do not mix. The observe/set calls are
thread-safe (the journal writer thread reports its commits directly). The HTTP server is
prometheus_client's own WSGI server on a daemon thread: it reads the registry and touches nothing
of the daemon's.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info, start_http_server

from link.messages import JobState, Mode

if TYPE_CHECKING:
    from flight.board import BoardSample

INFERENCE_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Inference histogram buckets, s: 1 ms (digits int8 on a PC) to 30 s (a tile batch on a Pi)."""

FAST_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
"""Slip and commit histogram buckets, s: 0.1 ms to 1 s (an fsync on an SD card reaches 100 ms)."""


class FlightMetrics:
    """The metrics of one flightd; :meth:`serve` starts the endpoint, :meth:`close` stops it."""

    def __init__(self, sat: str, version: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        Info("orbitd", "the satellite and flightd version", registry=r).info({"sat": sat, "version": version})
        self.mode = Enum("orbitd_mode", "governor mode", states=[m.value for m in Mode], registry=r)
        self.budget_w = Gauge("orbitd_power_budget_watts", "board power budget allowed by the governor, W",
                              registry=r)
        self.queue_depth = Gauge("orbitd_queue_depth", "jobs queued onboard", registry=r)
        self.running = Gauge("orbitd_jobs_running", "jobs running", registry=r)
        self.jobs = Gauge("orbitd_jobs", "jobs in the journal by state", ["state"], registry=r)
        self.inference_s = Histogram("orbitd_inference_duration_seconds", "inference run time per job, s",
                                     ["model"], buckets=INFERENCE_BUCKETS_S, registry=r)
        self.cycle_slip_s = Histogram("orbitd_control_cycle_slip_seconds", "control cycle start lateness, s",
                                      buckets=FAST_BUCKETS_S, registry=r)
        self.cycle_overruns = Counter("orbitd_control_cycle_overruns", "control cycles more than a period late",
                                      registry=r)
        self.commit_s = Histogram("orbitd_journal_commit_duration_seconds", "journal transaction time, s",
                                  buckets=FAST_BUCKETS_S, registry=r)
        self.journal_writes = Counter("orbitd_journal_writes", "journal writes committed", registry=r)
        self.board_w = Gauge("orbitd_board_power_watts", "compute board power, W", registry=r)
        self.board_c = Gauge("orbitd_board_temperature_celsius", "compute board temperature, °C", registry=r)
        self.sequence_firings = Counter("orbitd_sequence_firings", "sequence entries fired", ["sequence"],
                                        registry=r)
        self.inbound_shed = Counter("orbitd_inbound_shed", "received messages dropped from a full inbound pipe",
                                    ["pipe"], registry=r)
        self.budget_w.set(math.nan)
        self.board_w.set(math.nan)
        self.board_c.set(math.nan)
        for state in JobState:
            self.jobs.labels(state.value).set(0)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._overruns_seen = 0
        self._probed_power = self._probed_temperature = False

    # ------------------------------------------------------------------------------ feeding

    def control_cycle(self, *, mode: Mode, budget_w: float | None, queued: int, running: int, slip_s: float,
                      overruns: int) -> None:
        """Once per control cycle: the throttle the governor chose, the queue, the cycle's own slip
        (s) and the rate group's overrun count so far."""
        self.mode.state(mode.value)
        self.budget_w.set(math.nan if budget_w is None else budget_w)
        self.queue_depth.set(queued)
        self.running.set(running)
        self.cycle_slip_s.observe(max(0.0, slip_s))
        if overruns > self._overruns_seen:
            self.cycle_overruns.inc(overruns - self._overruns_seen)
            self._overruns_seen = overruns

    def job_counts(self, counts: Mapping[str, int]) -> None:
        """Jobs by state, as :meth:`flight.journal.JobJournal.counts` gives them (absent: 0)."""
        for state in JobState:
            self.jobs.labels(state.value).set(counts.get(state.value, 0))

    def inference(self, model: str, run_s: float) -> None:
        self.inference_s.labels(model).observe(run_s)

    def journal_commit(self, writes: int, seconds: float) -> None:
        """One journal transaction of ``writes`` writes took ``seconds`` (called on the writer thread)."""
        self.commit_s.observe(seconds)
        self.journal_writes.inc(writes)

    def board(self, *, power_w: float | None = None, temperature_c: float | None = None) -> None:
        """The compute board's power (W) and temperature (°C) from telemetry, whichever is known; a
        quantity a board probe has measured (:meth:`board_probe`) is left as the probe set it."""
        if power_w is not None and not self._probed_power:
            self.board_w.set(power_w)
        if temperature_c is not None and not self._probed_temperature:
            self.board_c.set(temperature_c)

    def board_probe(self, sample: BoardSample) -> None:
        """A reading of the board itself (:meth:`flight.board.BoardProbe.sample`): its ``power_w`` (W)
        and ``temp_c`` (°C), where the board has the sensor, replace telemetry's from now on."""
        if sample.power_w is not None:
            self._probed_power = True
            self.board_w.set(sample.power_w)
        if sample.temp_c is not None:
            self._probed_temperature = True
            self.board_c.set(sample.temp_c)

    def sequence_fired(self, sequence_id: str) -> None:
        self.sequence_firings.labels(sequence_id).inc()

    def shed(self, by_pipe: Mapping[str, int]) -> None:
        """Messages dropped from full inbound pipes since the last call, by pipe name."""
        for pipe, n in by_pipe.items():
            self.inbound_shed.labels(pipe).inc(n)

    # ------------------------------------------------------------------------------ serving

    def serve(self, host: str, port: int) -> int:
        """Start the ``/metrics`` endpoint on ``host:port`` (port 0: any free one); returns the port.
        Raises OSError when the address cannot be bound."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        self._server, self._thread = server, thread
        return int(server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
