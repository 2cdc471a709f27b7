"""PlantState -> telemetry values per channel (the contract of BRIEF/docs/icd.md: power, thermal, orbit).

Extra measurements beyond the contract (``shunt_w``, ``unserved_w``, ``busy_cores`` on power;
``illumination`` on orbit) are documented in docs/plant.md.
"""

from __future__ import annotations

from hil.plant.plant import PlantState

CHANNELS = ("power", "thermal", "orbit")


def channel_values(state: PlantState) -> dict[str, dict[str, float]]:
    """Measurement name -> value for each plant channel, SI units / °C as named."""
    sunlit = 1.0 if state.sunlit else 0.0
    return {
        "power": {
            "soc": state.soc,
            "battery_v": state.battery_v,
            "battery_a": state.battery_a,
            "battery_wh": state.battery_wh,
            "solar_w": state.solar_w,
            "load_w": state.load_w,
            "bus_w": state.bus_w,
            "compute_w": state.compute_w,
            "sunlit": sunlit,
            "shunt_w": state.shunt_w,
            "unserved_w": state.unserved_w,
            "busy_cores": state.busy_cores,
        },
        "thermal": {"board_c": state.board_c, "radiator_c": state.radiator_c},
        "orbit": {
            "sunlit": sunlit,
            "beta_deg": state.beta_deg,
            "period_s": state.period_s,
            "eclipse_fraction": state.eclipse_fraction,
            "t_orbit_s": state.t_orbit_s,
            "illumination": state.illumination,
        },
    }
