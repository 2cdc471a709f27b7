"""Two-line element sets read column by column: every malformed TLE is refused with its line and column.

SGP4 libraries parse TLEs leniently (sgp4's C++ parser takes a line shifted by two columns, reads a
NaN drag term out of it and propagates NaN positions without an error code), so the plant checks the
text first, against the fixed-column format of NORAD/CelesTrak ("NORAD Two-Line Element Set Format",
https://celestrak.org/NORAD/documentation/tle-fmt.php):

    line 1: 01 line number '1'; 03-07 satellite number; 08 classification (U, C, S); 10-17
            international designator; 19-20 epoch year; 21-32 epoch day of year with fraction;
            34-43 first derivative of mean motion; 45-52 second derivative (leading decimal point
            assumed, +NNNNN-N); 54-61 BSTAR drag term (same form); 63 ephemeris type; 65-68 element
            number; 69 checksum
    line 2: 01 line number '2'; 03-07 satellite number; 09-16 inclination (deg); 18-25 right
            ascension of the ascending node (deg); 27-33 eccentricity (leading decimal point
            assumed); 35-42 argument of perigee (deg); 44-51 mean anomaly (deg); 53-63 mean motion
            (rev/day); 64-68 revolution number at epoch; 69 checksum
    all other columns are blank. Checksum: the sum of the digits of columns 1-68, each minus sign
    counting 1 (letters, blanks, periods, plus signs 0), modulo 10 (CelesTrak, "Two-Line Element Set
    Checksum Controversy", https://celestrak.org/NORAD/documentation/checksum.php).

A sign column may hold '+', '-' or a blank; an exponent sign '+' or '-'. Numbers are right-justified
(leading blanks only). Satellite numbers above 99999 use CelesTrak's Alpha-5 scheme (a letter, not I
or O, then four digits). Epoch years 57-99 are 1957-1999, 00-56 are 2000-2056 (CelesTrak).

:func:`parse_tle` returns the decoded :class:`TwoLineElements` or raises :class:`TleError`, whose
message starts ``TLE line L, column C`` (or ``columns A-B`` for a field's value).
"""

from __future__ import annotations

import calendar
import math
from dataclasses import dataclass

from hil.plant.constants import MU_EARTH_KM3_S2, R_EARTH_KM

TLE_COLUMNS = 69
"""Columns of a TLE line (CelesTrak tle-fmt)."""

ALPHA5_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
"""First characters of an Alpha-5 satellite number (A-Z without I and O; CelesTrak)."""


class TleError(ValueError):
    """A TLE that cannot be right. ``line`` (1 or 2, None for both), ``column`` (1-based, None for a
    whole field or line); the message names both and what to do."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


@dataclass(frozen=True)
class Field:
    """A fixed-column field: ``name``, first column (1-based) and ``template``, one character class
    per column: ``d`` digit, ``n`` digit or a leading blank, ``s`` sign (+, - or blank), ``x``
    exponent sign (+ or -), ``k`` first character of a satellite number (digit, blank or Alpha-5
    letter), ``c`` classification, ``a`` designator (A-Z, 0-9, blank), ``e`` digit or blank, and
    ``.``, ``1``, ``2``, blank for themselves."""

    name: str
    first: int
    template: str
    blank_ok: bool = False  # the whole field may be blank (second derivative of mean motion: "blank if N/A")

    @property
    def last(self) -> int:
        return self.first + len(self.template) - 1

    @property
    def columns(self) -> str:
        return f"column {self.first}" if self.first == self.last else f"columns {self.first}-{self.last}"

    def text(self, line: str) -> str:
        return line[self.first - 1 : self.last]


def _layout(*fields: Field) -> tuple[Field, ...]:
    """The fields with a blank column wherever none is listed; checks that they tile columns 1-69."""
    out: list[Field] = []
    col = 1
    for f in fields:
        out.extend(Field("blank", c, " ") for c in range(col, f.first))
        out.append(f)
        col = f.last + 1
    assert col == TLE_COLUMNS + 1, "a TLE layout covers columns 1-69"
    return tuple(out)


LINE1 = _layout(
    Field("line number", 1, "1"),
    Field("satellite number", 3, "knnnd"),
    Field("classification", 8, "c"),
    Field("international designator", 10, "aaaaaaaa"),
    Field("epoch year", 19, "dd"),
    Field("epoch day", 21, "nnd.dddddddd"),
    Field("first derivative of mean motion", 34, "s.dddddddd"),
    Field("second derivative of mean motion", 45, "sdddddxd", blank_ok=True),
    Field("BSTAR drag term", 54, "sdddddxd"),
    Field("ephemeris type", 63, "e"),
    Field("element number", 65, "nnnd"),
    Field("checksum", 69, "d"),
)
LINE2 = _layout(
    Field("line number", 1, "2"),
    Field("satellite number", 3, "knnnd"),
    Field("inclination", 9, "nnd.dddd"),
    Field("right ascension of the ascending node", 18, "nnd.dddd"),
    Field("eccentricity", 27, "ddddddd"),
    Field("argument of perigee", 35, "nnd.dddd"),
    Field("mean anomaly", 44, "nnd.dddd"),
    Field("mean motion", 53, "nd.dddddddd"),
    Field("revolution number at epoch", 64, "nnnnd"),
    Field("checksum", 69, "d"),
)

_EXPECT = {
    "d": "a digit",
    "n": "a digit (blanks only before the number)",
    "s": "a sign (+, - or blank)",
    "x": "an exponent sign (+ or -)",
    "k": "a digit (or an Alpha-5 letter)",
    "c": "a classification (U, C or S)",
    "a": "a letter, digit or blank",
    "e": "a digit or blank",
    ".": "a decimal point '.'",
    " ": "a blank",
}


def _allowed(cls: str, ch: str, prev: str | None) -> bool:
    if cls == "d":
        return ch.isdigit()
    if cls == "n":
        return ch.isdigit() or (ch == " " and prev in (None, " "))
    if cls == "s":
        return ch in "+- "
    if cls == "x":
        return ch in "+-"
    if cls == "k":
        return ch.isdigit() or ch == " " or ch in ALPHA5_LETTERS
    if cls == "c":
        return ch in "UCS"
    if cls == "a":
        return ch.isdigit() or ch == " " or ("A" <= ch <= "Z")
    if cls == "e":
        return ch.isdigit() or ch == " "
    return ch == cls


def checksum(line: str) -> int:
    """The TLE checksum of ``line``: digits of columns 1-68 plus 1 per minus sign, modulo 10."""
    return sum(int(c) if c.isdigit() else (1 if c == "-" else 0) for c in line[: TLE_COLUMNS - 1]) % 10


def _where(n: int, col: int) -> str:
    return f"TLE line {n}, column {col}"


def _check_characters(n: int, line: str) -> None:
    for col, ch in enumerate(line, 1):
        if ord(ch) > 126:
            raise TleError(f"{_where(n, col)}: non-ASCII character {ch!r} (U+{ord(ch):04X}); a TLE is plain "
                           "ASCII (a typographic dash or space pasted from a document?)", n, col)
        if ord(ch) < 32:
            hint = "a tab: TLE columns are fixed, use spaces" if ch == "\t" else "a control character"
            raise TleError(f"{_where(n, col)}: {ch!r} is {hint}", n, col)


def _check_layout(n: int, line: str, layout: tuple[Field, ...]) -> None:
    """Every present column against its field's template; then the length."""
    shifted = "" if len(line) == TLE_COLUMNS else (
        f" (the line has {len(line)} characters, not {TLE_COLUMNS}: a character inserted or deleted before "
        "this column shifts every field after it)")
    for f in layout:
        prev: str | None = None
        text = f.text(line)
        if f.blank_ok and len(text) == len(f.template) and not text.strip():
            continue
        for i, (cls, ch) in enumerate(zip(f.template, text, strict=False)):
            if not _allowed(cls, ch, prev):
                col = f.first + i
                what = "" if f.name == "blank" else f" ({f.name}, {f.columns})"
                raise TleError(f"{_where(n, col)}{what}: expected {_EXPECT.get(cls, repr(cls))}, got {ch!r}{shifted}",
                               n, col)
            prev = ch
    if len(line) < TLE_COLUMNS:
        missing = [f.name for f in layout if f.last > len(line) and f.name != "blank"]
        raise TleError(f"{_where(n, len(line) + 1)}: the line is truncated after column {len(line)} (a TLE line has "
                       f"{TLE_COLUMNS}); missing: {', '.join(missing)}", n, len(line) + 1)
    if line[TLE_COLUMNS:].strip():
        raise TleError(f"{_where(n, TLE_COLUMNS + 1)}: text after the checksum column {TLE_COLUMNS} "
                       f"({line[TLE_COLUMNS:]!r}); a TLE line has {TLE_COLUMNS} columns", n, TLE_COLUMNS + 1)


def _check_line(n: int, line: object, layout: tuple[Field, ...]) -> str:
    """The line with trailing blanks and line ends removed, checked character by character."""
    if not isinstance(line, str):
        raise TleError(f"{_where(n, 1)}: the line must be text, got {type(line).__name__}", n, 1)
    line = line.rstrip("\r\n")
    _check_characters(n, line)
    line = line.rstrip(" ")
    if not line:
        raise TleError(f"{_where(n, 1)}: the line is empty", n, 1)
    stripped = line.lstrip(" ")
    if len(stripped) < len(line) and stripped[:1] == str(n):
        k = len(line) - len(stripped)
        raise TleError(f"{_where(n, 1)}: the line starts with {k} blank(s), so every column is shifted right by "
                       f"{k}; column 1 must hold the line number '{n}'", n, 1)
    _check_layout(n, line, layout)
    expected = checksum(line)
    if int(line[TLE_COLUMNS - 1]) != expected:
        raise TleError(f"{_where(n, TLE_COLUMNS)} (checksum): the line says {line[TLE_COLUMNS - 1]}, its columns 1-68 "
                       f"give {expected}: a mistyped or altered character (or a corrupted copy)", n, TLE_COLUMNS)
    return line


def _value(n: int, f: Field, line: str, lo: float, hi: float, unit: str, hi_open: bool = False) -> float:
    value = float(f.text(line))
    if not (lo <= value and (value < hi if hi_open else value <= hi)):
        bound = f"{lo:g}..{hi:g}" + (" (exclusive)" if hi_open else "")
        raise TleError(f"TLE line {n}, {f.columns} ({f.name}): {value:g} {unit} is outside {bound}", n, f.first)
    return value


def _exp_field(text: str) -> float:
    """``sNNNNNxN`` (leading decimal point assumed): ' 12345-3' -> 0.12345e-3; all blank -> 0."""
    if not text.strip():
        return 0.0
    return float(f"{text[0].strip()}0.{text[1:6]}e{text[6:8]}")


def _field(layout: tuple[Field, ...], name: str) -> Field:
    return next(f for f in layout if f.name == name)


@dataclass(frozen=True)
class TwoLineElements:
    """A TLE's decoded fields (units as named: deg, rev/day, 1/earth radii for BSTAR) and its two
    checked lines (``line1``, ``line2``, trailing blanks removed)."""

    line1: str
    line2: str
    satellite: str
    classification: str
    epoch_year: int
    epoch_day: float
    ndot: float
    nddot: float
    bstar: float
    inclination_deg: float
    raan_deg: float
    eccentricity: float
    arg_perigee_deg: float
    mean_anomaly_deg: float
    mean_motion_rev_day: float

    @property
    def semi_major_axis_km(self) -> float:
        """From the mean motion by Kepler's third law, a = (mu / n^2)^(1/3), km."""
        n_rad_s = self.mean_motion_rev_day * 2.0 * math.pi / 86400.0
        return float((MU_EARTH_KM3_S2 / n_rad_s**2) ** (1.0 / 3.0))

    @property
    def perigee_altitude_km(self) -> float:
        return self.semi_major_axis_km * (1.0 - self.eccentricity) - R_EARTH_KM


def parse_tle(line1: object, line2: object) -> TwoLineElements:
    """Check and decode a TLE (see the module docstring); :class:`TleError` names the line and column
    of the first fault: wrong type, non-ASCII or control character, shifted (leading blanks),
    swapped lines, a column that breaks the layout, truncation, extra text, checksum, satellite
    numbers that differ, epoch day or angle out of range, an orbit whose perigee is underground."""
    first = line1.lstrip()[:1] if isinstance(line1, str) else ""
    second = line2.lstrip()[:1] if isinstance(line2, str) else ""
    if first == "2" and second == "1":
        raise TleError("TLE line 1, column 1: the lines are swapped (line 1 starts with '2', line 2 with '1'); "
                       "give the '1 NNNNNU ...' line as line1 and the '2 NNNNN ...' line as line2", 1, 1)
    l1 = _check_line(1, line1, LINE1)
    l2 = _check_line(2, line2, LINE2)
    sat1, sat2 = l1[2:7].strip(), l2[2:7].strip()
    if sat1 != sat2:
        raise TleError(f"TLE line 2, columns 3-7 (satellite number): {sat2!r} is not line 1's {sat1!r}: the lines "
                       "belong to different satellites", 2, 3)
    yy = int(l1[18:20])
    year = 1900 + yy if yy >= 57 else 2000 + yy
    days = 366 if calendar.isleap(year) else 365
    day = _value(1, _field(LINE1, "epoch day"), l1, 1.0, days + 1.0, f"(day of {year})", hi_open=True)
    elements = TwoLineElements(
        line1=l1,
        line2=l2,
        satellite=sat1,
        classification=l1[7],
        epoch_year=year,
        epoch_day=day,
        ndot=float(l1[33:43]),
        nddot=_exp_field(_field(LINE1, "second derivative of mean motion").text(l1)),
        bstar=_exp_field(_field(LINE1, "BSTAR drag term").text(l1)),
        inclination_deg=_value(2, _field(LINE2, "inclination"), l2, 0.0, 180.0, "deg"),
        raan_deg=_value(2, _field(LINE2, "right ascension of the ascending node"), l2, 0.0, 360.0, "deg",
                        hi_open=True),
        eccentricity=float("0." + l2[26:33]),
        arg_perigee_deg=_value(2, _field(LINE2, "argument of perigee"), l2, 0.0, 360.0, "deg", hi_open=True),
        mean_anomaly_deg=_value(2, _field(LINE2, "mean anomaly"), l2, 0.0, 360.0, "deg", hi_open=True),
        mean_motion_rev_day=float(l2[52:63]),
    )
    motion = _field(LINE2, "mean motion")
    if elements.mean_motion_rev_day <= 0.0:
        raise TleError(f"TLE line 2, {motion.columns} (mean motion): {elements.mean_motion_rev_day:g} rev/day; an "
                       "orbit needs a mean motion > 0", 2, motion.first)
    if elements.perigee_altitude_km <= 0.0:
        raise TleError(f"TLE line 2, columns 27-33 (eccentricity) and {motion.columns} (mean motion): perigee "
                       f"{elements.perigee_altitude_km:.0f} km below the Earth's surface (a = "
                       f"{elements.semi_major_axis_km:.0f} km, e = {elements.eccentricity:g}): no such orbit", 2, 27)
    return elements


__all__ = ["TleError", "TwoLineElements", "checksum", "parse_tle"]
