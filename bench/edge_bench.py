"""Edge agent footprint: serial lines on ptys to published SenML packs, on one core.

One real agent process (``python -m edge``) pinned to one CPU reads ``--sensors``
pseudo-terminals that a burst writer in this process fills as fast as the agent
drains them (pre-formatted ``$CLAB`` lines of air-quality stations, 5 readings per
line). A subscriber on a private Mosquitto counts the readings in the packs the
agent publishes and plays the platform: it publishes the committed watermark, so the
agent also prunes its SQLite queue as in production.

Figures (JSON):

- ``readings_per_s``: readings in published packs per second of the run;
- ``rss_mb``: the agent's peak resident set (``VmHWM``);
- ``cpu_s_per_1k_readings``: the agent's user + system CPU per 1,000 readings;
- ``peer_*``: the naive peer from the same run, one QoS 1 MQTT message per reading
  with paho (``loop_start``), no buffer, reading the same kind of ptys for
  ``--peer-seconds``.
"""

from __future__ import annotations

import json
import os
import random
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from citylab.embedded import start_mosquitto
from firmware_sim._pty import PseudoTerminal
from firmware_sim.signals import make_model
from protocol.senml import decode_pack
from protocol.serial_line import format_line, parse_line
from protocol.topics import Watermark, committed_topic, encode_watermark, up_topic

__all__ = ["add_arguments", "run"]

ORG, GATEWAY = "bench", "gw-bench"


def add_arguments(parser) -> None:
    parser.add_argument("--sensors", type=int, default=8, help="ptys (air stations, 5 readings a line)")
    parser.add_argument("--lines", type=int, default=20000, help="lines per sensor")
    parser.add_argument("--cpu", type=int, default=0, help="the CPU the agent is pinned to")
    parser.add_argument("--pack-readings", type=int, default=500)
    parser.add_argument("--peer-seconds", type=float, default=5.0)


def run(args) -> dict:
    return measure(
        sensors=args.sensors, lines=args.lines, cpu=args.cpu,
        pack_readings=args.pack_readings, peer_seconds=args.peer_seconds,
    )


# --------------------------------------------------------------------------- firmware


def _lines(sensor_id: str, n: int, seed: int) -> tuple[bytes, int]:
    rng = random.Random(f"{seed}:{sensor_id}")
    model = make_model("air", rng)
    t0 = 1_790_000_000.0
    out = [format_line(sensor_id, seq, model.sample(t0 + seq)) for seq in range(n)]
    return b"".join(out), sum(len(parse_line(line).fields) for line in out[:1]) * n


class BurstWriter(threading.Thread):
    """Writes each pty's whole byte stream as fast as the reader drains it."""

    def __init__(self, ptys: list[PseudoTerminal], streams: list[bytes]) -> None:
        super().__init__(name="burst-writer", daemon=True)
        self._todo = {p.master_fd: memoryview(s) for p, s in zip(ptys, streams, strict=True)}
        self.started_at = 0.0
        self.finished_at = 0.0
        self.go = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        self.go.wait()
        self.started_at = time.monotonic()
        todo = self._todo
        while todo and not self.stop.is_set():
            _, writable, _ = select.select([], list(todo), [], 1.0)
            for fd in writable:
                rest = todo[fd]
                try:
                    n = os.write(fd, rest[:16384])
                except BlockingIOError:
                    continue
                except OSError:  # the pty was closed under us: the run is over
                    return
                rest = rest[n:]
                if rest:
                    todo[fd] = rest
                else:
                    del todo[fd]
        self.finished_at = time.monotonic()


# --------------------------------------------------------------------------- platform stand-in


class Counter:
    """Subscribes to the up topic, counts readings, publishes the committed watermark."""

    def __init__(self, host: str, port: int, topic: str, *, committed: str | None) -> None:
        self.readings = 0
        self.messages = 0
        self.first_at = 0.0
        self.last_at = 0.0
        self._marks: dict[str, int] = {}
        self._lock = threading.Lock()
        self._committed = committed
        self._client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self._client.on_message = self._on_message
        self._client.connect(host, port)
        self._client.subscribe(topic, qos=1)
        self._client.loop_start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._commit_loop, daemon=True)
        self._thread.start()

    def _on_message(self, client: paho.Client, userdata: object, m: paho.MQTTMessage) -> None:
        now = time.monotonic()
        if self._committed is None:  # the peer: one reading per message
            n = 1
        else:
            pack = decode_pack(m.payload)
            n = len(pack.records)
            with self._lock:
                if pack.boot_id is not None and pack.seq is not None:
                    self._marks[pack.boot_id] = max(self._marks.get(pack.boot_id, -1), pack.seq)
        with self._lock:
            self.readings += n
            self.messages += 1
            self.first_at = self.first_at or now
            self.last_at = now

    def _commit_loop(self) -> None:
        while not self._stop.wait(0.2):
            if self._committed is None:
                continue
            with self._lock:
                marks = dict(self._marks)
            for boot_id, seq in marks.items():
                self._client.publish(self._committed, encode_watermark(Watermark(boot_id, seq)), qos=1)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._client.loop_stop()
        self._client.disconnect()


# --------------------------------------------------------------------------- process figures


def _rss_peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pin(cpu: int):
    def setup() -> None:
        os.sched_setaffinity(0, {cpu})

    return setup


def _config(path: Path, *, url: str, ttys: list[str], pack_readings: int) -> Path:
    lines = [
        "[gateway]", f'org = "{ORG}"', f'device = "{GATEWAY}"', "status_interval_s = 5.0",
        "[mqtt]", f'url = "{url}"', "max_inflight = 100",
        "[buffer]", 'path = "buffer.sqlite"', f"pack_max_readings = {pack_readings}",
        "pack_max_age_ms = 200", "drain_rate_packs_per_s = 2000",
    ]
    for tty in ttys:
        lines += ["[[serial]]", f'path = "{tty}"']
    path.write_text("\n".join(lines) + "\n")
    return path


def _wait_open(log: Path, n: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while log.read_text().count("opened ") < n or "connected to" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the agent did not open its ports:\n{log.read_text()}")
        time.sleep(0.05)


def measure(*, sensors: int, lines: int, cpu: int, pack_readings: int, peer_seconds: float) -> dict:
    cpu = cpu if cpu in os.sched_getaffinity(0) else min(os.sched_getaffinity(0))
    with ExitStack() as stack:
        root = Path(tempfile.mkdtemp(prefix="citylab-edge-bench-"))
        stack.callback(shutil.rmtree, root, True)
        root.chmod(0o755)  # the broker runs as the mosquitto user when we are root
        broker = start_mosquitto(root)
        stack.callback(broker.stop)

        ptys = [PseudoTerminal(baud=921_600) for _ in range(sensors)]
        for p in ptys:
            stack.callback(p.close)
        made = [_lines(f"air-{i + 1:03d}", lines, seed=i) for i in range(sensors)]
        total = sum(n for _, n in made)
        writer = BurstWriter(ptys, [s for s, _ in made])
        writer.start()

        counter = Counter(broker.host, broker.port, up_topic(ORG, GATEWAY), committed=committed_topic(ORG, GATEWAY))
        stack.callback(counter.close)
        config = _config(root / "edge.toml", url=broker.url, ttys=[p.slave_path for p in ptys],
                         pack_readings=pack_readings)
        log = root / "agent.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "edge", "--config", str(config)],
                                    stdout=out, stderr=out, preexec_fn=_pin(cpu))
        stack.callback(lambda: proc.poll() is None and (proc.kill(), proc.wait()))
        _wait_open(log, sensors, proc)
        cpu0 = _cpu_s(proc.pid)
        t0 = time.monotonic()
        writer.go.set()
        deadline = t0 + 120.0
        while counter.readings < total and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        elapsed = counter.last_at - t0
        cpu_used = _cpu_s(proc.pid) - cpu0
        rss = _rss_peak_mb(proc.pid)
        proc.terminate()
        proc.wait(15)
        got = counter.readings
        result = {
            "sensors": sensors,
            "readings": total,
            "readings_published": got,
            "packs": counter.messages,
            "seconds": round(elapsed, 3),
            "readings_per_s": round(got / elapsed) if elapsed > 0 else 0,
            "rss_mb": round(rss, 1),
            "cpu_s_per_1k_readings": round(1000.0 * cpu_used / max(got, 1), 4),
            "writer_seconds": round(writer.finished_at - writer.started_at, 3),
            "agent_cpu": cpu,
        }
        result.update(_peer(broker, sensors=sensors, cpu=cpu, seconds=peer_seconds, root=root))
        return result


# --------------------------------------------------------------------------- the naive peer

_PEER = r"""
import json, sys, threading, time
import paho.mqtt.client as paho, serial
from paho.mqtt.enums import CallbackAPIVersion
from protocol.serial_line import parse_line
host, port, topic, *ttys = sys.argv[1:]
c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
c.max_inflight_messages_set(100)
c.connect(host, int(port)); c.loop_start()
def read(path):
    port = serial.Serial(path, 921600, timeout=0.2)
    while True:
        line = port.readline()
        if not line:
            continue
        try:
            p = parse_line(line)
        except Exception:
            continue
        now = time.time()
        for q, v in p.fields:
            c.publish(topic, json.dumps({"n": f"{p.sensor_id}/{q}", "v": v, "t": now}), qos=1)
for t in ttys:
    threading.Thread(target=read, args=(t,), daemon=True).start()
print("opened ", flush=True)
threading.Event().wait()
"""


def _peer(broker, *, sensors: int, cpu: int, seconds: float, root: Path) -> dict:
    if seconds <= 0:
        return {}
    with ExitStack() as stack:
        ptys = [PseudoTerminal(baud=921_600) for _ in range(sensors)]
        for p in ptys:
            stack.callback(p.close)
        lines = 200_000
        writer = BurstWriter(ptys, [_lines(f"air-{i + 1:03d}", lines // sensors, seed=i)[0] for i in range(sensors)])
        writer.start()
        stack.callback(writer.stop.set)
        topic = f"lab/{ORG}/gw-peer/naive"
        counter = Counter(broker.host, broker.port, topic, committed=None)
        stack.callback(counter.close)
        log = root / "peer.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-c", _PEER, broker.host, str(broker.port), topic,
                                     *[p.slave_path for p in ptys]], stdout=out, stderr=out, preexec_fn=_pin(cpu))
        stack.callback(lambda: proc.poll() is None and (proc.kill(), proc.wait()))
        deadline = time.monotonic() + 20
        while "opened" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the naive peer did not start:\n{log.read_text()}")
            time.sleep(0.05)
        time.sleep(0.5)
        cpu0 = _cpu_s(proc.pid)
        t0 = time.monotonic()
        writer.go.set()
        time.sleep(seconds)
        got, cpu_used = counter.readings, _cpu_s(proc.pid) - cpu0
        elapsed = time.monotonic() - t0
        rss = _rss_peak_mb(proc.pid)
        return {
            "peer": "naive: one QoS 1 message per reading, paho loop_start, no buffer",
            "peer_readings_per_s": round(got / elapsed),
            "peer_rss_mb": round(rss, 1),
            "peer_cpu_s_per_1k_readings": round(1000.0 * cpu_used / max(got, 1), 4),
        }
