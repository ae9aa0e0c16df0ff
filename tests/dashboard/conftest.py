"""The dashboard's tests meet a real Mosquitto, as the MQTT tests do."""

from tests.mqtt.conftest import broker

__all__ = ["broker"]
