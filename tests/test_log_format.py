"""flight.log_format: one physical line per record, whatever a message quotes from the wire."""

from __future__ import annotations

import logging
import sys

from hypothesis import given
from hypothesis import strategies as st

from flight.log_format import OneLineFormatter


def record(message: str, exc_info: object = None) -> logging.LogRecord:
    return logging.LogRecord("flightd", logging.WARNING, __file__, 1, "refused: %s", (message,), exc_info)  # type: ignore[arg-type]


@given(st.text())
def test_any_message_is_one_line(message: str) -> None:
    line = OneLineFormatter().format(record(message))
    assert len(line.splitlines()) == 1
    assert not any(0x80 <= ord(c) < 0xA0 or ord(c) < 0x20 or ord(c) == 0x7F for c in line)


def test_escapes_are_readable_and_a_stack_trace_is_kept() -> None:
    assert OneLineFormatter().format(record("a\nb\x85c\u2028")).endswith("refused: a\\nb\\x85c\\u2028")
    try:
        raise ValueError("boom")
    except ValueError:
        text = OneLineFormatter().format(record("x", sys.exc_info()))
    assert "Traceback (most recent call last)" in text and text.splitlines()[0].endswith("refused: x")
