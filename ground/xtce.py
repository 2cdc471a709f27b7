"""The mission database for XTCE tools (Yamcs and others): ``ground icd xtce -o FILE.xml``.

Writes one XTCE 1.2 document (OMG XTCE 1.2, formal/18-10-04; schema dtc/18-02-04, namespace
:data:`XTCE_NS`) describing what crosses the link:

- **Telemetry**: one child ``SpaceSystem`` per channel of the telemetry dictionary
  (:data:`link.telemetry.CHANNELS`), holding one parameter per measurement with its unit and type
  (``flag`` -> Boolean, ``code`` -> Enumerated with the governor's mode codes, ``count`` -> Integer,
  everything else -> Float), and a ``SequenceContainer`` listing the parameters in wire order.
  Every value travels as a number (``Telemetry.values``); a bridge that packs a sample for a
  binary-minded tool packs each value as an IEEE-754 float64, big-endian, in that order, which is
  the encoding written on every parameter type.
- **Limits**: each watchpoint of the configured governor (:class:`flight.governor.limits.LimitConfig`,
  from flightd's ``[governor]`` configuration or :class:`~flight.governor.limits.Limits` defaults)
  becomes the ``DefaultAlarm`` of its parameter: a hard limit is the ``CriticalRange`` at its
  threshold and a ``WarningRange`` at the edge of its hysteresis band (the value at which the
  governor lets go of the limit); a soft limit is the ``WarningRange`` at its threshold and a
  ``WatchRange`` at the band's edge. XTCE ranges are "outside" ranges: the alarm is raised when
  the value leaves the range. ``minViolations`` is the limit's debounce (consecutive samples).
- **Commands**: an abstract ``Command`` meta-command (the envelope every command shares:
  ``command_id``, ``issued_utc``, ``action``) and one meta-command per command body of
  :data:`link.messages.CommandAction`, its arguments taken from the pydantic fields (identifier
  pattern, integer bounds, enumerations).

Raises TypeError for a command field whose type has no XTCE mapping here (so a new command body
cannot be left out silently) and ValueError for two limits that disagree on one range.
"""

from __future__ import annotations

import datetime
import enum
import types
import typing
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from flight import __version__
from flight.governor.config import GovernorConfig
from flight.governor.limits import LimitConfig, LimitKind, LimitSeverity
from flight.settings import FlightSettings
from link.messages import TOPIC_ID_PATTERN, CommandAction
from link.telemetry import CHANNELS, MODE_CODES, Channel, Measurement

XTCE_NS = "http://www.omg.org/spec/XTCE/20180204"
"""The XTCE 1.2 namespace (the schema's ``targetNamespace``)."""

WIRE_FLOAT_BITS = 64
"""Every telemetry value is a JSON number, i.e. an IEEE-754 double."""

ET.register_namespace("xtce", XTCE_NS)


def _q(tag: str) -> str:
    return f"{{{XTCE_NS}}}{tag}"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, _q(tag), {k: v for k, v in attrs.items()})
    if text is not None:
        element.text = text
    return element


def _ancillary(parent: ET.Element, items: dict[str, str]) -> None:
    if items:
        data_set = _sub(parent, "AncillaryDataSet")
        for name, value in items.items():
            _sub(data_set, "AncillaryData", value, name=name)


def _num(value: float) -> str:
    """A threshold as written: 12 significant digits, so 0.3 + 0.05 reads 0.35."""
    return repr(float(f"{value:.12g}"))


# ------------------------------------------------------------------------------------- limits


@dataclass
class _Range:
    """One alarm level's "outside" range of a parameter (None: unbounded on that side)."""

    min_inclusive: float | None = None
    max_inclusive: float | None = None

    def bound(self, kind: LimitKind, value: float, where: str) -> None:
        if kind is LimitKind.FLOOR:
            if self.min_inclusive is not None and self.min_inclusive != value:
                raise ValueError(f"{where}: two floors ({self.min_inclusive} and {value}) at one alarm level")
            self.min_inclusive = value
        else:
            if self.max_inclusive is not None and self.max_inclusive != value:
                raise ValueError(f"{where}: two ceilings ({self.max_inclusive} and {value}) at one alarm level")
            self.max_inclusive = value

    def attrs(self) -> dict[str, str]:
        out = {}
        if self.min_inclusive is not None:
            out["minInclusive"] = _num(self.min_inclusive)
        if self.max_inclusive is not None:
            out["maxInclusive"] = _num(self.max_inclusive)
        return out


_LEVELS = ("WatchRange", "WarningRange", "DistressRange", "CriticalRange", "SevereRange")
"""XTCE's alarm levels, in the order the schema wants them."""


def _alarm(parent: ET.Element, limits: list[LimitConfig]) -> None:
    """``DefaultAlarm`` of one parameter from the limits that watch it (see the module docstring)."""
    ranges: dict[str, _Range] = {}
    for lim in limits:
        threshold_level, band_level = (
            ("CriticalRange", "WarningRange") if lim.severity is LimitSeverity.HARD else ("WarningRange", "WatchRange")
        )
        band_edge = lim.threshold + lim.hysteresis if lim.kind is LimitKind.FLOOR else lim.threshold - lim.hysteresis
        ranges.setdefault(threshold_level, _Range()).bound(lim.kind, lim.threshold, lim.name)
        ranges.setdefault(band_level, _Range()).bound(lim.kind, band_edge, lim.name)
    debounce = max(lim.debounce for lim in limits)
    alarm = _sub(parent, "DefaultAlarm", minViolations=str(debounce))
    static = _sub(alarm, "StaticAlarmRanges")
    for level in _LEVELS:
        if level in ranges:
            _sub(static, level, **ranges[level].attrs())


# ---------------------------------------------------------------------------------- telemetry


def _type_name(key: str) -> str:
    return f"{key}_type"


def _parameter_type(type_set: ET.Element, m: Measurement, limits: list[LimitConfig]) -> None:
    described = {"name": _type_name(m.key), "shortDescription": m.description}
    if m.unit == "flag":
        element = _sub(type_set, "BooleanParameterType", **described, oneStringValue="1", zeroStringValue="0")
    elif m.unit == "code":
        element = _sub(type_set, "EnumeratedParameterType", **described)
    elif m.unit == "count":
        element = _sub(type_set, "IntegerParameterType", **described, signed="false", sizeInBits="32")
    else:
        element = _sub(type_set, "FloatParameterType", **described, sizeInBits=str(WIRE_FLOAT_BITS))
    units = _sub(element, "UnitSet")
    if m.unit not in ("flag", "code", "count"):
        _sub(units, "Unit", m.unit)
    _sub(element, "FloatDataEncoding", sizeInBits=str(WIRE_FLOAT_BITS))
    if m.unit == "code":
        listing = _sub(element, "EnumerationList")
        for mode, code in MODE_CODES.items():
            _sub(listing, "Enumeration", value=str(code), label=mode.value.upper())
    if limits:
        if m.unit in ("flag", "code"):
            raise ValueError(f"limit {limits[0].name} watches {m.key}, a {m.unit}: only numbers have limits")
        _alarm(element, limits)


def _channel_system(root: ET.Element, channel: Channel, limits: list[LimitConfig]) -> None:
    system = _sub(root, "SpaceSystem", name=channel.name, shortDescription=f"telemetry channel {channel.name}")
    _ancillary(system, {"topic": f"<root>/<sat>/tlm/{channel.name}", "source": channel.source})
    tm = _sub(system, "TelemetryMetaData")
    type_set = _sub(tm, "ParameterTypeSet")
    for m in channel.measurements:
        watching = [lim for lim in limits if lim.channel == channel.name and lim.key == m.key]
        _parameter_type(type_set, m, watching)
    parameters = _sub(tm, "ParameterSet")
    for m in channel.measurements:
        p = _sub(parameters, "Parameter", name=m.key, parameterTypeRef=_type_name(m.key),
                 shortDescription=m.description)
        watching = [lim for lim in limits if lim.channel == channel.name and lim.key == m.key]
        _ancillary(p, {f"limit:{lim.name}": _limit_note(lim) for lim in watching})
    containers = _sub(tm, "ContainerSet")
    container = _sub(containers, "SequenceContainer", name=channel.name,
                     shortDescription=f"one tlm/{channel.name} sample, values in wire order as float64")
    entries = _sub(container, "EntryList")
    for m in channel.measurements:
        _sub(entries, "ParameterRefEntry", parameterRef=m.key)


def _limit_note(lim: LimitConfig) -> str:
    side = ">=" if lim.kind is LimitKind.FLOOR else "<="
    return (f"{lim.severity.value} {lim.kind.value}: value {side} {lim.threshold:g}, hysteresis {lim.hysteresis:g}, "
            f"debounce {lim.debounce} samples")


def _check_limits(limits: Iterable[LimitConfig]) -> list[LimitConfig]:
    out = list(limits)
    for lim in out:
        channel = CHANNELS.get(lim.channel)
        if channel is None:
            raise ValueError(f"limit {lim.name} watches unknown channel {lim.channel!r}")
        channel.measurement(lim.key)  # KeyError naming the channel's keys
    return out


# ----------------------------------------------------------------------------------- commands


def command_bodies() -> list[type[BaseModel]]:
    """The command body classes of :data:`link.messages.CommandAction`, in union order."""
    union = typing.get_args(CommandAction)[0]
    return [b for b in typing.get_args(union) if isinstance(b, type) and issubclass(b, BaseModel)]


def _action(body: type[BaseModel]) -> str:
    default = body.model_fields["action"].default
    assert isinstance(default, str)
    return default


def _optional_inner(annotation: Any) -> Any:
    """``X`` of ``X | None``; ``annotation`` itself otherwise."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return annotation


class _ArgumentTypes:
    """The ``ArgumentTypeSet`` being written: one type per distinct argument shape, named once."""

    def __init__(self, type_set: ET.Element) -> None:
        self.type_set = type_set
        self.names: set[str] = set()

    def _new(self, name: str) -> bool:
        if name in self.names:
            return False
        self.names.add(name)
        return True

    def for_field(self, command: str, name: str, field: FieldInfo) -> str:
        """The argument type name for one pydantic field; TypeError when it has no mapping."""
        annotation = _optional_inner(field.annotation)
        metadata = list(field.metadata)
        if typing.get_origin(annotation) is typing.Annotated:  # an optional constrained type: X | None
            annotation, *extra = typing.get_args(annotation)
            for item in extra:
                metadata += getattr(item, "metadata", [item])
        if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
            return self.enumeration(annotation)
        if typing.get_origin(annotation) is list:
            (item,) = typing.get_args(annotation)
            if isinstance(item, type) and issubclass(item, enum.Enum):
                return self.array_of(self.enumeration(item), len(list(item)))
        if annotation is bool:
            return self.boolean()
        if annotation is str:
            pattern = next((m.pattern for m in metadata if hasattr(m, "pattern") and m.pattern), None)
            return self.string(pattern)
        if annotation is int:
            lo = next((m.ge for m in metadata if isinstance(m, annotated_types.Ge)), None)
            hi = next((m.le for m in metadata if isinstance(m, annotated_types.Le)), None)
            return self.integer(lo, hi)
        if annotation is float:
            return self.floating()
        raise TypeError(f"command {command}: field {name} of type {field.annotation!r} has no XTCE mapping")

    def enumeration(self, kind: type[enum.Enum]) -> str:
        name = f"{kind.__name__}_type"
        if self._new(name):
            element = _sub(self.type_set, "EnumeratedArgumentType", name=name)
            listing = _sub(element, "EnumerationList")
            for i, member in enumerate(kind):
                _sub(listing, "Enumeration", value=str(i), label=str(member.value))
        return name

    def array_of(self, item_type: str, max_items: int) -> str:
        name = f"{item_type}_list"
        if self._new(name):
            element = _sub(self.type_set, "ArrayArgumentType", name=name, arrayTypeRef=item_type)
            dimension = _sub(_sub(element, "DimensionList"), "Dimension")
            _sub(_sub(dimension, "StartingIndex"), "FixedValue", "0")
            _sub(_sub(dimension, "EndingIndex"), "FixedValue", str(max_items - 1))
        return name

    def string(self, pattern: object) -> str:
        name = "identifier_type" if pattern else "string_type"
        if self._new(name):
            attrs = {"restrictionPattern": str(pattern)} if pattern else {}
            _sub(self.type_set, "StringArgumentType", name=name, **attrs)
        return name

    def integer(self, lo: object, hi: object) -> str:
        name = f"int_{lo}_{hi}_type".replace("None", "any")
        if self._new(name):
            element = _sub(self.type_set, "IntegerArgumentType", name=name, sizeInBits="64", signed="true")
            if lo is not None or hi is not None:
                bounds = {k: str(v) for k, v in (("minInclusive", lo), ("maxInclusive", hi)) if v is not None}
                _sub(_sub(element, "ValidRangeSet"), "ValidRange", **bounds)
        return name

    def boolean(self) -> str:
        name = "flag_type"
        if self._new(name):
            _sub(self.type_set, "BooleanArgumentType", name=name)
        return name

    def floating(self) -> str:
        name = "utc_seconds_type"
        if self._new(name):
            element = _sub(self.type_set, "FloatArgumentType", name=name, sizeInBits="64",
                           shortDescription="POSIX seconds, UTC")
            _sub(_sub(element, "UnitSet"), "Unit", "s")
        return name


def _command_metadata(root: ET.Element) -> None:
    bodies = command_bodies()
    cmd = _sub(root, "CommandMetaData")
    arg_types = _ArgumentTypes(_sub(cmd, "ArgumentTypeSet"))
    meta_set = _sub(cmd, "MetaCommandSet")
    # The envelope (link.messages.Command) every command shares; its body's action picks the command.
    action_type = "action_type"
    arg_types.names.add(action_type)
    action_element = _sub(arg_types.type_set, "EnumeratedArgumentType", name=action_type)
    listing = _sub(action_element, "EnumerationList")
    for i, body in enumerate(bodies):
        _sub(listing, "Enumeration", value=str(i), label=_action(body))
    base = _sub(meta_set, "MetaCommand", name="Command", abstract="true",
                shortDescription="ground -> satellite on cmd; reply on cmd/<command_id>/reply")
    _sub(base, "LongDescription",
         "JSON document link.messages.Command: command_id (used once), issued_utc (POSIX s, within the "
         "satellite's window), body (one of the commands below), auth (HMAC-SHA256 tag, link.auth) when "
         "the satellite holds command keys.")
    args = _sub(base, "ArgumentList")
    _sub(args, "Argument", name="command_id", argumentTypeRef=arg_types.string(TOPIC_ID_PATTERN))
    _sub(args, "Argument", name="issued_utc", argumentTypeRef=arg_types.floating())
    _sub(args, "Argument", name="action", argumentTypeRef=action_type)
    for body in bodies:
        action = _action(body)
        element = _sub(meta_set, "MetaCommand", name=action,
                       shortDescription=(body.__doc__ or f"{body.__name__} command").strip().splitlines()[0])
        ref = _sub(element, "BaseMetaCommand", metaCommandRef="Command")
        _sub(_sub(ref, "ArgumentAssignmentList"), "ArgumentAssignment", argumentName="action", argumentValue=action)
        fields = [(n, f) for n, f in body.model_fields.items() if n != "action"]
        if fields:
            arguments = _sub(element, "ArgumentList")
            for name, field in fields:
                attrs = {"name": name, "argumentTypeRef": arg_types.for_field(action, name, field)}
                if field.default is not None and not field.is_required() and isinstance(field.default, int | float):
                    attrs["initialValue"] = str(field.default)
                _sub(arguments, "Argument", **attrs)


# ------------------------------------------------------------------------------------ document


def mission_database(
    limits: Iterable[LimitConfig], name: str = "orbitd", today: datetime.date | None = None
) -> ET.ElementTree:
    """The XTCE document (an ElementTree rooted at ``SpaceSystem`` ``name``) for ``limits``."""
    checked = _check_limits(limits)
    root = ET.Element(_q("SpaceSystem"), {"name": name, "shortDescription": "orbitd onboard job service"})
    _sub(root, "Header", validationStatus="Working", version=__version__,
         date=(today or datetime.date.today()).isoformat())
    _command_metadata(root)
    for channel in CHANNELS.values():
        _channel_system(root, channel, checked)
    return ET.ElementTree(root)


def configured_limits(config: Path | None) -> list[LimitConfig]:
    """The governor's limits as flightd would load them (``config`` TOML, ``ORBITD_*`` environment),
    the :class:`~flight.governor.limits.Limits` defaults when no governor is configured."""
    governor = FlightSettings.load(config).governor
    return list(GovernorConfig.model_validate(governor or {}).limits)


def write_mission_database(path: Path, limits: Iterable[LimitConfig], name: str = "orbitd") -> Path:
    """Write :func:`mission_database` to ``path`` (UTF-8, indented); returns ``path``."""
    tree = mission_database(limits, name)
    ET.indent(tree, space="  ")
    path.parent.mkdir(parents=True, exist_ok=True)
    tree.write(path, encoding="UTF-8", xml_declaration=True)
    return path
