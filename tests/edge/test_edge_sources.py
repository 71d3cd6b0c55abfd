"""Sources on real ptys: parsing, counting bad lines, surviving a port that comes and goes."""

from __future__ import annotations

import queue
import time
from pathlib import Path

from edge.config import LoraSourceConfig, SerialSourceConfig
from edge.sources import LoraSource, SerialSource, SourceStats
from firmware_sim import SerialSensor
from firmware_sim.lora import LoraNode, LoraRadioModule
from lab_probes import wait
from protocol.senml import Record


def _wait(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    wait(predicate, timeout, "the source's counters and states")


def _drain(q: queue.Queue[tuple[Record, ...]]) -> list[Record]:
    out: list[Record] = []
    while True:
        try:
            out += q.get_nowait()
        except queue.Empty:
            return out


def test_serial_source_counts_bad_lines_and_reopens(tmp_path: Path) -> None:
    link = tmp_path / "tty" / "air-001"
    q: queue.Queue[tuple[Record, ...]] = queue.Queue(maxsize=100)
    stats = SourceStats()
    src = SerialSource(SerialSourceConfig(str(link), sensors=frozenset({"air-001"})), q, stats, read_timeout_s=0.05)
    src.start()  # before the port exists: it waits and retries
    try:
        _wait(lambda: stats.snapshot()["sources"][str(link)] == "waiting")
        sensor = SerialSensor("air-001", kind="air", seed=1, link=link)
        _wait(lambda: stats.snapshot()["sources"][str(link)] == "open")
        t = time.time()
        sensor.tick(t)
        sensor.faults.garbage()
        sensor.tick(t + 1)
        sensor.pty.write(b"$CLAB,air-002,0,pm10=1.0*" + b"%02X" % _xor(b"CLAB,air-002,0,pm10=1.0") + b"\r\n")
        sensor.pty.write(b"x" * 3000 + b"\r\n")
        sensor.tick(t + 2)
        _wait(lambda: stats.snapshot()["lines_read"] == 2)
        records = _drain(q)
        assert [r.name for r in records[:5]] == [
            "air-001/temperature", "air-001/humidity", "air-001/pm2_5", "air-001/pm10", "air-001/no2",
        ]  # fmt: skip
        assert records[0].unit == "Cel" and records[2].unit == "ug/m3"
        assert all(t - 1 < r.time < time.time() + 1 for r in records)
        bad = stats.snapshot()["bad_lines"]
        assert bad == {"garbage": 1, "not_allowed": 1, "overlong": 1}

        sensor.close()  # unplugged: the source must wait for it, not die
        _wait(lambda: stats.snapshot()["sources"][str(link)] in ("waiting", "closed"))
        sensor = SerialSensor("air-001", kind="air", seed=2, link=link)
        _wait(lambda: stats.snapshot()["sources"][str(link)] == "open")
        sensor.tick(time.time())
        _wait(lambda: stats.snapshot()["lines_read"] == 3)
        assert src.is_alive()
        sensor.close()
    finally:
        src.stop()
        src.join(2)
    assert not src.is_alive()


def test_lora_source_maps_nodes_and_channels(tmp_path: Path) -> None:
    module = LoraRadioModule(seed=1)
    node = module.add_node(LoraNode(7, "ignored-name", seed=1))
    cfg = LoraSourceConfig(module.path, nodes=((7, "lora-007"),), channels=((3, "pressure"), (4, "pm2_5")))
    q: queue.Queue[tuple[Record, ...]] = queue.Queue(maxsize=100)
    stats = SourceStats()
    src = LoraSource(cfg, q, stats, read_timeout_s=0.05)
    src.start()
    try:
        _wait(lambda: stats.snapshot()["sources"][module.path] == "open")
        module.write_raw(b"+READY\r\n")
        module.write_raw(b"+ERR=12\r\n")
        node.tick(time.time())
        module.write_raw(b"+RCV=8,2,0167,-50,5.0\r\n")
        module.write_raw(b"+RCV=7,3,01670F,-50,5.0\r\n")  # LPP item cut short
        _wait(lambda: sum(stats.snapshot()["bad_lines"].values()) == 2)
        records = _drain(q)
    finally:
        src.stop()
        src.join(2)
        module.close()
    by_name = {r.name: r for r in records}
    assert set(by_name) == {
        "lora-007/temperature", "lora-007/humidity", "lora-007/pressure", "lora-007/pm2_5", "lora-007/voltage",
    }  # fmt: skip
    assert by_name["lora-007/pm2_5"].unit == "ug/m3", "the quantity's unit, not the LPP kind's"
    assert by_name["lora-007/voltage"].unit == "V", "unmapped channel: LPP kind and unit"
    assert stats.snapshot()["bad_lines"] == {"unknown_node": 1, "truncated": 1}


def _xor(body: bytes) -> int:
    x = 0
    for b in body:
        x ^= b
    return x
