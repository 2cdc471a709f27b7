"""``StrEnum``: an enumeration whose members are strings and print as their values.

Python 3.11's :class:`enum.StrEnum` where it exists; on Python 3.10 (the board install: JetPack 6 is
Ubuntu 22.04 with Python 3.10) the same behaviour built from ``str`` and :class:`enum.Enum`:
``str(member)`` and ``f"{member}"`` give the value (a plain ``(str, Enum)`` gives ``Class.NAME``
from ``str()``), and ``auto()`` gives the lower-cased name. Every link/ and flight/ enumeration that
travels as text derives from it.
"""

from __future__ import annotations

import enum
import sys

if sys.version_info >= (3, 11):
    from enum import StrEnum as StrEnum
else:  # pragma: no cover - exercised by the Python 3.10 run of scripts/test.sh

    class StrEnum(str, enum.Enum):
        """Python 3.11's enum.StrEnum for Python 3.10."""

        def __str__(self) -> str:
            return str(self.value)

        def __format__(self, format_spec: str) -> str:
            return str(self.value).__format__(format_spec)

        @staticmethod
        def _generate_next_value_(name: str, start: int, count: int, last_values: list[str]) -> str:
            return name.lower()


__all__ = ["StrEnum"]
