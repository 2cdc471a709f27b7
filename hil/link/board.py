"""Where the board side runs, as the rig sees it: how to start a command there and how the two sides
address each other. :class:`hil.link.netns.NetnsBoard` is one; :class:`LoopbackBoard` is the board side
sharing this host's loopback (no isolation: the relay is the only thing between the brokers because the
bridge is configured to go through it). A board reached by ssh, or the emulated Pi, provides the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class BoardSide(Protocol):
    """``launcher``: command prefix that runs a program on the board; ``board_address``: where the
    board's services listen, reachable from here; ``ground_address``: where the board reaches the ground
    side (the relay listens there)."""

    @property
    def launcher(self) -> list[str]: ...

    @property
    def board_address(self) -> str: ...

    @property
    def ground_address(self) -> str: ...


@dataclass(frozen=True)
class LoopbackBoard:
    """The board side on this host's loopback."""

    launcher: list[str] = field(default_factory=list)
    board_address: str = "127.0.0.1"
    ground_address: str = "127.0.0.1"
