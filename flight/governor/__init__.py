"""orbitd's governor: limits, modes, predictive power budget and scheduler policy (pure code).

Entry points: :class:`flight.governor.governor.Governor` (one ``update`` per control cycle),
:class:`flight.governor.config.GovernorConfig`, :func:`flight.governor.admission.plan_dispatch`.
"""

from flight.governor.admission import Allocation, DispatchPlan, RunningJob, plan_dispatch
from flight.governor.config import GovernorConfig
from flight.governor.governor import Decision, Governor, Sample
from flight.queue_policy import QueuedJob

__all__ = [
    "Allocation",
    "Decision",
    "DispatchPlan",
    "Governor",
    "GovernorConfig",
    "QueuedJob",
    "RunningJob",
    "Sample",
    "plan_dispatch",
]
