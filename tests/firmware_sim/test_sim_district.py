"""``python -m firmware_sim district`` as a real process: ptys, links, manifest, clean exit."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import serial

from firmware_sim.district import lora_node_ids, serial_sensor_specs
from lab_probes import wait
from protocol.lora_uart import parse_radio_line
from protocol.serial_line import parse_line


def test_ids_are_deterministic() -> None:
    ids = [s.sensor_id for s in serial_sensor_specs(7)]
    assert ids == ["air-001", "noise-001", "energy-001", "traffic-001", "weather-001", "air-002", "noise-002"]
    assert lora_node_ids(3) == {1: "lora-001", 2: "lora-002", 3: "lora-003"}


@pytest.mark.slow
def test_district_process(tmp_path: Path) -> None:
    d = tmp_path / "district"
    proc = subprocess.Popen(
        [sys.executable, "-m", "firmware_sim", "district", "--serial", "6", "--lora", "3",
         "--dir", str(d), "--period", "0.1", "--lora-period", "0.2", "--ledger", str(tmp_path / "l.sqlite")],
        stderr=subprocess.PIPE,
    )
    try:
        wait(lambda: (d / "manifest.json").exists() or proc.poll() is not None, 10, "the manifest")
        assert (d / "manifest.json").exists(), "no manifest"
        manifest = json.loads((d / "manifest.json").read_text())
        assert [s["sensor_id"] for s in manifest["serial"]] == [s.sensor_id for s in serial_sensor_specs(6)]
        assert manifest["lora"]["nodes"] == {"1": "lora-001", "2": "lora-002", "3": "lora-003"}
        assert manifest["lora"]["channels"]["3"] == "pressure"
        first = manifest["serial"][0]
        assert first["tty"] == str(d / "tty" / "air-001")
        with serial.Serial(first["tty"], timeout=0.3) as port:
            port.read_until(b"\n")  # resynchronise
            line = parse_line(port.read_until(b"\n"))
        assert line.sensor_id == "air-001"
        with serial.Serial(manifest["lora"]["tty"], timeout=0.5) as port:
            port.read_until(b"\n")
            frame = parse_radio_line(port.read_until(b"\n"))
        assert frame is not None and frame.address in (1, 2, 3)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0, proc.stderr.read().decode() if proc.stderr else ""
    assert list((d / "tty").iterdir()) == [], "symlinks removed on exit"
    assert not (d / "manifest.json").exists()
