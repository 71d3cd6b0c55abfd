"""Dashboards as code: the committed JSON is what the Python generates, and it is
what Grafana expects (data source uid, macros only it knows, a generated header)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from citylab.cli import main
from dashboards import DASHBOARDS, GENERATED, JSON_DIR, all_dashboards, expand_macros, stale_files, write_json
from dashboards.macros import MacroError


def test_committed_json_is_up_to_date() -> None:
    assert stale_files() == [], "run `citylab dashboards generate` and commit deploy/grafana/dashboards/json"
    assert sorted(p.name for p in JSON_DIR.glob("*.json")) == sorted(f"{name}.json" for name in DASHBOARDS)


def test_the_five_dashboards() -> None:
    titles = {d.title for d in all_dashboards()}
    assert titles == {"City overview", "Fleet health", "Anomalies", "Alarms", "Provider data quality"}


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_committed_json_is_a_grafana_dashboard(name: str) -> None:
    model = json.loads((JSON_DIR / f"{name}.json").read_text())
    assert model["__generated"] == GENERATED and "do not edit" in model["__generated"]
    assert "do not edit" in model["description"]
    assert model["uid"].startswith("citylab-") and model["schemaVersion"] >= 36
    ids = [p["id"] for p in model["panels"]]
    assert len(ids) == len(set(ids))
    for panel in model["panels"]:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        if panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}:
            for target in panel["targets"]:
                assert target["datasource"] == panel["datasource"] and "citylab_" in target["expr"]
            continue
        assert panel["datasource"] == {"type": "grafana-postgresql-datasource", "uid": "citylab"}
        for target in panel["targets"]:
            assert target["rawQuery"] and target["format"] in ("time_series", "table")
            assert "$__" in target["rawSql"] or "FROM" in target["rawSql"]


def test_fleet_health_has_the_operations_panels() -> None:
    model = json.loads((JSON_DIR / "fleet-health.json").read_text())
    prometheus = [p for p in model["panels"] if p.get("datasource", {}).get("uid") == "prometheus"]
    exprs = " ".join(t["expr"] for p in prometheus for t in p["targets"])
    for family in ("citylab_packs_received_total", "citylab_packs_dead_lettered_total", "citylab_ingest_lag_seconds",
                   "citylab_ingest_queue_depth", "citylab_commit_seconds_bucket", "citylab_broker_connected",
                   "citylab_component_restarts_total", "citylab_component_up", "citylab_http_requests_total"):
        assert family in exprs, family


def test_city_overview_has_a_map_and_the_four_topics() -> None:
    model = json.loads((JSON_DIR / "city-overview.json").read_text())
    types = [p["type"] for p in model["panels"]]
    assert "geomap" in types
    text = " ".join(p["title"] for p in model["panels"])
    for topic in ("PM2.5", "Noise", "Temperature", "Energy"):
        assert topic in text


def test_generate_command_writes_the_files(tmp_path) -> None:
    assert main(["dashboards", "generate", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.json" for n in DASHBOARDS)
    assert main(["dashboards", "check", "--out", str(tmp_path)]) == 0
    (tmp_path / "anomalies.json").write_text("{}")
    assert main(["dashboards", "check", "--out", str(tmp_path)]) == 1
    write_json(tmp_path)
    assert stale_files(tmp_path) == []


def test_macros_expand_as_grafana_does() -> None:
    start = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
    end = datetime(2025, 3, 1, 13, 0, tzinfo=timezone.utc)
    sql = "SELECT $__timeGroupAlias(a.bucket, $__interval), 1 FROM t WHERE $__timeFilter(a.bucket) AND x < $__timeTo()"
    out = expand_macros(sql, start=start, end=end, interval="5m")
    assert out == ("SELECT floor(extract(epoch from a.bucket)/300)*300 AS \"time\", 1 FROM t WHERE a.bucket BETWEEN "
                   "'2025-03-01T12:00:00.000000Z' AND '2025-03-01T13:00:00.000000Z' "
                   "AND x < '2025-03-01T13:00:00.000000Z'")
    ts = expand_macros("$__timeGroup(time, '1h')", start=start, end=end, timescaledb=True)
    assert ts == "time_bucket('3600s', time)"
    assert expand_macros("$__interval_ms", start=start, end=end, interval="10s") == "10000"
    with pytest.raises(MacroError):
        expand_macros("$__unixEpochFilter(t)", start=start, end=end)
