"""The fleet's ground segment: orbitd's routing arithmetic (:mod:`ground.fleet.dispatch`, pure, shared
with the fleet simulator), the view of the fleet from the satellites' retained status, the re-route
rule, the dispatcher on MQTT and the ``ground fleet`` commands. See docs/fleet.md, "The real fleet"."""
