"""The telemetry dictionary (link/telemetry.py) is what the plant, flightd and docs/icd.md say.

The wire orders below are written out by hand (they are what the plant and flightd have always
published), so a change of a channel's keys or their order fails here before it reaches the wire.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ground.icd import telemetry_table, with_telemetry_table
from hil.plant.telemetry import channel_values
from hil.scenario import SCENARIO_DIR, load_scenario
from link.codec import encode
from link.messages import Mode, Telemetry
from link.telemetry import CHANNELS, PLANT_CHANNELS, compute_values, mode_from_code, value_problem

ICD = Path(__file__).resolve().parent.parent / "docs" / "icd.md"

POWER_KEYS = ["soc", "battery_v", "battery_a", "battery_wh", "solar_w", "load_w", "bus_w", "compute_w", "sunlit",
              "shunt_w", "unserved_w", "busy_cores"]
THERMAL_KEYS = ["board_c", "radiator_c"]
ORBIT_KEYS = ["sunlit", "beta_deg", "period_s", "eclipse_fraction", "t_orbit_s", "illumination"]
COMPUTE_KEYS = ["busy_cores", "running", "queued", "jobs_done", "concurrency", "intra_op_threads", "duty_cycle",
                "mode_code", "budget_w"]
RADIATION_KEYS = ["b_nt", "l_shell", "cutoff_gv", "flux", "upset_rate_per_mbit_day"]
SOFT_ERROR_KEYS = ["weight_bytes", "scrub_cpu", "scrub_cpu_s", "blocks_corrupt", "bits_repaired", "repairs_failed",
                   "suspect_jobs", "reruns_changed", "checked_jobs", "mismatches", "unresolved", "first_run_core_s",
                   "redundant_core_s", "stored_corrupt", "injected_weight_bits", "injected_run_faults",
                   "run_faults_changed", "run_faults_detected", "run_faults_escaped"]


def test_dictionary_channels_keys_and_units() -> None:
    assert list(CHANNELS) == ["power", "thermal", "orbit", "compute", "board", "clock", "radiation",
                             "soft_errors"]
    assert list(CHANNELS["board"].keys) == ["temp_c", "power_w", "under_voltage", "throttled", "busy_cores"]
    assert [CHANNELS["board"].measurement(k).unit for k in CHANNELS["board"].keys] == ["°C", "W", "flag", "flag",
                                                                                        "cores"]
    assert list(CHANNELS["clock"].keys) == ["rate", "met_s"] and CHANNELS["clock"].measurement("rate").unit == "s/s"
    assert CHANNELS["clock"].measurement("met_s").unit == "s"
    assert PLANT_CHANNELS == ("power", "thermal", "orbit")
    assert list(CHANNELS["power"].keys) == POWER_KEYS
    assert list(CHANNELS["thermal"].keys) == THERMAL_KEYS
    assert list(CHANNELS["orbit"].keys) == ORBIT_KEYS
    assert list(CHANNELS["compute"].keys) == COMPUTE_KEYS
    assert list(CHANNELS["radiation"].keys) == RADIATION_KEYS
    assert list(CHANNELS["soft_errors"].keys) == SOFT_ERROR_KEYS
    assert CHANNELS["radiation"].measurement("b_nt").unit == "nT"
    assert CHANNELS["radiation"].measurement("upset_rate_per_mbit_day").unit == "/Mbit/day"
    for channel in CHANNELS.values():
        assert all(m.unit and m.description for m in channel.measurements), channel.name
    units = {(ch, m.key): m.unit for ch, c in CHANNELS.items() for m in c.measurements}
    assert units[("power", "battery_v")] == "V" and units[("power", "battery_wh")] == "Wh"
    assert units[("thermal", "board_c")] == "°C" and units[("orbit", "t_orbit_s")] == "s"
    assert CHANNELS["power"].measurement("soc").unit == "fraction"
    with pytest.raises(KeyError, match="channel thermal has no value 'soc'"):
        CHANNELS["thermal"].measurement("soc")


def test_mode_codes() -> None:
    assert [mode_from_code(c) for c in (0, 1, 2, 2.0)] == [Mode.NOMINAL, Mode.THROTTLED, Mode.SAFE, Mode.SAFE]
    assert mode_from_code(3) is None and mode_from_code(-1) is None
    assert "0 nominal, 1 throttled, 2 safe" in CHANNELS["compute"].measurement("mode_code").description


def test_plant_state_becomes_the_dictionary_channels_on_the_wire() -> None:
    state = load_scenario("nominal-550km").build_plant().step(10.0, busy_cores=1.0)
    values = channel_values(state)
    assert list(values) == ["power", "thermal", "orbit"]
    assert list(values["power"]) == POWER_KEYS
    assert list(values["thermal"]) == THERMAL_KEYS
    assert list(values["orbit"]) == ORBIT_KEYS
    assert state.sunlit and values["power"]["sunlit"] == 1.0 and values["orbit"]["sunlit"] == 1.0
    # byte for byte what the plant published before the dictionary: its hand-written mapping
    by_hand = {
        "power": {"soc": state.soc, "battery_v": state.battery_v, "battery_a": state.battery_a,
                  "battery_wh": state.battery_wh, "solar_w": state.solar_w, "load_w": state.load_w,
                  "bus_w": state.bus_w, "compute_w": state.compute_w, "sunlit": 1.0, "shunt_w": state.shunt_w,
                  "unserved_w": state.unserved_w, "busy_cores": state.busy_cores},
        "thermal": {"board_c": state.board_c, "radiator_c": state.radiator_c},
        "orbit": {"sunlit": 1.0, "beta_deg": state.beta_deg, "period_s": state.period_s,
                  "eclipse_fraction": state.eclipse_fraction, "t_orbit_s": state.t_orbit_s,
                  "illumination": state.illumination},
    }
    for channel, expected in by_hand.items():
        got = encode(Telemetry(sat="sat1", channel=channel, t_s=state.t_s, at_utc=1.5, values=values[channel]))
        assert got == encode(Telemetry(sat="sat1", channel=channel, t_s=state.t_s, at_utc=1.5, values=expected))


def test_compute_values_wire_order_and_optional_budget() -> None:
    kw = dict(busy_cores=1.25, running=1, queued=3, jobs_done=7, concurrency=1, intra_op_threads=2, duty_cycle=0.625)
    values = compute_values(**kw, mode=Mode.THROTTLED, budget_w=55.5)  # type: ignore[arg-type]
    assert list(values) == COMPUTE_KEYS
    assert values == {"busy_cores": 1.25, "running": 1.0, "queued": 3.0, "jobs_done": 7.0, "concurrency": 1.0,
                      "intra_op_threads": 2.0, "duty_cycle": 0.625, "mode_code": 1.0, "budget_w": 55.5}
    assert all(isinstance(v, float) for v in values.values())
    safe = compute_values(**kw, mode=Mode.SAFE, budget_w=None)  # type: ignore[arg-type]
    assert list(safe) == COMPUTE_KEYS[:-1] and safe["mode_code"] == 2.0
    wire = json.loads(encode(Telemetry(sat="s", channel="compute", t_s=0.0, values=safe)))
    assert list(wire["values"]) == COMPUTE_KEYS[:-1]


def test_icd_table_is_generated_from_the_dictionary() -> None:
    doc = ICD.read_text()
    assert with_telemetry_table(doc) == doc, "docs/icd.md is stale: run python -m ground.icd docs/icd.md"
    table = telemetry_table()
    for channel in CHANNELS.values():
        assert f"| `{channel.name}` | {channel.source} |" in table
        for m in channel.measurements:
            assert f"| `{m.key}` | {m.unit} | {m.range_text} | {m.description} |" in table
    with pytest.raises(ValueError, match="markers not found"):
        with_telemetry_table("# no table here\n")


@pytest.mark.parametrize("scenario", sorted(p.stem for p in SCENARIO_DIR.glob("*.toml")))
def test_every_plant_reading_of_every_scenario_lies_in_its_physical_range(scenario: str) -> None:
    """The link refuses a reading outside the dictionary's physical range: the plant never makes one
    (two orbits, the load stepping through 0..4 busy cores)."""
    plant = load_scenario(scenario).build_plant()
    problems: set[str] = set()
    for k in range(1200):
        for channel, values in channel_values(plant.step(10.0, busy_cores=float(k % 5))).items():
            problems.update(p for key, v in values.items() if (p := value_problem(channel, key, v)) is not None)
    assert not problems, sorted(problems)[:5]
