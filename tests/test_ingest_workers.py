"""`citylab up --ingest-workers 2` on the embedded Mosquitto with dynamic security.

Two ingest processes on one shared subscription, each with its own broker login bound
to its own client id, each a component of the supervisor and of /health. A gateway's
packs are stored whichever worker takes them; a SIGKILLed worker is named by /health
(503) until the supervisor has it back. Restarted with one worker, the lab ends the
retired workers' broker sessions (the broker would go on queueing their share).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

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

ORG, GATEWAY = "scale", "gw-scale"


def _stored(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*) FROM ingest_packs WHERE org = %s", (ORG,)).fetchone()[0]


def _up(home: Path, workers: int, log: Path) -> tuple[subprocess.Popen, dict]:
    env = {**os.environ, "CITYLAB_HOME": str(home), "CITYLAB_API_PORT": "0"}
    for key in ("CITYLAB_DATABASE_URL", "CITYLAB_MQTT_URL", "CITYLAB_INGEST_WORKERS"):
        env.pop(key, None)
    lab = subprocess.Popen([sys.executable, "-m", "citylab", "up", "--ingest-workers", str(workers)], env=env,
                           stdout=log.open("a"), stderr=subprocess.STDOUT)
    state = wait(lambda: read_json(home / "lab.json"), 120, "the lab to start")
    return lab, state


def _publish(home: Path, state: dict, first: int, count: int) -> None:
    """The gateway publishes packs first .. first + count - 1 with its own login."""
    admin = json.loads((home / "broker-admin.json").read_text())
    creds = DynSec(state["mqtt_url"], username=admin["username"], password=admin["password"]).create_device(
        ORG, GATEWAY)
    with psycopg.connect(state["database_url"]) as conn:
        ensure_org(conn, slug=ORG, name="Scale-out test", kind="provider")
        register_device(conn, org=ORG, device=GATEWAY, kind="gateway")
        register_device(conn, org=ORG, device="air-scale", gateway=GATEWAY, kind="serial")
        set_mqtt_username(conn, org=ORG, device=GATEWAY, username=creds.username)
        conn.commit()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=creds.client_id, protocol=paho.MQTTv5)
    client.username_pw_set(creds.username, creds.password)
    client.connect("127.0.0.1", int(state["mqtt_url"].rsplit(":", 1)[1]))
    client.loop_start()
    try:
        for seq in range(first, first + count):
            record = Record("air-scale/temperature", float(seq), 1_790_000_000.0 + seq, "Cel")
            info = client.publish(up_topic(ORG, GATEWAY), encode_pack(Pack("boot-1", seq, (record,))), qos=1)
            info.wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


def test_two_ingest_workers_are_two_supervised_components_with_their_own_logins(artifacts_dir: Path) -> None:
    home = Path(tempfile.mkdtemp(prefix="citylab-workers-"))
    log = artifacts_dir / "ingest_workers_lab.log"
    log.write_text("")
    lab = None
    try:
        lab, state = _up(home, 2, log)
        api_url = state["api_url"]
        health = wait(lambda: health_if(api_url, 200), 60, "/health to say 200")
        for name in ("ingest-1", "ingest-2"):
            assert health["components"][name]["up"] and health["components"][name]["broker_connected"], health
        assert "ingest" not in health["components"]
        logins = read_json(home / "ingest-logins.json")
        assert set(logins) == {"citylab-ingest-1", "citylab-ingest-2"} and all(v["shared"] for v in logins.values())
        broker_log = (home / "mosquitto" / "mosquitto.log").read_text()
        ids = set(re.findall(r"New client connected .* as (citylab-ingest-\d-\S+) ", broker_log))
        assert {i.split("-")[2] for i in ids} == {"1", "2"}, ids  # two workers, a client id each

        _publish(home, state, 0, 40)
        wait(lambda: _stored(state["database_url"]) == 40, 60, "the 40 packs")

        pid = read_json(home / "supervisor.json")["components"]["ingest-2"]["pid"]
        os.kill(pid, signal.SIGKILL)
        down = wait(lambda: health_if(api_url, 503), 60, "/health to say 503")
        assert down["components"]["ingest-2"]["up"] is False and down["components"]["ingest-1"]["up"], down
        back = wait(lambda: health_if(api_url, 200), 60, "/health to say 200 again")
        assert back["components"]["ingest-2"]["restarts"] == 1 and back["components"]["ingest-1"]["restarts"] == 0
        _publish(home, state, 40, 40)
        wait(lambda: _stored(state["database_url"]) == 80, 60, "the next 40 packs")
        stop_lab(lab)

        # one worker again: the two retired sessions end, the single worker takes everything
        lab, state = _up(home, 1, log)
        wait(lambda: health_if(state["api_url"], 200), 60, "/health to say 200")
        assert set(read_json(home / "ingest-logins.json")) == {"citylab-ingest"}
        assert log.read_text().count("ended the broker session of the retired ingest worker") == 2
        _publish(home, state, 80, 40)
        wait(lambda: _stored(state["database_url"]) == 120, 60, "the packs of the single worker")
    finally:
        if lab is not None:
            stop_lab(lab)
        shutil.rmtree(home, ignore_errors=True)
