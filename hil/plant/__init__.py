"""The pure plant simulator of a compute satellite: orbit and illumination, solar array, battery,
thermal nodes, loads and faults. No clock, no I/O: see :class:`hil.plant.plant.Plant` and docs/plant.md."""

from hil.plant.battery import BatteryModel, BatteryParams
from hil.plant.faults import Fault, FaultSchedule, TelemetryFaults
from hil.plant.illumination import IlluminationModel, IlluminationTable
from hil.plant.loads import BoardProfile, LoadModel
from hil.plant.orbit import CircularOrbit, TleOrbit
from hil.plant.plant import LinearParameters, Plant, PlantConfig, PlantState, PlantTrace, SolarForecast
from hil.plant.solar import SolarArray
from hil.plant.thermal import ThermalModel, ThermalParams

__all__ = [
    "BatteryModel",
    "BatteryParams",
    "BoardProfile",
    "CircularOrbit",
    "Fault",
    "FaultSchedule",
    "IlluminationModel",
    "IlluminationTable",
    "LinearParameters",
    "LoadModel",
    "Plant",
    "PlantConfig",
    "PlantState",
    "PlantTrace",
    "SolarArray",
    "SolarForecast",
    "TelemetryFaults",
    "ThermalModel",
    "ThermalParams",
    "TleOrbit",
]
