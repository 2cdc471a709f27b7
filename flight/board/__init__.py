"""The board flightd runs on: probes that read it and actuators that steer it.

Readers take a filesystem root (``/`` on the board, a directory tree laid out as on the real
board in tests) and return plain data; commands (``vcgencmd``, ``nvpmodel``) go through an
injectable runner. See docs/boards.md.
"""

from flight.board.board import Board, detect_board
from flight.board.sample import BoardProbe, BoardSample

__all__ = ["Board", "BoardProbe", "BoardSample", "detect_board"]
