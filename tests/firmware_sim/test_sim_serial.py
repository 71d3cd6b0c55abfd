"""SerialSensor on a real pty, read back with pyserial as the edge reads it."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest
import serial

from firmware_sim import Ledger, SerialSensor, read_ledger
from firmware_sim.signals import KIND_QUANTITIES
from protocol.errors import LineError
from protocol.serial_line import SensorLine, parse_line


def _read_lines(port: serial.Serial, n: int, timeout: float = 5.0) -> list[bytes]:
    buf = b""
    deadline = time.monotonic() + timeout
    while buf.count(b"\n") < n and time.monotonic() < deadline:
        buf += port.read(max(1, port.in_waiting))
    return [line + b"\n" for line in buf.split(b"\n")[:-1]]


def _parse_all(lines: list[bytes]) -> tuple[list[SensorLine], list[str]]:
    good, bad = [], []
    for line in lines:
        try:
            good.append(parse_line(line))
        except LineError as exc:
            bad.append(exc.reason)
    return good, bad


def test_lines_on_the_pty_parse_and_match_the_ledger(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    with SerialSensor("air-001", kind="air", seed=3, link=tmp_path / "tty" / "air-001", ledger=ledger) as s:
        assert os.readlink(tmp_path / "tty" / "air-001") == s.pty.slave_path
        with serial.Serial(s.path, 115200, timeout=0.2) as port:
            for i in range(5):
                s.tick(1_700_000_000.0 + i)
            lines = _read_lines(port, 5)
    good, bad = _parse_all(lines)
    assert bad == []
    assert [g.seq for g in good] == [0, 1, 2, 3, 4]
    assert {g.sensor_id for g in good} == {"air-001"}
    assert all(tuple(q for q, _ in g.fields) == KIND_QUANTITIES["air"] for g in good)
    emitted = [(r.seq, r.quantity, r.value) for r in read_ledger(ledger.path)]
    assert emitted == [(g.seq, q, v) for g in good for q, v in g.fields]
    ledger.close()
    assert not (tmp_path / "tty" / "air-001").exists(), "close() removes the symlink"


def test_same_seed_same_values(tmp_path: Path) -> None:
    def values(seed: int) -> list[float]:
        with SerialSensor("energy-001", kind="energy", seed=seed) as s, serial.Serial(s.path, timeout=0.2) as p:
            for i in range(4):
                s.tick(1_700_000_000.0 + 60 * i)
            good, _ = _parse_all(_read_lines(p, 4))
        return [v for g in good for _, v in g.fields]

    assert values(7) == values(7)
    assert values(7) != values(8)
    energy = values(7)[0::2]
    assert energy == sorted(energy), "the kWh register never decreases"


def test_reboot_restarts_seq_and_faults_are_bad_lines(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    with SerialSensor("noise-001", kind="noise", seed=1, ledger=ledger) as s:
        with serial.Serial(s.path, timeout=0.2) as port:
            t = 1_700_000_000.0
            s.tick(t)
            s.tick(t + 1)
            s.faults.reboot()
            s.tick(t + 2)  # silent while booting
            s.tick(t + 3)
            s.faults.garbage()
            s.tick(t + 4)
            s.faults.truncate()
            s.tick(t + 5)
            s.faults.dropout()
            s.tick(t + 6)
            s.tick(t + 7)
            lines = _read_lines(port, 6)
    good, bad = _parse_all(lines)
    assert [g.seq for g in good] == [0, 1, 0, 4]
    assert sorted(bad) == ["garbage", "truncated"]
    assert s.boot == 1
    rows = read_ledger(ledger.path)
    assert [(r.boot, r.seq) for r in rows] == [(0, 0), (0, 1), (1, 0), (1, 4)]
    ledger.close()


def test_value_faults(tmp_path: Path) -> None:
    with SerialSensor("weather-001", kind="weather", seed=2) as s, serial.Serial(s.path, timeout=0.2) as p:
        t = 1_700_000_000.0
        s.tick(t)
        s.faults.spike("pressure", factor=10.0)
        s.faults.stuck("humidity", count=3)
        s.tick(t + 1)
        s.tick(t + 2)
        s.tick(t + 3)
        good, _ = _parse_all(_read_lines(p, 4))
    pressure = [dict(g.fields)["pressure"] for g in good]
    humidity = [dict(g.fields)["humidity"] for g in good]
    assert pressure[1] > 5000 and all(900 < v < 1100 for v in pressure[2:])
    assert humidity[1] == humidity[2] == humidity[3]


def test_start_emits_periodically(tmp_path: Path) -> None:
    with SerialSensor("traffic-001", kind="traffic", period_s=0.05, seed=1) as s:
        with serial.Serial(s.path, timeout=0.2) as port:
            s.start()
            lines = _read_lines(port, 5)
            s.stop()
    good, bad = _parse_all(lines)
    assert len(good) >= 5 and bad == []
    assert [g.seq for g in good] == list(range(len(good)))


def test_clock_skew_shifts_the_device_clock_and_period(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ref = SerialSensor("weather-001", kind="weather", seed=4, period_s=1.0)
    skewed = SerialSensor("weather-001", kind="weather", seed=4, period_s=1.0, ledger=ledger)
    with ref, skewed, serial.Serial(ref.path, timeout=0.2) as p_ref, serial.Serial(skewed.path, timeout=0.2) as p_sk:
        t = 1_700_000_000.0
        skewed.faults.skew(offset_s=6 * 3600.0, rate=0.5)
        assert skewed.faults.clock(t) == t + 6 * 3600.0
        assert skewed.faults.clock(t + 2.0) == t + 6 * 3600.0 + 3.0  # 1.5 s per true second
        assert ref.tick(t) == 1.0
        assert skewed.tick(t) == pytest.approx(1.0 / 1.5)  # its crystal runs fast
        (a,), _ = _parse_all(_read_lines(p_ref, 1))
        (b,), _ = _parse_all(_read_lines(p_sk, 1))
    assert dict(a.fields)["temperature"] != dict(b.fields)["temperature"]  # sampled at another hour
    ledger.close()
    db = sqlite3.connect(tmp_path / "ledger.sqlite")
    faults = db.execute("SELECT fault FROM faults").fetchall()
    emitted = db.execute("SELECT DISTINCT emitted_at FROM readings").fetchall()
    db.close()
    assert faults == [("skew",)]
    assert emitted == [(t,)], "the ledger keeps the true time"
    skewed.faults.clear_skew()
    assert skewed.faults.clock(t) == t and skewed.faults.period(1.0) == 1.0


def test_unplug_removes_the_port_and_replug_reboots(tmp_path: Path) -> None:
    link = tmp_path / "tty" / "air-001"
    with SerialSensor("air-001", kind="air", seed=1, link=link) as s:
        s.tick(time.time())
        s.unplug()
        assert not link.exists() and not s.plugged
        assert s.tick(time.time()) == s.period_s  # no power: nothing happens
        s.replug()
        assert link.exists() and s.plugged
        assert (s.boot, s.seq) == (1, 0)
        with serial.Serial(str(link), timeout=0.2) as port:
            s.tick(time.time())
            (line,), _ = _parse_all(_read_lines(port, 1))
        assert line.seq == 0
