"""flightd, the onboard daemon: journal, model registry, executor, governor and the MQTT shell around them."""

__version__ = "0.1.0"
