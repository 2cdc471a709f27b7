"""``ground icd xtce``: the XTCE 1.2 mission database validates against OMG's schema and says what
the telemetry dictionary, the configured limits and the command bodies say."""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema

from flight.governor.limits import LimitConfig, LimitKind, Limits, LimitSeverity
from ground.cli import main as ground_main
from ground.xtce import XTCE_NS, command_bodies, mission_database
from link.telemetry import CHANNELS

SCHEMA = Path(__file__).resolve().parent / "data" / "xtce" / "SpaceSystem-1.2.xsd"
SCHEMA_SHA256 = "acc3fafc8f16e6c8993335d27c4a1931b2b7eb0e7d1a57b73e745056ca93060d"
NS = {"x": XTCE_NS}


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema:
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256, "the committed XSD changed"
    return xmlschema.XMLSchema(str(SCHEMA))


def _errors(schema: xmlschema.XMLSchema, path: Path) -> list[str]:
    return [f"{e.path}: {e.reason}" for e in schema.iter_errors(str(path))]


def test_cli_writes_a_document_that_validates(tmp_path: Path, schema: xmlschema.XMLSchema) -> None:
    out = tmp_path / "mdb" / "orbitd.xml"
    assert ground_main(["--sat", "sat7", "icd", "xtce", "-o", str(out)]) == 0
    assert _errors(schema, out) == []
    root = ET.parse(out).getroot()
    assert root.tag == f"{{{XTCE_NS}}}SpaceSystem" and root.get("name") == "sat7"


def test_a_broken_document_does_not_validate(tmp_path: Path, schema: xmlschema.XMLSchema) -> None:
    tree = mission_database(Limits().configs())
    param = tree.getroot().find(".//x:Parameter", NS)
    assert param is not None
    param.set("name", "not/a name")  # XTCE NameType forbids '/' and spaces
    path = tmp_path / "broken.xml"
    tree.write(path, encoding="UTF-8", xml_declaration=True)
    assert any("not/a name" in e or "NameType" in e or "pattern" in e for e in _errors(schema, path))


def test_every_channel_and_measurement_with_unit_and_wire_order(tmp_path: Path) -> None:
    root = mission_database(Limits().configs()).getroot()
    systems = {s.get("name"): s for s in root.findall("x:SpaceSystem", NS)}
    assert list(systems) == list(CHANNELS)
    for name, channel in CHANNELS.items():
        system = systems[name]
        params = [p.get("name") for p in system.findall("x:TelemetryMetaData/x:ParameterSet/x:Parameter", NS)]
        assert params == list(channel.keys)
        entries = system.findall("x:TelemetryMetaData/x:ContainerSet/x:SequenceContainer/x:EntryList/*", NS)
        assert [e.get("parameterRef") for e in entries] == list(channel.keys)
        types = {t.get("name"): t for t in system.find("x:TelemetryMetaData/x:ParameterTypeSet", NS) or []}
        for m in channel.measurements:
            t = types[f"{m.key}_type"]
            units = [u.text for u in t.findall("x:UnitSet/x:Unit", NS)]
            if m.unit in ("flag", "code", "count"):
                assert units == []
            else:
                assert units == [m.unit], (name, m.key)
    compute_types = systems["compute"].find("x:TelemetryMetaData/x:ParameterTypeSet", NS)
    assert compute_types is not None
    mode = compute_types.find("x:EnumeratedParameterType[@name='mode_code_type']", NS)
    assert mode is not None
    labels = {e.get("value"): e.get("label") for e in mode.findall("x:EnumerationList/x:Enumeration", NS)}
    assert labels == {"0": "NOMINAL", "1": "THROTTLED", "2": "SAFE"}
    sunlit = systems["orbit"].find(".//x:BooleanParameterType[@name='sunlit_type']", NS)
    assert sunlit is not None


def _ranges(root: ET.Element, channel: str, key: str) -> tuple[str | None, dict[str, dict[str, str]]]:
    t = root.find(f"x:SpaceSystem[@name='{channel}']/x:TelemetryMetaData/x:ParameterTypeSet/*[@name='{key}_type']", NS)
    assert t is not None
    alarm = t.find("x:DefaultAlarm", NS)
    if alarm is None:
        return None, {}
    ranges = alarm.find("x:StaticAlarmRanges", NS)
    assert ranges is not None
    return alarm.get("minViolations"), {r.tag.split("}")[1]: dict(r.attrib) for r in ranges}


def test_limits_come_from_flightd_configuration(tmp_path: Path, schema: xmlschema.XMLSchema) -> None:
    config = tmp_path / "flightd.toml"
    config.write_text(
        "[governor]\n"
        "limits = [\n"
        "  { name = 'board_hot', channel = 'thermal', key = 'board_c', kind = 'ceiling', threshold = 80.0,"
        " hysteresis = 4.0, debounce = 5 },\n"
        "  { name = 'soc_low', channel = 'power', key = 'soc', kind = 'floor', threshold = 0.25,"
        " hysteresis = 0.05, debounce = 2, severity = 'soft' },\n"
        "  { name = 'soc_high', channel = 'power', key = 'soc', kind = 'ceiling', threshold = 0.98,"
        " hysteresis = 0.01, debounce = 2, severity = 'soft' },\n"
        "]\n"
    )
    out = tmp_path / "mdb.xml"
    assert ground_main(["icd", "xtce", "-o", str(out), "--config", str(config)]) == 0
    assert _errors(schema, out) == []
    root = ET.parse(out).getroot()
    violations, board = _ranges(root, "thermal", "board_c")
    assert violations == "5"
    assert board == {"WarningRange": {"maxInclusive": "76.0"}, "CriticalRange": {"maxInclusive": "80.0"}}
    violations, soc = _ranges(root, "power", "soc")
    assert violations == "2"
    assert soc == {"WatchRange": {"minInclusive": "0.3", "maxInclusive": "0.97"},
                   "WarningRange": {"minInclusive": "0.25", "maxInclusive": "0.98"}}
    assert _ranges(root, "thermal", "radiator_c") == (None, {})  # not configured: no alarm


def test_default_limits_are_the_limits_model() -> None:
    root = mission_database(Limits().configs()).getroot()
    lim = Limits()
    assert _ranges(root, "power", "battery_v")[1]["CriticalRange"] == {"minInclusive": repr(lim.battery_v_floor)}
    assert _ranges(root, "thermal", "radiator_c")[1]["CriticalRange"] == {"maxInclusive": repr(lim.radiator_max_c)}
    assert _ranges(root, "thermal", "board_c")[1]["CriticalRange"] == {"maxInclusive": repr(lim.board_max_c)}
    assert _ranges(root, "power", "soc")[1]["CriticalRange"] == {"minInclusive": repr(lim.soc_floor)}


def test_commands_and_their_arguments() -> None:
    root = mission_database(Limits().configs()).getroot()
    commands = {m.get("name"): m for m in root.findall("x:CommandMetaData/x:MetaCommandSet/x:MetaCommand", NS)}
    actions = [b.model_fields["action"].default for b in command_bodies()]
    assert set(actions) == {"cancel", "ack_result", "get_job", "list_jobs", "ping", "list_models",
                            "activate_model", "rollback_model", "list_keys", "add_key", "rotate_key", "revoke_key",
                            "inject_fault"}
    assert list(commands) == ["Command", *actions]
    assert commands["Command"].get("abstract") == "true"
    envelope = [a.get("name") for a in commands["Command"].findall("x:ArgumentList/x:Argument", NS)]
    assert envelope == ["command_id", "issued_utc", "action"]
    for body in command_bodies():
        action = body.model_fields["action"].default
        cmd = commands[action]
        assign = cmd.find("x:BaseMetaCommand/x:ArgumentAssignmentList/x:ArgumentAssignment", NS)
        assert assign is not None and assign.get("argumentValue") == action
        args = [a.get("name") for a in cmd.findall("x:ArgumentList/x:Argument", NS)]
        assert args == [n for n in body.model_fields if n != "action"]
    types = root.find("x:CommandMetaData/x:ArgumentTypeSet", NS)
    assert types is not None
    limit = types.find("x:IntegerArgumentType/x:ValidRangeSet/x:ValidRange", NS)
    assert limit is not None and limit.attrib == {"minInclusive": "1", "maxInclusive": "100000"}


def test_bad_limits_are_refused() -> None:
    unknown = LimitConfig(name="x", channel="payload", key="t", kind=LimitKind.CEILING, threshold=1, hysteresis=1)
    with pytest.raises(ValueError, match="unknown channel 'payload'"):
        mission_database([unknown])
    with pytest.raises(KeyError, match="channel thermal has no value 'soc'"):
        mission_database([LimitConfig(name="x", channel="thermal", key="soc", kind=LimitKind.FLOOR, threshold=1,
                                      hysteresis=1)])
    a = LimitConfig(name="a", channel="power", key="soc", kind=LimitKind.FLOOR, threshold=0.3, hysteresis=0.05)
    b = a.model_copy(update={"name": "b", "threshold": 0.2})
    with pytest.raises(ValueError, match="two floors"):
        mission_database([a, b])
    flag = LimitConfig(name="f", channel="orbit", key="sunlit", kind=LimitKind.FLOOR, threshold=1, hysteresis=1,
                       severity=LimitSeverity.SOFT)
    with pytest.raises(ValueError, match="only numbers have limits"):
        mission_database([flag])
