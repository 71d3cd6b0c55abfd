"""Tests that count: the firmware's ledger against the database, through crashes.

Real parts end to end: simulated sensors on ptys (with their ledger) → the agent as a
process → Mosquitto → ingest (in a thread) → PostgreSQL. A *line* is the readings of
one sensor line; the edge stamps each line of a port with a distinct microsecond, so
the database's lines of a sensor, in time order, must be the ledger's lines in
emission order: equal when nothing may be lost, equal but for one contiguous gap
(the kill window) when the agent itself is SIGKILLed.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from edge_lab import Line, Platform, Witness, ledger_lines, queued_packs, rows_in
from lab_probes import wait

from firmware_sim import Ledger, SerialSensor
from protocol.senml import decode_pack
from protocol.topics import status_topic, up_topic

pytestmark = pytest.mark.slow

GW = "gw-ledger"
SENSORS = ["air-001", "energy-001"]


def _rig(tmp_path: Path, *, org: str, url: str, drain_rate: int = 100) -> tuple[Ledger, list[SerialSensor], Path]:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    sensors = [
        SerialSensor(sid, kind=sid.split("-")[0], period_s=0.02, seed=11, link=tmp_path / "tty" / sid, ledger=ledger)
        for sid in SENSORS
    ]
    lines = [
        "[gateway]", f'org = "{org}"', f'device = "{GW}"', 'boot_id_file = "boot_id"', "status_interval_s = 0.3",
        "[mqtt]", f'url = "{url}"', "commit_timeout_s = 5",
        "[buffer]", 'path = "buffer.sqlite"', "pack_max_readings = 20", "pack_max_age_ms = 200",
        f"drain_rate_packs_per_s = {drain_rate}",
    ]  # fmt: skip
    for s in sensors:
        lines += ["[[serial]]", f'path = "{s.path}"']
    config = tmp_path / "edge.toml"
    config.write_text("\n".join(lines) + "\n")
    return ledger, sensors, config


def _wait_ready(agent: Any, ports: int) -> None:
    wait(
        lambda: agent.log().count("opened ") >= ports and "connected to" in agent.log(),
        20,
        "the agent to open its ports and connect",
    )
    assert agent.proc.poll() is None, agent.log()


def _size(lines: dict[str, list[Line]]) -> int:
    return sum(len(v) for v in lines.values())


def _diff(want: dict[str, list[Line]], got: dict[str, list[Line]]) -> str:
    out = []
    for sensor in want:
        w, g = Counter(want[sensor]), Counter(got.get(sensor, []))
        out.append(f"{sensor}: {len(want[sensor])} emitted, {len(got.get(sensor, []))} stored, "
                   f"{sum((w - g).values())} missing, {sum((g - w).values())} extra")
    return "; ".join(out)


def _all_stored(platform: Platform, want: dict[str, list[Line]]) -> bool:
    return _size(platform.lines(SENSORS)) >= _size(want)


def _stored(platform: Platform, sensor: str) -> int:
    return len(platform.lines([sensor])[sensor])


def _assert_exact(platform: Platform, want: dict[str, list[Line]], buffer: Path) -> None:
    wait(lambda: _all_stored(platform, want), 60, f"{_size(want)} lines in the database")
    # a duplicate is a pack published again before its commit; once every pack is committed and
    # pruned the agent publishes none again, and ingest has stored every pack it received
    wait(lambda: not queued_packs(buffer), 20, "the buffer to be pruned")
    wait(lambda: (c := platform.counters())["packs_received"] == c["packs_stored"], 20,
         "ingest to store every pack it received")
    got = platform.lines(SENSORS)
    assert got == want, _diff(want, got)
    counters = platform.counters()
    assert counters["packs_dead_lettered"] == 0
    assert counters["packs_received"] == counters["packs_stored"]


def test_broker_sigkill_mid_stream(
    tmp_path: Path, org: str, private_broker: Any, start_platform: Any, start_agent: Any
) -> None:
    """Mosquitto SIGKILLed while packs are in flight and restarted: zero missing, zero duplicated."""
    platform = start_platform(private_broker.url, gateway=GW, sensors=SENSORS)
    ledger, sensors, config = _rig(tmp_path, org=org, url=private_broker.url)
    agent = start_agent(config)
    try:
        _wait_ready(agent, len(sensors))
        for s in sensors:
            s.start()
        wait(lambda: _size(platform.lines(SENSORS)) >= 20 and _size(ledger_lines(ledger.path)) >= 75, 30,
             "packs in flight: lines stored and more emitted")
        private_broker.kill()  # whatever was not in its last snapshot is gone
        time.sleep(1.0)  # the scenario: the broker is down this long while the sensors emit
        stored = _size(platform.lines(SENSORS))
        private_broker.start()
        wait(lambda: agent.log().count("connected to") >= 2 and _size(platform.lines(SENSORS)) > stored
             and _size(ledger_lines(ledger.path)) >= 150, 30, "the agent back on the broker, streaming")
        for s in sensors:
            s.stop()
        want = ledger_lines(ledger.path)
        assert _size(want) >= 150
        _assert_exact(platform, want, tmp_path / "buffer.sqlite")
        assert agent.log().count("connected to") >= 2, "the agent lost the broker mid-stream and came back"
        assert agent.stop() == 0, agent.log()
    finally:
        for s in sensors:
            s.close()
        ledger.close()


def test_broker_stopped_then_back_drains_in_order(
    tmp_path: Path, org: str, private_broker: Any, start_platform: Any, start_agent: Any
) -> None:
    """The broker is away for a while: packs pile up in SQLite, then drain, in order, all of them."""
    platform = start_platform(private_broker.url, gateway=GW, sensors=SENSORS)
    witness = Witness(private_broker.host, private_broker.port, up_topic(org, GW))
    ledger, sensors, config = _rig(tmp_path, org=org, url=private_broker.url)
    agent = start_agent(config)
    db = tmp_path / "buffer.sqlite"
    try:
        _wait_ready(agent, len(sensors))
        wait(lambda: witness.client.is_connected(), 10, "the witness")
        for s in sensors:
            s.start()
        wait(lambda: _size(platform.lines(SENSORS)) >= 20, 30, "the stream to reach the database")
        private_broker.stop()
        before = len(queued_packs(db))
        backlog = wait(lambda: (n := len(queued_packs(db))) > before + 5 and n, 30,
                       "packs to pile up in the buffer while the broker is away")
        private_broker.start()
        wait(lambda: agent.log().count("connected to") >= 2, 30, "the agent back on the broker")
        for s in sensors:
            s.stop()
        want = ledger_lines(ledger.path)
        _assert_exact(platform, want, db)
        boot_id = (tmp_path / "boot_id").read_text().strip()
        sealed = wait(
            lambda: len(witness.first_arrivals()) >= backlog and witness.first_arrivals(), 10, "the witness"
        )
        assert {b for b, _ in sealed} == {boot_id}
        seqs = [s for _, s in sealed]
        assert seqs == list(range(len(seqs))), "every pack reached subscribers, first time in seq order"
        assert agent.stop() == 0, agent.log()
    finally:
        witness.close()
        for s in sensors:
            s.close()
        ledger.close()


def test_agent_sigkill_mid_stream(
    tmp_path: Path, org: str, mqtt_broker: Any, start_platform: Any, start_agent: Any
) -> None:
    """The agent SIGKILLed and restarted: every reading it had queued arrives once; the only
    loss is one contiguous run of lines per sensor around the kill (read but not yet stored)."""
    platform = start_platform(mqtt_broker.url, gateway=GW, sensors=SENSORS)
    # ~15 packs/s are sealed; drained at 8/s, a backlog of uncommitted packs builds up
    ledger, sensors, config = _rig(tmp_path, org=org, url=mqtt_broker.url, drain_rate=8)
    db = tmp_path / "buffer.sqlite"
    agent = start_agent(config)
    try:
        _wait_ready(agent, len(sensors))
        first_boot = (tmp_path / "boot_id").read_text().strip()
        for s in sensors:
            s.start()
        wait(lambda: _size(platform.lines(SENSORS)) >= 20 and len(queued_packs(db)) >= 10, 30,
             "lines stored and a backlog of packs in the buffer")
        agent.proc.kill()
        agent.proc.wait()
        queued = queued_packs(db)  # what the dead agent had stored (committed or not)
        at_kill = _size(ledger_lines(ledger.path))
        time.sleep(0.5)  # the scenario: the agent is dead this long while the sensors emit
        config.write_text(config.read_text().replace("drain_rate_packs_per_s = 8", "drain_rate_packs_per_s = 100"))
        agent = start_agent(config)
        _wait_ready(agent, len(sensors))
        # more lines stored than were emitted before the kill: the new boot reads and delivers
        wait(lambda: _size(platform.lines(SENSORS)) > at_kill, 60, "lines of the restarted agent in the database")
        for s in sensors:
            s.stop()
        want = ledger_lines(ledger.path)
        last = {sensor: lines[-1] for sensor, lines in want.items()}
        wait(
            lambda: all(platform.lines(SENSORS)[s][-1:] == [last[s]] for s in SENSORS), 60, "the last lines"
        )
        wait(lambda: not queued_packs(db), 20, "both boots' packs to be committed and pruned")
        assert (tmp_path / "boot_id").read_text().strip() != first_boot
        assert agent.stop() == 0, agent.log()
    finally:
        for s in sensors:
            s.close()
        ledger.close()

    rows = platform.rows(SENSORS)
    stamps = Counter((device, quantity, t_us) for device, quantity, t_us, _ in rows)
    assert max(stamps.values()) == 1, "no reading stored twice"
    stored = Counter(rows)
    assert {b for b, _, _ in queued} == {first_boot} and len(queued) >= 5, "a backlog at the kill"
    for boot_id, seq, body in queued:
        for r in decode_pack(body).records:
            device, _, quantity = r.name.partition("/")
            key = (device, quantity, round(r.time * 1_000_000), r.value)
            assert stored[key] == 1, f"pack {boot_id}/{seq}: {key} was queued but is not in the database once"

    got = platform.lines(SENSORS)
    for sensor in SENSORS:
        w, g = want[sensor], got[sensor]
        gap = len(w) - len(g)
        keep = next((i for i, (a, b) in enumerate(zip(w, g)) if a != b), len(g))
        assert 0 <= gap and g == w[:keep] + w[keep + gap :], f"{sensor}: more than one contiguous gap"
        print(f"{sensor}: {len(w)} lines emitted, {gap} lost in the kill window, none duplicated")


def test_garbage_truncation_and_unplugged_port_are_counted(
    tmp_path: Path, org: str, mqtt_broker: Any, collector: Any, start_platform: Any, start_agent: Any
) -> None:
    """Bad bytes and a port that vanishes: counted on the status, never published, agent alive."""
    platform = start_platform(mqtt_broker.url, gateway=GW, sensors=SENSORS)
    ledger, sensors, config = _rig(tmp_path, org=org, url=mqtt_broker.url)
    air, energy = sensors
    agent = start_agent(config)
    topic = status_topic(org, GW)

    def status() -> dict[str, Any]:
        return collector.last_status(topic) or {"sources": {}, "bad_lines": {}, "port_losses": {}}

    try:
        _wait_ready(agent, len(sensors))
        for s in sensors:
            s.start()
        wait(lambda: all(platform.lines(SENSORS).values()), 30, "lines of both sensors in the database")
        air.faults.garbage(count=3)
        air.faults.truncate(count=2)
        energy.faults.garbage()
        wait(lambda: rows_in(ledger.path, "faults") >= 6, 10, "the six faulty lines on the wire")
        energy.stop()
        emitted = len(ledger_lines(ledger.path)["energy-001"])
        # the agent reads what is on the wire: every line energy emitted is stored
        wait(lambda: _stored(platform, "energy-001") >= emitted, 30, "energy's lines in the database")
        energy.unplug()
        wait(lambda: status()["port_losses"].get(energy.path) == 1, 10, "the lost port in the status")
        wait(lambda: status()["sources"].get(energy.path) == "waiting", 10, "the port to be awaited")
        energy.replug()
        wait(lambda: status()["sources"].get(energy.path) == "open", 15, "the port to be reopened")
        energy.start()
        wait(lambda: _stored(platform, "energy-001") > emitted, 30, "lines of the replugged sensor in the database")
        for s in sensors:
            s.stop()
        want = ledger_lines(ledger.path)
        assert energy.boot == 1
        _assert_exact(platform, want, tmp_path / "buffer.sqlite")
        st = wait(
            lambda: status()["readings_read"] == sum(len(line) for v in want.values() for line in v) and status(),
            10, "a status after the last line",
        )
        assert st["bad_lines"] == {"garbage": 4, "truncated": 2}
        assert st["port_losses"] == {energy.path: 1}
        assert st["state"] == "online" and agent.proc.poll() is None
        assert st["readings_dropped"] == 0 and st["dropped"] == 0
        assert agent.stop() == 0, agent.log()
    finally:
        for s in sensors:
            s.close()
        ledger.close()
