"""The SensorThings statements run on a real TimescaleDB engine (hypertables)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from storage.migrate import migrate
from storage.sensorthings import ENTITY_SETS, Step, count_entities, read_entities, read_entities_json, read_linked
from storage.sensorthings.tree import Compare, Literal, OrderKey, Path, Query

pytestmark = pytest.mark.slow

T0 = datetime(2025, 3, 1, 12, tzinfo=UTC)
PARAMS = {"org_slug": "acme", "org_id": 1, "u_senml": ["ug/m3"], "u_name": ["microgram per cubic metre"],
          "u_symbol": ["µg/m³"], "u_definition": ["http://qudt.org/vocab/unit/MicroGM-PER-M3"],
          "q_name": ["pm2_5"], "q_label": ["PM2.5"], "q_definition": ["urn:pm25"], "q_description": ["pm"]}


@pytest.fixture(scope="module")
def conn(timescale_url: str):
    with psycopg.connect(timescale_url, autocommit=True) as connection:
        migrate(connection)
        connection.execute("INSERT INTO devices (org, device, lat, lon) VALUES ('acme', 'sta-1', 58.97, 5.73)")
        sid = connection.execute("INSERT INTO series (org, device, quantity, unit) VALUES"
                                 " ('acme', 'sta-1', 'pm2_5', 'ug/m3') RETURNING id").fetchone()[0]
        for i in range(30):
            connection.execute("INSERT INTO readings (time, series_id, value) VALUES (%s, %s, %s)",
                               (T0 + timedelta(hours=i), sid, float(i)))
        yield connection


def test_sensorthings_statements_run_on_timescaledb(conn: psycopg.Connection) -> None:
    sid = conn.execute("SELECT id FROM series WHERE device = 'sta-1'").fetchone()[0]
    steps = [Step("Datastreams", sid), Step("Observations", None, "Observations")]
    later = Query(filter=Compare("ge", Path(("phenomenonTime",)), Literal(T0 + timedelta(hours=20), "time")),
                  orderby=(OrderKey(Path(("phenomenonTime",)), descending=True),))
    page = read_entities_json(conn, PARAMS, steps, later, members=[("@iot.id", "field", "id"),
                              ("result", "field", "result")], base="http://x/sta/v1.1", keys=["_series"], limit=5)
    assert [row[0] for row in page.rows][:2] == [
        f'{{"@iot.id":"{sid}-{int((T0 + timedelta(hours=29)).timestamp()) * 1_000_000}","result":29}}',
        f'{{"@iot.id":"{sid}-{int((T0 + timedelta(hours=28)).timestamp()) * 1_000_000}","result":28}}']
    assert page.more and count_entities(conn, PARAMS, steps, later) == 10
    [datastream] = read_entities(conn, PARAMS, [Step("Datastreams")], Query(),
                                 fields=list(ENTITY_SETS["Datastreams"].fields), keys=[], limit=10).rows
    assert datastream["phenomenonTime"] == "2025-03-01T12:00:00.000000Z/2025-03-02T17:00:00.000000Z"
    latest = read_linked(conn, PARAMS, ENTITY_SETS["Datastreams"].links["Observations"], [sid],
                         Query(orderby=(OrderKey(Path(("phenomenonTime",)), descending=True),)),
                         fields=["id", "result"], keys=[], limit=1)
    assert latest[sid][0]["result"] == 29.0
