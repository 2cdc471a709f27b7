"""The space link of the hardware-in-the-loop rig (docs/hil.md).

Pure parts (data in, data out): :mod:`hil.link.geometry` (Earth rotation, ground stations, look angles),
:mod:`hil.link.track` (where an orbit is over the rotating Earth), :mod:`hil.link.contact` (contact plans:
acquisition and loss of signal per station, relay mode), :mod:`hil.link.model` (loss bursts, TCP
retransmission timing, token bucket), :mod:`hil.link.config` (the scenario's ``[link]`` table) and
:mod:`hil.link.bridge` (Mosquitto bridge configuration).

At the edges: :mod:`hil.link.clock` (simulated time under warp), :mod:`hil.link.relay` (the user-space
link emulator, an asyncio TCP relay), :mod:`hil.link.board` (where the board side runs) and
:mod:`hil.link.netns` (the board side in its own network namespace).
"""
