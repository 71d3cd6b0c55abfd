"""The agent as a real process against a real Mosquitto, fed by simulated firmware on ptys."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from edge_lab import queued_packs, rows_in
from lab_probes import wait

from firmware_sim import Ledger, SerialSensor, read_ledger
from firmware_sim.lora import LoraNode, LoraRadioModule
from protocol.quantities import QUANTITIES
from protocol.senml import SENML_CBOR, Pack, decode_pack
from protocol.topics import Watermark, committed_topic, encode_watermark, status_topic, up_topic

pytestmark = pytest.mark.slow

GW = "gw-test"


def _config(tmp_path: Path, *, org: str, url: str, serial: list[str], lora: str | None = None) -> Path:
    lines = [
        "[gateway]",
        f'org = "{org}"',
        f'device = "{GW}"',
        'boot_id_file = "boot_id"',
        "status_interval_s = 0.3",
        "[mqtt]",
        f'url = "{url}"',
        "commit_timeout_s = 120",
        "[buffer]",
        'path = "buffer.sqlite"',
        "pack_max_readings = 20",
        "pack_max_age_ms = 200",
        "drain_rate_packs_per_s = 200",
    ]
    for path in serial:
        lines += ["[[serial]]", f'path = "{path}"', 'sensors = ["air-001", "noise-001"]']
    if lora:
        lines += [
            "[[lora]]", f'path = "{lora}"',
            "[lora.nodes]", '"1" = "lora-001"', '"2" = "lora-002"',
            "[lora.channels]", '"1" = "temperature"', '"2" = "humidity"', '"3" = "pressure"',
            '"4" = "pm2_5"', '"5" = "battery_voltage"',
        ]  # fmt: skip
    path = tmp_path / "edge.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _packs(collector: Any, org: str) -> dict[tuple[str | None, int | None], Pack]:
    """Packs received on the up topic, one per (boot_id, seq) (redeliveries collapse)."""
    out = {}
    for m in collector.on(up_topic(org, GW)):
        pack = decode_pack(m.payload, content_type=m.content_type)
        out[(pack.boot_id, pack.seq)] = pack
    return out


def _queued(db: Path) -> int:
    return rows_in(db, "packs")


def _buffered_readings(db: Path) -> int:
    return sum(len(decode_pack(body).records) for _, _, body in queued_packs(db))


def _wait_open(collector: Any, org: str, paths: list[str]) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        st = collector.last_status(status_topic(org, GW))
        if st and st["state"] == "online" and all(st["sources"].get(p) == "open" for p in paths):
            return st
        return None

    return collector.wait_for(ready, 15, "the agent to open its ports")


def test_ledger_readings_arrive_exactly_and_watermark_prunes(
    tmp_path: Path, mqtt_broker: Any, org: str, collector: Any, start_agent: Any
) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    tty = tmp_path / "tty"
    air = SerialSensor("air-001", kind="air", period_s=0.1, seed=5, link=tty / "air-001", ledger=ledger)
    stranger = SerialSensor("energy-009", kind="energy", period_s=0.25, seed=5, link=tty / "energy-009")
    radio = LoraRadioModule(link=tty / "lora-radio", seed=5, ledger=ledger)
    for a in (1, 2):
        radio.add_node(LoraNode(a, f"lora-{a:03d}", seed=5, period_s=0.3))
    ports = [str(tty / "air-001"), str(tty / "energy-009")]
    config = _config(tmp_path, org=org, url=mqtt_broker.url, serial=ports, lora=str(tty / "lora-radio"))
    agent = start_agent(config)
    try:
        status = _wait_open(collector, org, [*ports, str(tty / "lora-radio")])
        boot_id = (tmp_path / "boot_id").read_text().strip()
        assert status["boot_id"] == boot_id

        air.start()
        stranger.start()
        radio.start()
        collector.wait_for(
            lambda: {r.sensor_id for r in read_ledger(ledger.path)} >= {"air-001", "lora-001", "lora-002"}
            and _packs(collector, org),
            15, "the stream under way: readings emitted and published",
        )
        air.faults.garbage(count=2)
        air.faults.truncate()
        radio.write_raw(b"+RCV=9,2,0167,-50,5.0\r\n")  # a node nobody registered
        collector.wait_for(
            lambda: rows_in(ledger.path, "faults") >= 3 and stranger.lines_written >= 4
            and sum(r.sensor_id.startswith("lora-") for r in read_ledger(ledger.path)) >= 10,
            15, "the faulty lines, four of the stranger and ten LoRa readings emitted",
        )
        for device in (air, stranger, radio):
            device.stop()
        emitted = read_ledger(ledger.path)
        want = Counter((f"{r.sensor_id}/{r.quantity}", r.value) for r in emitted)
        assert sum(want[k] for k in want if k[0].startswith("lora-")) >= 10

        def all_arrived() -> bool:
            got = sum(len(p.records) for p in _packs(collector, org).values())
            return got >= len(emitted)

        collector.wait_for(all_arrived, 10, f"{len(emitted)} readings")
        packs = _packs(collector, org)
        got = Counter((r.name, r.value) for p in packs.values() for r in p.records)
        assert got == want, "exactly the ledger's readings, no garbage, no stranger"
        assert {b for b, _ in packs} == {boot_id}
        assert sorted(s for _, s in packs) == list(range(len(packs))), "contiguous pack seqs"
        t0 = min(r.emitted_at for r in emitted)
        t1 = max(r.emitted_at for r in emitted)
        for p in packs.values():
            assert len(p.records) <= 20
            for r in p.records:
                assert t0 - 0.5 <= r.time <= t1 + 2.0, "stamped at the edge when read"
                quantity = r.name.split("/", 1)[1]
                assert r.unit == QUANTITIES[quantity].unit
        assert {m.content_type for m in collector.on(up_topic(org, GW))} == {SENML_CBOR}

        # a status published after the last pack reached the collector counts every pack published
        statuses_before = len(collector.on(status_topic(org, GW)))

        def counted() -> dict[str, Any] | None:
            if len(collector.on(status_topic(org, GW))) <= statuses_before:
                return None
            st = collector.last_status(status_topic(org, GW))
            bad = st["bad_lines"] if st else {}
            if (
                bad.get("garbage") == 2
                and bad.get("truncated") == 1
                and bad.get("unknown_node") == 1
                and st["readings_read"] == len(emitted)  # a status after the last line
            ):
                return st
            return None

        st = collector.wait_for(counted, 5, "bad line counts in the status")
        assert st["bad_lines"]["not_allowed"] >= 4
        assert st["dropped"] == 0 and st["readings_dropped"] == 0
        assert st["packs_published"] >= len(packs)

        # nothing is committed yet: every pack is still in the buffer
        db = tmp_path / "buffer.sqlite"
        assert _queued(db) == len(packs)
        collector.publish(
            committed_topic(org, GW), encode_watermark(Watermark(boot_id, len(packs) - 1)), retain=True
        )
        collector.wait_for(lambda: _queued(db) == 0, 5, "the buffer to be pruned")
        collector.wait_for(
            lambda: (collector.last_status(status_topic(org, GW)) or {}).get("buffer_depth") == 0, 5, "depth 0"
        )
    finally:
        code = agent.stop()
        for device in (air, stranger, radio):
            device.close()
        ledger.close()
    assert code == 0, agent.log()
    final = collector.wait_for(
        lambda: (collector.last_status(status_topic(org, GW)) or {}).get("state") == "offline", 5, "offline"
    )
    assert final


def test_store_and_forward_across_restart(
    tmp_path: Path, mqtt_broker: Any, org: str, collector: Any, start_agent: Any
) -> None:
    """Offline: packs pile up in SQLite; the next boot drains them (old boot id) first."""
    ledger = Ledger(tmp_path / "ledger.sqlite")
    sensor = SerialSensor("noise-001", kind="noise", period_s=0.05, seed=9, link=tmp_path / "tty" / "noise-001", ledger=ledger)
    dead_port = _free_port()
    offline_cfg = _config(tmp_path, org=org, url=f"mqtt://127.0.0.1:{dead_port}", serial=[sensor.path])
    agent = start_agent(offline_cfg)
    try:
        db = tmp_path / "buffer.sqlite"
        wait(lambda: "opened" in agent.log(), 10, "the agent to open its port", detail=agent.log)
        first_boot = (tmp_path / "boot_id").read_text().strip()
        sensor.start()
        wait(lambda: len(read_ledger(ledger.path)) >= 10 and _queued(db) >= 1, 15, "readings queued offline")
        sensor.stop()
        # the last pack seals after pack_max_age_ms: then the buffer holds every emitted reading
        wait(lambda: _buffered_readings(db) >= len(read_ledger(ledger.path)), 10, "the last pack sealed")
        assert agent.stop() == 0, agent.log()
        offline = len(read_ledger(ledger.path))
        assert offline >= 10
        assert _queued(db) >= 1

        online_cfg = _config(tmp_path, org=org, url=mqtt_broker.url, serial=[sensor.path])
        agent = start_agent(online_cfg)
        collector.wait_for(
            lambda: sum(len(p.records) for p in _packs(collector, org).values()) >= offline, 10, "the backlog"
        )
        second_boot = (tmp_path / "boot_id").read_text().strip()
        assert second_boot != first_boot
        packs = _packs(collector, org)
        assert {b for b, _ in packs} == {first_boot}
        got = Counter((r.name, r.value) for p in packs.values() for r in p.records)
        assert got == Counter((f"{r.sensor_id}/{r.quantity}", r.value) for r in read_ledger(ledger.path))
        collector.publish(
            committed_topic(org, GW), encode_watermark(Watermark(first_boot, max(s for _, s in packs))), retain=True
        )
        collector.wait_for(lambda: _queued(db) == 0, 5, "the backlog to be pruned")
    finally:
        agent.stop()
        sensor.close()
        ledger.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
