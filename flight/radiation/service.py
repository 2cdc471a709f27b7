"""flightd's soft-error service: scrubbing on a period, redundant runs per job, the ``soft_errors``
counters and the TEST-ONLY fault-injection command (docs/radiation.md).

The daemon owns one :class:`SoftErrorService` and calls it at the edges:

- :meth:`~SoftErrorService.scrub` from the control cycle: the scrubber checks the blocks the elapsed
  time owes (one full sweep of every held weight per ``radiation.scrub_period_s``) and repairs what fails
  from a clean replica or from the model file, re-verified (sha256) by the registry before every reload,
  all before the step returns, so the next run computes from repaired weights. Each finding publishes a
  ``soft_error`` event; the jobs run on the corrupt replica since the block last verified are handed to
  ``recompute`` (``suspect_results = "rerun"``) or flagged in the event (``"flag"``); a model whose
  repair fails is unloaded (its file can no longer be trusted either). Its CPU time is measured.
- :meth:`~SoftErrorService.mode` and :meth:`~SoftErrorService.sessions` before a run: the job's mode
  (its own, else its model's and priority's default; raised to the governor's high-flux floor) and the
  session each run reads (flight.radiation.held.HeldWeights.slot_for).
- :meth:`~SoftErrorService.account` after a run: counters, the run log of held models, an event when
  redundant runs disagreed and, for a held model, an immediate check of its replicas (the runs
  themselves check and repair them before a vote: flight.radiation.held).
- :meth:`~SoftErrorService.inject` for the ``inject_fault`` command (refused unless enabled).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from flight.executor import RunOutcome, SessionFor
from flight.radiation.held import CPU, HeldWeights
from flight.radiation.injection import FaultInjector, JobFaultHooks
from flight.radiation.ledger import JobRuns, RunLog, SoftErrorLedger
from flight.radiation.redundancy import Verdict, strongest
from flight.radiation.scrubber import ScrubReport
from flight.registry import ModelRegistry, RegisteredModel
from flight.settings import RadiationSettings
from link.messages import EventKind, FaultTarget, InjectFault, JobRequest, Redundancy, Severity

log = logging.getLogger("flightd.radiation")

EventSink = Callable[..., None]
"""``event(kind, message, severity=..., **details)``: flightd's event publisher."""


class InjectionRefused(ValueError):
    """An ``inject_fault`` command flightd cannot carry out; ``str()`` is the reason for the reply."""


class SoftErrorService:
    """See the module docstring. ``recompute(job_ids, reason)`` computes finished jobs again (the
    daemon's, since it owns the journal and the link)."""

    def __init__(self, settings: RadiationSettings, registry: ModelRegistry, event: EventSink,
                 recompute: Callable[[list[str], str], None], step_s: float = 1.0) -> None:
        """``step_s``: how often :meth:`scrub` is called (the control period); the sweep runs that much
        faster than ``scrub_period_s`` (at most twice as fast), so a flip is found within the period."""
        period = settings.scrub_period_s
        registry.held.scrubber.period_s = max(period - step_s, period / 2)
        self.settings = settings
        self.registry = registry
        self.event = event
        self.recompute = recompute
        self.ledger = SoftErrorLedger()
        self.run_log = RunLog(3 * settings.scrub_period_s + 5.0)
        self.injector = FaultInjector() if settings.test_fault_injection else None
        self._sampled = (time.monotonic(), 0.0)

    @property
    def held(self) -> HeldWeights:
        return self.registry.held

    def announce(self) -> None:
        """Say loudly (log and event) that the TEST-ONLY fault injection is on; nothing when it is off."""
        if self.injector is None:
            return
        text = ("TEST-ONLY fault injection is ENABLED (radiation.test_fault_injection): the inject_fault command "
                "flips bits in weights, runs and stored jobs. Never fly this setting.")
        log.warning(text)
        self.event(EventKind.SOFT_ERROR, text, severity="warning", test_fault_injection=True)

    # ------------------------------------------------------------------------------------ runs

    def mode(self, req: JobRequest, priority: int, floor: Redundancy) -> Redundancy:
        """The job's mode: its own, else its model's and priority's default; never below ``floor``."""
        asked = req.redundancy or self.settings.default_redundancy(req.model, priority)
        return strongest(asked, floor)

    def sessions(self, entry: RegisteredModel, threads: int) -> SessionFor:
        """The session of each of a job's runs (built on first use, on the executor's thread). Call it on
        the event loop: what a check before a vote finds is handled there."""
        ref, held, registry = entry.ref, self.registry.held, self.registry
        loop = asyncio.get_running_loop()

        def found(report: ScrubReport) -> None:
            loop.call_soon_threadsafe(self._handle, report)

        def session_for(run: int, used: set[int]) -> tuple[int, Any, frozenset[int]]:
            slot, repaired = held.slot_for(ref, run, used, found)
            return slot, registry.session(entry, threads, slot), repaired

        return session_for

    def hooks(self, job_id: str, model: str) -> JobFaultHooks | None:
        return self.injector.hooks(job_id, model) if self.injector is not None else None

    def scrubbed(self, entry: RegisteredModel, provider: str) -> bool:
        """Whether a run of ``entry`` on ``provider`` computed from weights flightd holds and scrubs."""
        return entry.ref in self.held.stores and provider == CPU

    def account(self, job_id: str, entry: RegisteredModel, mode: Redundancy, outcome: RunOutcome,
                threads: int) -> None:
        """Count a finished job's runs, log them for the scrubber's suspects, report a disagreement."""
        led, times = self.ledger, outcome.run_times or (outcome.run_s,)
        led.first_run_core_s += times[0] * threads
        led.redundant_core_s += sum(times[1:]) * threads
        led.checked_jobs += mode is not Redundancy.NONE
        if entry.ref in self.held.stores:
            end = time.monotonic()
            self.run_log.record(JobRuns(job_id, entry.ref, frozenset(outcome.slots), end - outcome.run_s, end))
        if outcome.verdict.status == "voted":
            self.disagreed(job_id, entry, mode, outcome.verdict, outcome.slots)

    def disagreed(self, job_id: str, entry: RegisteredModel, mode: Redundancy, verdict: Verdict,
                  slots: tuple[int, ...] = ()) -> None:
        """Redundant runs gave different answers: count, publish, and check the model's replicas now."""
        self.ledger.mismatches += 1
        resolved = verdict.status == "voted"
        self.ledger.unresolved += not resolved
        text = (f"job {job_id}: {mode.value} runs of {entry.ref} disagreed; "
                + ("the majority's answer was taken" if resolved else "no majority: the job fails"))
        log.warning(text)
        severity: Severity = "warning" if resolved else "error"
        self.event(EventKind.SOFT_ERROR, text, severity=severity, job_id=job_id, model=entry.ref,
                   redundancy=mode.value, verdict=verdict.status, runs=verdict.runs, slots=list(slots))
        if entry.ref in self.held.stores:  # a flip in one replica shows here before the sweep reaches it
            self._handle(self.held.check_now(entry.ref))

    # --------------------------------------------------------------------------------- scrubbing

    def scrub(self) -> ScrubReport | None:
        """One scrubber step (see the module docstring); None when no weights are held."""
        scrubber = self.held.scrubber
        if not scrubber.stores:
            return None
        start = time.thread_time()
        report = self.held.step(time.monotonic())
        self._handle(report)
        self.ledger.scrub_cpu_s += time.thread_time() - start
        return report

    def _handle(self, report: ScrubReport) -> None:
        led = self.ledger
        led.blocks_corrupt += len(report.found)
        led.bits_repaired += sum(r.bits for r in report.repaired)
        for ref, why in report.failed.items():
            led.repairs_failed += 1
            self.registry.unload(ref, f"weights corrupt and could not be repaired: {why}")
            self.event(EventKind.SOFT_ERROR, f"model {ref}: corrupt weights could not be repaired ({why}); "
                       "model unloaded", severity="error", model=ref)
        if not report.found:
            return
        suspects = sorted({job for corrupt in report.found for job in self.run_log.suspects(corrupt)})
        led.suspect_jobs += len(suspects)
        action = self.settings.suspect_results
        now = time.monotonic()
        blocks = [{"model": c.model, "replica": c.replica, "block": c.block, "tensors": list(c.tensors[:8]),
                   "clean_age_s": round(now - c.clean_at, 3)} for c in report.found]
        repairs = [{"model": r.block.model, "replica": r.block.replica, "block": r.block.block, "source": r.source,
                    "bits": r.bits} for r in report.repaired]
        models = sorted({c.model for c in report.found})
        text = (f"weights of {', '.join(models)}: {len(report.found)} corrupt block(s) found, "
                f"{len(report.repaired)} repaired; {len(suspects)} job(s) ran on them since their last clean check"
                + (f" ({'re-run' if action == 'rerun' else 'flagged'})" if suspects else ""))
        log.warning(text)
        self.event(EventKind.SOFT_ERROR, text, severity="warning", blocks=blocks, repairs=repairs,
                   suspect_jobs=suspects, action=action)
        if action == "rerun" and suspects:
            self.recompute(suspects, "it ran on weights the scrubber later found corrupt")

    # -------------------------------------------------------------------------------- telemetry

    def sample(self) -> dict[str, float]:
        """The ``soft_errors`` channel's values now (``scrub_cpu`` over the time since the last sample)."""
        led = self.ledger
        now = time.monotonic()
        last_t, last_cpu = self._sampled
        led.scrub_cpu = min(1.0, max(0.0, (led.scrub_cpu_s - last_cpu) / max(now - last_t, 1e-6)))
        self._sampled = (now, led.scrub_cpu_s)
        led.weight_bytes = float(self.held.held_bytes())
        if self.injector is not None:
            inj = self.injector
            led.injected_weight_bits, led.injected_run_faults = inj.injected_weight_bits, inj.injected_run_faults
            led.run_faults_changed, led.run_faults_detected = inj.run_faults_changed, inj.run_faults_detected
            led.run_faults_escaped = inj.run_faults_escaped
        return led.values()

    # -------------------------------------------------------------------------------- injection

    def injector_or_refuse(self) -> FaultInjector:
        """The fault injector; InjectionRefused when flightd was not started with it."""
        if self.injector is None:
            raise InjectionRefused("fault injection is disabled: inject_fault is a TEST-ONLY command, accepted only "
                                   "when flightd is started with radiation.test_fault_injection = true")
        return self.injector

    def inject(self, body: InjectFault) -> dict[str, Any]:
        """Carry out ``body`` for weights and runs (stored blobs: :meth:`stored_positions` and the journal).
        InjectionRefused when fault injection is off or there is no such target."""
        injector = self.injector_or_refuse()
        log.warning("TEST-ONLY fault injection: %s", body.model_dump_json(exclude_none=True))
        if body.target is FaultTarget.WEIGHTS:
            stores = [s for ref, s in sorted(self.held.stores.items())
                      if body.model is None or ref.partition("/")[0] == body.model]
            if not stores:
                raise InjectionRefused(f"no weights of {body.model or 'any model'} are held by flightd (configure "
                                       "radiation.models.<name>.owned_weights and run a job of it first)")
            store = stores[int(injector.rng.integers(0, len(stores)))]
            try:
                flips = injector.flip_weights(store, body.replica, body.count, body.bits, body.adjacent, body.seed)
            except ValueError as exc:
                raise InjectionRefused(str(exc)) from exc
            return {"target": body.target.value, "model": store.model, "flips": flips}
        if body.target in (FaultTarget.RUN_INPUT, FaultTarget.RUN_OUTPUT):
            place = body.target.value.removeprefix("run_")
            waiting = injector.arm(place, body.model, body.count, body.bits, body.adjacent)
            return {"target": body.target.value, "armed": body.count, "waiting": waiting}
        raise InjectionRefused(f"{body.target.value}: stored blobs are flipped through the journal")

    def stored_positions(self, body: InjectFault) -> list[int]:
        """Bit positions for a ``stored_*`` injection (the journal takes them modulo the blob's size)."""
        injector = self.injector_or_refuse()
        if body.job_id is None:
            raise InjectionRefused(f"{body.target.value} needs a job_id")
        log.warning("TEST-ONLY fault injection: %s", body.model_dump_json(exclude_none=True))
        return [int(b) for b in injector.rng.integers(0, 1 << 48, size=body.count * body.bits)]
