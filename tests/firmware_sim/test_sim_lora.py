"""The radio module's pty carries +READY and +RCV lines whose LPP decodes to the nodes' values."""

from __future__ import annotations

import time
from pathlib import Path

import serial

from firmware_sim import Ledger, read_ledger
from firmware_sim.lora import DEFAULT_CHANNELS, LoraNode, LoraRadioModule
from protocol.lora_uart import parse_radio_line
from protocol.lpp import decode_lpp


def _lines(port: serial.Serial, n: int, timeout: float = 5.0) -> list[bytes]:
    buf = b""
    deadline = time.monotonic() + timeout
    while buf.count(b"\n") < n and time.monotonic() < deadline:
        buf += port.read(max(1, port.in_waiting))
    return [line + b"\n" for line in buf.split(b"\n")[:-1]]


def test_rcv_lines_decode_to_the_ledger(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    module = LoraRadioModule(link=tmp_path / "tty" / "lora-radio", ledger=ledger, seed=1)
    nodes = [module.add_node(LoraNode(a, f"lora-{a:03d}", seed=1)) for a in (1, 2, 3)]
    with module, serial.Serial(module.path, timeout=0.2) as port:
        module.write_raw(b"+READY\r\n")  # a module reset while the gateway listens
        t = 1_700_000_000.0
        for i in range(2):
            for node in nodes:
                node.tick(t + i)
        lines = _lines(port, 7)
    assert parse_radio_line(lines[0]) is None
    frames = [parse_radio_line(line) for line in lines[1:]]
    assert [f.address for f in frames if f] == [1, 2, 3, 1, 2, 3]
    quantity_of = {c.channel: c.quantity for c in DEFAULT_CHANNELS}
    received = [
        (f"lora-{f.address:03d}", quantity_of[v.channel], v.value)
        for f in frames
        if f
        for v in decode_lpp(f.payload)
    ]
    rows = read_ledger(ledger.path)
    assert [(r.sensor_id, r.quantity, r.value) for r in rows] == received
    assert {r.transport for r in rows} == {"lora"}
    assert [r.seq for r in rows if r.sensor_id == "lora-002"] == [0] * 5 + [1] * 5
    for f in frames:
        assert f is not None and -130 <= f.rssi <= -20
    ledger.close()


def test_nodes_transmit_on_their_own_with_jitter(tmp_path: Path) -> None:
    module = LoraRadioModule(seed=2)
    for a in (1, 2):
        module.add_node(LoraNode(a, f"lora-{a:03d}", seed=2, period_s=0.05, jitter=0.2))
    with module, serial.Serial(module.path, timeout=0.2) as port:
        module.start()
        lines = _lines(port, 8)
        module.stop()
    frames = [parse_radio_line(line) for line in lines]
    assert {f.address for f in frames if f} == {1, 2}
    for f in frames:
        assert f is None or len(decode_lpp(f.payload)) == len(DEFAULT_CHANNELS)
