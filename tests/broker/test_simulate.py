"""`citylab simulate` (the docker-compose simulator profile) against a broker with dynamic security."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import psycopg
import pytest

from citylab.broker_security import new_password, url_with_credentials
from ingest import IngestOptions, IngestService
from lab_probes import wait
from protocol.topics import ingest_filters

from broker_lab import ADMIN, SecuredBroker

pytestmark = pytest.mark.slow


def _stored_devices(database: str) -> set[str]:
    with psycopg.connect(database) as conn:
        return {r[0] for r in conn.execute(
            "SELECT DISTINCT s.device FROM readings r JOIN series s ON s.id = r.series_id")}


def test_simulated_gateways_get_credentials_and_their_readings_arrive(database: str,
                                                                     secured_broker: SecuredBroker) -> None:
    org = "simlab"
    ingest_user, ingest_password = f"ingest-{org}", new_password()
    ingest_id = secured_broker.dynsec().create_ingest(ingest_user, ingest_password)
    ingest_url = url_with_credentials(secured_broker.url, ingest_user, ingest_password)
    service = IngestService(IngestOptions(database_url=database, mqtt_url=ingest_url, client_id=ingest_id,
                                          batch_max_age_ms=100, filters=ingest_filters(org)))
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    home = Path(tempfile.mkdtemp(prefix="citylab-sim-"))
    env = {**os.environ, "CITYLAB_DATABASE_URL": database, "CITYLAB_MQTT_URL": secured_broker.url,
           "CITYLAB_DYNSEC_USERNAME": ADMIN, "CITYLAB_DYNSEC_PASSWORD": secured_broker.admin_password,
           "CITYLAB_ORG": org, "CITYLAB_HOME": str(home)}
    # the district's organisation alone: no energy meters of a second SME (ingest here is this org's shard)
    sim = subprocess.Popen([sys.executable, "-m", "citylab", "simulate", "--serial", "4", "--gateways", "2",
                            "--lora", "2", "--meters", "0"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        # on a timeout the check below fails, with the simulator's output
        with contextlib.suppress(AssertionError):
            wait(lambda: len(_stored_devices(database)) == 6, 60, "readings of six devices")
    finally:
        sim.send_signal(signal.SIGTERM)
        out, _ = sim.communicate(timeout=30)
        stop.set()
        thread.join(10)
    devices = _stored_devices(database)
    assert len(devices) == 6, out  # 4 serial sensors and 2 LoRa nodes, through 3 gateways with credentials
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 0
