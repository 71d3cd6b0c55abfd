"""Every panel's query of every dashboard, run against a database filled by a demo run.

Grafana's macros are expanded as Grafana expands them (dashboards.macros), for
the engine the database has; each query must succeed and return the columns the
panel reads. A dead letter, a data product and the gateways' status messages are
in the data too, so that those panels have rows to show.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import paho.mqtt.client as mqtt
import psycopg
import pytest

from dashboards import Query, all_dashboards, expand_macros
from demo_lab import DEMO_ORG, DemoLab, publish_demo_product
from lab_probes import wait

from citylab.broker_security import DynSec
from storage import capabilities, connect

pytestmark = pytest.mark.slow

PANELS = [(d.uid, panel.title, i, query) for d in all_dashboards() for panel in d.panels
          for i, query in enumerate(panel.queries) if isinstance(query, Query)]


def _publish_garbage(lab: DemoLab) -> None:
    """An undecodable pack from a device the registry does not know, published with broker
    credentials of its own (the lab's broker refuses anonymous clients); returns once ingest
    has written its dead letter."""
    admin = json.loads((lab.home / "broker-admin.json").read_text())
    creds = DynSec(lab.mqtt_url, username=admin["username"], password=admin["password"]).create_device(
        DEMO_ORG, "not-a-device")
    host, port = lab.mqtt_url.removeprefix("mqtt://").rsplit(":", 1)
    # a device's login is its client id
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=creds.username, protocol=mqtt.MQTTv5)
    client.username_pw_set(creds.username, creds.password)
    client.connect(host, int(port))
    client.loop_start()
    try:
        info = client.publish(f"lab/{DEMO_ORG}/not-a-device/up", b"\x00 not senml", qos=1)
        info.wait_for_publish(timeout=10)
        assert info.is_published()
    finally:
        client.loop_stop()
        client.disconnect()
    with connect(lab.database_url, autocommit=True) as conn:
        wait(lambda: conn.execute("SELECT 1 FROM dead_letters WHERE topic = %s",
                                  (f"lab/{DEMO_ORG}/not-a-device/up",)).fetchone(), 30,
             "ingest's dead letter for the garbage pack")


@pytest.fixture(scope="module")
def filled(filled_lab: DemoLab) -> DemoLab:
    publish_demo_product(filled_lab.database_url)
    _publish_garbage(filled_lab)
    return filled_lab


@pytest.fixture(scope="module")
def conn(filled: DemoLab):
    with connect(filled.database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def results(filled: DemoLab, conn: psycopg.Connection, artifacts_dir) -> dict:
    """Every panel query's columns and row count (also written to the artefacts)."""
    timescaledb = capabilities(conn).engine == "timescaledb"
    end = datetime.now(timezone.utc) + timedelta(seconds=5)
    start = end - timedelta(hours=1)
    out = {}
    for uid, title, i, query in PANELS:
        sql = expand_macros(query.sql, start=start, end=end, interval="10s", timescaledb=timescaledb)
        try:
            cur = conn.execute(sql)
        except psycopg.Error as exc:
            out[(uid, title, i)] = {"error": f"{type(exc).__name__}: {exc}", "sql": sql}
            continue
        rows = cur.fetchall()
        out[(uid, title, i)] = {"columns": [c.name for c in cur.description], "rows": len(rows)}
    (artifacts_dir / "dashboard_panel_queries.json").write_text(
        json.dumps({" / ".join(map(str, k)): v for k, v in out.items()}, indent=2))
    return out


@pytest.mark.parametrize(("uid", "title", "index", "query"), PANELS,
                         ids=[f"{uid}:{title}:{i}" for uid, title, i, _ in PANELS])
def test_panel_query_runs_and_returns_its_columns(results: dict, uid: str, title: str, index: int, query) -> None:
    result = results[(uid, title, index)]
    assert "error" not in result, result
    missing = [c for c in query.columns if c not in result["columns"]]
    assert not missing, f"{title}: columns {missing} missing from {result['columns']}"
    if query.format == "time_series":
        assert result["columns"][0] == "time", result["columns"]


def test_the_demo_run_fills_the_main_panels(results: dict) -> None:
    rows = {title: r.get("rows", 0) for (uid, title, i), r in results.items()}
    for title in ("PM2.5 by area", "Noise by area", "Temperature by area", "Power by area",
                  "Sensors (colour: PM2.5)", "Devices online / offline", "Devices, last seen",
                  "Packs and readings stored", "Quality per data product", "Quality per provider (all its series)",
                  "Quality per series", "Readings per provider"):
        assert rows[title] > 0, f"{title} has no rows after the demo run"


def test_the_dead_letter_panels_show_the_dead_letter(results: dict) -> None:
    rows = {title: r.get("rows", 0) for (uid, title, i), r in results.items()}
    assert rows["Dead letters by reason"] > 0 and rows["Dead letters, totals by reason"] > 0, rows


def test_gateway_buffers_come_from_the_status_messages(results: dict, conn: psycopg.Connection) -> None:
    (result,) = [r for (uid, title, i), r in results.items() if title == "Gateway buffer depth"]
    assert result["rows"] == 4  # the district's gw-01, gw-02, gw-lora and the energy SME's gw-energi
    depths = conn.execute("SELECT device, buffer_depth FROM gateway_status ORDER BY device").fetchall()
    assert [d for d, _ in depths] == ["gw-01", "gw-02", "gw-energi", "gw-lora"]
    assert all(depth is not None and depth >= 0 for _, depth in depths)
