"""The citylab gateway agent: serial and LoRa sources to MQTT, with store-and-forward.

It stays small enough for Raspberry-Pi-class hardware: the standard library,
paho-mqtt, pyserial, cbor2 and :mod:`protocol`, nothing else. Install it alone with
``pip install 'citylab[edge]'`` and run ``citylab-edge --config FILE``.
"""

from __future__ import annotations

from edge.agent import Agent, new_boot_id
from edge.config import EdgeConfig, load_config, parse_config
from edge.errors import ConfigError, EdgeError, MqttLinkError, QueueError
from edge.queue import PackQueue, QueuedPack

__all__ = [
    "Agent",
    "ConfigError",
    "EdgeConfig",
    "EdgeError",
    "MqttLinkError",
    "PackQueue",
    "QueueError",
    "QueuedPack",
    "load_config",
    "new_boot_id",
    "parse_config",
]
