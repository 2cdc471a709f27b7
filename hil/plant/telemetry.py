"""PlantState -> telemetry values per channel: the one place a plant state becomes telemetry, for
the plant on MQTT (``hil plant``, the SIL), the policy simulator and the scoring of its runs.

What each plant channel carries is the telemetry dictionary's (:data:`link.telemetry.CHANNELS`, the
channels of :data:`link.telemetry.PLANT_CHANNELS`), in its order: every value is the
:class:`~hil.plant.plant.PlantState` field of the same name (``sunlit`` as 1.0 / 0.0).
"""

from __future__ import annotations

from hil.plant.plant import PlantState
from link.telemetry import CHANNELS, PLANT_CHANNELS

_KEYS: tuple[tuple[str, tuple[str, ...]], ...] = tuple((ch, CHANNELS[ch].keys) for ch in PLANT_CHANNELS)


def channel_values(state: PlantState) -> dict[str, dict[str, float]]:
    """Value name -> value for each plant channel (units in :data:`link.telemetry.CHANNELS`)."""
    return {channel: {key: float(getattr(state, key)) for key in keys} for channel, keys in _KEYS}

