"""The pure fleet simulator: a constellation of compute satellites, each with its plant and its power
policy, a located job stream, ground dispatch policies and inter-satellite offload. No clock, no I/O.
See docs/fleet.md."""
