"""flightd's log line: one physical line per record, whatever text from the wire it quotes.

A refusal's reason can quote what the sender wrote (pydantic names a discriminator's bad tag as it
came: ``Input tag 'ping\\n2026-... WARNING ...' found``), so a sender could otherwise break a record
over several lines and forge records of its own. :class:`OneLineFormatter` escapes every C0 control
character, DEL, every C1 control character (a terminal reads 0x9B as the start of an escape
sequence) and the Unicode line and paragraph separators in the message part (``\\n`` as the two
characters backslash and n, others as ``\\xNN`` or ``\\uNNNN``): every character that
:meth:`str.splitlines` or a terminal takes for a line break or a control. A stack trace appended by
``log.exception`` stays as Python prints it.
"""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_ESCAPES = ({c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}
            | {0x2028: "\\u2028", 0x2029: "\\u2029", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"})


class OneLineFormatter(logging.Formatter):
    """:data:`FORMAT` with control characters in the message escaped (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__(FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        return super().formatMessage(record).translate(_ESCAPES)
