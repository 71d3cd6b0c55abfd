"""Simulated sensor firmware: serial line devices on pseudo-terminals and LoRa nodes.

It knows nothing about MQTT: it writes bytes on ptys exactly as real devices write
them on UARTs, keeps a ledger of what it emitted, and injects faults on demand.
"""

from __future__ import annotations

from firmware_sim.district import District, lora_node_ids, serial_sensor_specs
from firmware_sim.errors import SimulatorError
from firmware_sim.faults import Faults, LineFault
from firmware_sim.ledger import Ledger, LedgerReading, read_ledger
from firmware_sim.lora import DEFAULT_CHANNELS, LoraChannel, LoraNode, LoraRadioModule
from firmware_sim.serial_sensor import SerialSensor
from firmware_sim.signals import KIND_QUANTITIES, make_model

__all__ = [
    "DEFAULT_CHANNELS",
    "KIND_QUANTITIES",
    "District",
    "LoraChannel",
    "LoraNode",
    "LoraRadioModule",
    "Faults",
    "Ledger",
    "LedgerReading",
    "LineFault",
    "SerialSensor",
    "SimulatorError",
    "lora_node_ids",
    "make_model",
    "read_ledger",
    "serial_sensor_specs",
]
