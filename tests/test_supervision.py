"""`citylab up` keeps its servers alive: the embedded Mosquitto SIGKILLed 3 times and the
postmaster 3 times, while a real MQTT client (paho, the gateway's own broker login)
publishes numbered packs and keeps a ledger of every pack the broker acknowledged
(PUBACK), with the time of the acknowledgement.

At the end every acknowledged pack is stored exactly once, except those inside the
documented window (docs/deployment.md, "Crashes"): a QoS 1 message the broker
acknowledged after its last persistence snapshot, and that ingest had not committed,
dies with a SIGKILLed broker. A SIGKILLed postmaster loses nothing (ingest acknowledges
only after commit; the broker redelivers). Each server must come back on the port it
had (kept in the lab home's ports.json), and /health, /metrics and `citylab status`
must count the restarts; while ingest is down (SIGKILLed once) /health answers 503.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import paho.mqtt.client as paho
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from citylab.broker_security import DynSec
from lab_probes import health_if, read_json, stop_lab, wait
from protocol.senml import Pack, Record, encode_pack
from protocol.topics import up_topic
from storage.registry import register_device
from storage.tenants import ensure_org, set_mqtt_username

pytestmark = pytest.mark.slow

ORG, GATEWAY, SENSOR = "kill", "gw-kill", "air-kill"
KILLS = 3
T0 = 1_790_000_000.0
READINGS_PER_PACK = 5
SNAPSHOT_SLACK_S = 0.5  # the snapshot's content is taken a moment before its file is written


class LedgerPublisher(threading.Thread):
    """Publishes pack after pack at QoS 1; `acked[seq]` is the wall-clock time of its PUBACK.
    A pack is retried (paho resends it after a reconnect) until the broker acknowledges it."""

    def __init__(self, host: str, port: int, username: str, password: str) -> None:
        super().__init__(daemon=True)
        self.acked: dict[int, float] = {}
        self.stopping = threading.Event()
        self._acks: dict[int, float] = {}  # mid -> PUBACK time, filled by paho's thread
        self._cond = threading.Condition()
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=username, protocol=paho.MQTTv5)
        client.username_pw_set(username, password)
        client.reconnect_delay_set(min_delay=1, max_delay=2)
        client.on_publish = self._on_publish
        client.connect(host, port)
        client.loop_start()
        self.client = client

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._cond:
            self._acks[mid] = -1.0 if reason_code.is_failure else time.time()
            self._cond.notify_all()

    def run(self) -> None:
        seq = 0
        while not self.stopping.is_set():
            records = tuple(Record(f"{SENSOR}/temperature", float(seq * 10 + i), T0 + seq + i / 10, "Cel")
                            for i in range(READINGS_PER_PACK))
            info = self.client.publish(up_topic(ORG, GATEWAY), encode_pack(Pack("boot-1", seq, records)), qos=1)
            with self._cond:
                if not self._cond.wait_for(lambda: info.mid in self._acks, timeout=120):
                    raise AssertionError(f"pack {seq} never acknowledged")
                acked_at = self._acks.pop(info.mid)
            assert acked_at > 0, f"the broker refused pack {seq}"
            self.acked[seq] = acked_at
            seq += 1
            self.stopping.wait(0.02)  # about 40 packs a second

    def close(self) -> None:
        self.stopping.set()
        self.join(130)
        self.client.loop_stop()
        self.client.disconnect()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _pid(home: Path, component: str) -> int | None:
    state = read_json(home / "supervisor.json")
    entry = (state or {}).get("components", {}).get(component, {})
    return entry.get("pid") if entry.get("up") else None


def _stored_seqs(database_url: str) -> list[int]:
    """The seq of every stored reading (one per reading, so a pack stored twice shows twice)."""
    try:
        with psycopg.connect(database_url, connect_timeout=3) as conn:
            values = conn.execute("SELECT r.value FROM readings r JOIN series s ON s.id = r.series_id"
                                  " WHERE s.device = %s", (SENSOR,)).fetchall()
    except psycopg.OperationalError:
        return []  # down for the moment
    return [int(v) // 10 for (v,) in values]


def _ingest_connected_at(home: Path) -> int:
    """When ingest last connected to the broker (epoch seconds, from the broker's own log)."""
    times = re.findall(r"^(\d+): New client connected .* as citylab-ingest\S* ", (home / "mosquitto" / "mosquitto.log"
                                                                             ).read_text(), re.M)
    return int(times[-1]) if times else 0


def _snapshot_at(home: Path) -> float:
    """When the broker last wrote its persistence snapshot."""
    try:
        return (home / "mosquitto" / "data" / "mosquitto.db").stat().st_mtime
    except OSError:
        return 0.0


def _onboard(home: Path, database_url: str, mqtt_url: str) -> tuple[str, str]:
    """The gateway and its sensor in the registry; the gateway's own broker login."""
    with psycopg.connect(database_url) as conn:
        ensure_org(conn, slug=ORG, name="Kill test", kind="provider")
        register_device(conn, org=ORG, device=GATEWAY, kind="gateway")
        register_device(conn, org=ORG, device=SENSOR, gateway=GATEWAY, kind="serial")
        conn.commit()
    admin = json.loads((home / "broker-admin.json").read_text())
    creds = DynSec(mqtt_url, username=admin["username"], password=admin["password"]).create_device(ORG, GATEWAY)
    with psycopg.connect(database_url) as conn:
        set_mqtt_username(conn, org=ORG, device=GATEWAY, username=creds.username)
        conn.commit()
    return creds.username, creds.password


def test_broker_and_postmaster_killed_three_times_each(artifacts_dir: Path) -> None:
    home = Path(tempfile.mkdtemp(prefix="citylab-kill-"))
    env = {**os.environ, "CITYLAB_HOME": str(home), "CITYLAB_API_PORT": "0"}
    for key in ("CITYLAB_DATABASE_URL", "CITYLAB_MQTT_URL"):
        env.pop(key, None)
    log_path = artifacts_dir / "supervision_lab.log"
    log = log_path.open("w")
    lab = subprocess.Popen([sys.executable, "-m", "citylab", "up"], env=env, stdout=log, stderr=subprocess.STDOUT)
    publisher = None
    windows: list[tuple[float, float]] = []  # (last snapshot, SIGKILL) of each broker crash
    try:
        state = wait(lambda: read_json(home / "lab.json"), 120, "the lab to start")
        ports = read_json(home / "ports.json")
        database_url, mqtt_url, api_url = state["database_url"], state["mqtt_url"], state["api_url"]
        assert mqtt_url.endswith(f":{ports['mosquitto']}") and f":{ports['postgres']}/" in database_url
        username, password = _onboard(home, database_url, mqtt_url)
        wait(lambda: _ingest_connected_at(home), 60, "ingest to connect")
        publisher = LedgerPublisher("127.0.0.1", ports["mosquitto"], username, password)
        publisher.start()
        wait(lambda: _stored_seqs(database_url), 60, "the first readings")

        for component, port in [("mosquitto", ports["mosquitto"])] * KILLS + [("postgres", ports["postgres"])] * KILLS:
            pid = wait(lambda c=component: _pid(home, c), 60, f"{component} to be up")
            if component == "mosquitto":
                # ingest's session is in the broker's snapshot (else the window grows until it resubscribes)
                wait(lambda: _snapshot_at(home) > _ingest_connected_at(home) + 1, 30, "a snapshot with ingest's session")
                windows.append((_snapshot_at(home) - SNAPSHOT_SLACK_S, time.time()))
            before = len(_stored_seqs(database_url))
            os.kill(pid, signal.SIGKILL)  # the server's main process alone, as a crash would
            wait(lambda c=component, p=pid: (_pid(home, c) or p) != p, 120, f"{component} to be restarted")
            wait(lambda p=port: _listening(p), 30, f"{component} back on port {port}")
            # the path works again end to end before the next crash
            wait(lambda b=before: len(_stored_seqs(database_url)) > b + 50, 120, f"readings after {component} restarted")

        # ingest dies: /health names it and answers 503 until the supervisor has it back
        os.kill(wait(lambda: _pid(home, "ingest"), 60, "ingest to be up"), signal.SIGKILL)
        down = wait(lambda: health_if(api_url, 503), 60, "/health to say 503")
        assert down["status"] == "degraded" and down["components"]["ingest"]["up"] is False, down
        assert down["components"]["database"]["up"] and down["components"]["broker"]["up"], down
        wait(lambda: health_if(api_url, 200), 120, "/health to say 200 again")
        before = len(_stored_seqs(database_url))
        wait(lambda: len(_stored_seqs(database_url)) > before + 50, 120, "readings after ingest restarted")

        publisher.close()
        acked = publisher.acked
        # every acknowledged pack outside the windows arrives (the redeliveries included)
        def missing() -> list[int]:
            stored = set(_stored_seqs(database_url))
            return [seq for seq in acked if seq not in stored and not any(a < acked[seq] <= b for a, b in windows)]
        wait(lambda: not missing(), 120, "every acknowledged pack outside the crash windows")
        seqs = _stored_seqs(database_url)
        assert len(seqs) == len(set(seqs)) * READINGS_PER_PACK, "a pack stored twice or in part"
        lost = sorted(set(acked) - set(seqs))
        assert set(seqs) <= set(acked)
        assert not [seq for seq in lost if not any(a < acked[seq] <= b for a, b in windows)]

        health = httpx.get(f"{api_url}/health", timeout=15)
        assert health.status_code == 200, health.text
        components = health.json()["components"]
        assert components["broker"] == {"up": True, "restarts": KILLS}
        assert components["database"] == {"up": True, "restarts": KILLS}
        assert components["ingest"]["up"] and components["ingest"]["restarts"] == 1
        assert components["ingest"]["broker_connected"] is True and components["ingest"]["lag_seconds"] >= 0
        metrics = httpx.get(f"{api_url}/metrics", timeout=15).text
        assert f'citylab_component_restarts_total{{component="mosquitto"}} {KILLS}.0' in metrics
        assert f'citylab_component_restarts_total{{component="postgres"}} {KILLS}.0' in metrics
        status = subprocess.run([sys.executable, "-m", "citylab", "status", "--json"], env=env,
                                capture_output=True, text=True, timeout=30)
        assert json.loads(status.stdout)["components"]["database"]["restarts"] == KILLS, status.stdout
        assert read_json(home / "ports.json") == ports  # chosen once
        (artifacts_dir / "supervision.json").write_text(json.dumps(
            {"packs_acknowledged": len(acked), "packs_stored": len(set(seqs)), "lost_inside_windows": len(lost),
             "windows_s": [round(b - a, 2) for a, b in windows], "components": components}, indent=2))
    finally:
        if publisher is not None:
            publisher.close()
        stop_lab(lab)
        log.close()
        shutil.rmtree(home, ignore_errors=True)
    lab_log = log_path.read_text()
    assert lab.returncode == 0, lab_log[-3000:]
    assert lab_log.count("mosquitto restarted") == KILLS and lab_log.count("postgres restarted") == KILLS, lab_log
