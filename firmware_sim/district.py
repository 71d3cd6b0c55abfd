"""A district: many serial sensors and one LoRa radio module with its nodes, one process.

Every device is driven by one :class:`~firmware_sim._loop.TickLoop` thread. Ids are
deterministic: serial sensors take their kind from :data:`SERIAL_KIND_CYCLE` in turn
and are numbered per kind (``air-001``, ``noise-001``, ``energy-001``, ...); building
energy meters (a second SME's, read by a gateway of its own) are ``meter-001..``; LoRa
nodes are ``lora-001..`` with radio addresses ``1..M``. The district writes
``DIR/manifest.json`` (see :meth:`District.manifest`) and puts a stable symlink for
each pty under ``DIR/tty/`` (``DIR/tty/air-001``, ``DIR/tty/lora-radio``).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware_sim._loop import Periodic, TickLoop
from firmware_sim.ledger import Ledger
from firmware_sim.lora import DEFAULT_CHANNELS, LoraNode, LoraRadioModule
from firmware_sim.serial_sensor import SerialSensor
from firmware_sim.signals import KIND_QUANTITIES

__all__ = [
    "RADIO_LINK_NAME",
    "SERIAL_KIND_CYCLE",
    "District",
    "SensorSpec",
    "lora_node_ids",
    "meter_sensor_specs",
    "serial_sensor_specs",
]

log = logging.getLogger("firmware_sim.district")

SERIAL_KIND_CYCLE: tuple[str, ...] = ("air", "noise", "energy", "traffic", "weather")
RADIO_LINK_NAME = "lora-radio"


@dataclass(frozen=True, slots=True)
class SensorSpec:
    sensor_id: str
    kind: str


def serial_sensor_specs(n: int) -> list[SensorSpec]:
    """The ``n`` serial sensors of a district, in a fixed order (kinds in turn)."""
    counts: dict[str, int] = {}
    specs = []
    for i in range(n):
        kind = SERIAL_KIND_CYCLE[i % len(SERIAL_KIND_CYCLE)]
        counts[kind] = counts.get(kind, 0) + 1
        specs.append(SensorSpec(f"{kind}-{counts[kind]:03d}", kind))
    return specs


def meter_sensor_specs(n: int) -> list[SensorSpec]:
    """The ``n`` building energy meters of a district (serial sensors of kind ``energy``)."""
    return [SensorSpec(f"meter-{i:03d}", "energy") for i in range(1, n + 1)]


def lora_node_ids(m: int) -> dict[int, str]:
    """Radio address -> device id of the ``m`` LoRa nodes."""
    return {a: f"lora-{a:03d}" for a in range(1, m + 1)}


class District:
    """Runs ``serial`` sensors and ``meters`` energy meters on ptys and ``lora`` nodes
    behind one radio module."""

    def __init__(
        self,
        directory: Path | str,
        *,
        serial: int = 20,
        lora: int = 10,
        meters: int = 0,
        period_s: float = 1.0,
        lora_period_s: float = 5.0,
        seed: int = 1,
        ledger_path: Path | str | None = None,
        baud: int = 115200,
        fault_rate: float = 0.0,
    ) -> None:
        self.directory = Path(directory)
        self.tty_dir = self.directory / "tty"
        self.period_s = period_s
        self.lora_period_s = lora_period_s
        self.seed = seed
        self.baud = baud
        self.ledger = Ledger(ledger_path) if ledger_path is not None else None
        self.sensors: list[SerialSensor] = []
        self.radio: LoraRadioModule | None = None
        self._loop: TickLoop | None = None
        try:
            for spec in serial_sensor_specs(serial) + meter_sensor_specs(meters):
                self.sensors.append(
                    SerialSensor(
                        spec.sensor_id,
                        kind=spec.kind,
                        period_s=period_s,
                        seed=seed,
                        link=self.tty_dir / spec.sensor_id,
                        baud=baud,
                        ledger=self.ledger,
                        fault_rate=fault_rate,
                    )
                )
            if lora > 0:
                self.radio = LoraRadioModule(
                    link=self.tty_dir / RADIO_LINK_NAME, baud=baud, seed=seed, ledger=self.ledger
                )
                for address, device_id in lora_node_ids(lora).items():
                    self.radio.add_node(
                        LoraNode(address, device_id, seed=seed, period_s=lora_period_s, fault_rate=fault_rate)
                    )
        except BaseException:
            self.close()
            raise

    def manifest(self) -> dict[str, Any]:
        """What the district runs, for configs and tests (also written to ``manifest.json``)."""
        out: dict[str, Any] = {
            "pid": os.getpid(),
            "seed": self.seed,
            "period_s": self.period_s,
            "ledger": str(self.ledger.path) if self.ledger else None,
            "serial": [
                {
                    "sensor_id": s.sensor_id,
                    "kind": s.kind,
                    "quantities": list(KIND_QUANTITIES[s.kind]),
                    "tty": s.path,
                    "device": s.pty.slave_path,
                    "baud": s.baud,
                }
                for s in self.sensors
            ],
            "lora": None,
        }
        if self.radio is not None:
            out["lora"] = {
                "tty": self.radio.path,
                "device": self.radio.pty.slave_path,
                "baud": self.radio.baud,
                "period_s": self.lora_period_s,
                "nodes": {str(n.address): n.device_id for n in self.radio.nodes},
                "channels": {str(c.channel): c.quantity for c in DEFAULT_CHANNELS},
                "channel_kinds": {str(c.channel): c.kind for c in DEFAULT_CHANNELS},
            }
        return out

    def write_manifest(self) -> Path:
        path = self.directory / "manifest.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.manifest(), indent=2) + "\n")
        os.replace(tmp, path)
        return path

    def start(self) -> None:
        devices: list[Periodic] = list(self.sensors)
        if self.radio is not None:
            devices.extend(self.radio.nodes)
        self.write_manifest()
        self._loop = TickLoop(devices, name="district")
        self._loop.start()
        log.info(
            "district running: %d serial sensors, %d LoRa nodes, ttys under %s",
            len(self.sensors),
            len(self.radio.nodes) if self.radio else 0,
            self.tty_dir,
        )

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.stop()
            self._loop = None

    def close(self) -> None:
        """Stop, close every pty and remove the symlinks and the manifest."""
        self.stop()
        for s in self.sensors:
            s.close()
        if self.radio is not None:
            self.radio.close()
        (self.directory / "manifest.json").unlink(missing_ok=True)
        if self.ledger is not None:
            self.ledger.close()

    def __enter__(self) -> District:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
