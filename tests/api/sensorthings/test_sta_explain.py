"""The SensorThings statements reach readings through its (series_id, time) index."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from explain import plans_of
from sta_lab import T0, StaLab

from api.sensorthings.mapping import members, query_params
from api.sensorthings.query import parse_options
from storage.sensorthings import ENTITY_SETS, Step, count_entities, read_entities, read_entities_text, read_linked
from storage.tenants import Principal


def _plans(lab: StaLab, run) -> str:
    principal = Principal(key_id=0, org_id=lab.lab.org_id, org_slug="lab", org_kind="provider", role="admin")
    with psycopg.connect(lab.url) as conn:
        return plans_of(conn, lambda: run(conn, query_params(principal), lab))


def _page_of_one_datastream(conn, params, lab: StaLab) -> None:
    start = (T0 + timedelta(minutes=30)).isoformat().replace("+00:00", "Z")
    query = parse_options({"$filter": f"phenomenonTime ge {start}", "$top": "10000", "$orderby": "phenomenonTime"})
    steps = [Step("Datastreams", lab.series["air-1/pm2_5"]), Step("Observations", None, "Observations")]
    page = read_entities(conn, params, steps, query, fields=list(ENTITY_SETS["Observations"].fields),
                         keys=["id", "_series"], limit=10_000)
    assert len(page.rows) == 90


def _served_page_of_one_datastream(conn, params, lab: StaLab) -> None:
    """The statement a page without $expand is served by: one JSON text."""
    start = (T0 + timedelta(minutes=30)).isoformat().replace("+00:00", "Z")
    query = parse_options({"$filter": f"phenomenonTime ge {start}", "$top": "50", "$orderby": "phenomenonTime"})
    steps = [Step("Datastreams", lab.series["air-1/pm2_5"]), Step("Observations", None, "Observations")]
    observations = ENTITY_SETS["Observations"]
    page = read_entities_text(conn, params, steps, query, members=members(observations), base="http://x",
                              keys=["_series", "_time"], limit=50)
    assert page.more and page.text.count(b'"@iot.id":') == 50
    assert page.per_series == {lab.series["air-1/pm2_5"]: 50} and page.last[0] == lab.series["air-1/pm2_5"]


def _latest_of_each_datastream(conn, params, lab: StaLab) -> None:
    query = parse_options({"$top": "1", "$orderby": "phenomenonTime desc"})
    link = ENTITY_SETS["Datastreams"].links["Observations"]
    found = read_linked(conn, params, link, list(lab.series.values()), query,
                        fields=["id", "result"], keys=["_series"], limit=1)
    assert found[lab.series["air-1/pm2_5"]][0]["result"] == 59.5


def _observations_filtered_by_datastream_id(conn, params, lab: StaLab) -> None:
    query = parse_options({"$filter": f"Datastream/@iot.id eq {lab.series['air-1/no2']}", "$top": "100"})
    page = read_entities(conn, params, [Step("Observations")], query, fields=["id", "result"], keys=[], limit=100)
    assert [r["result"] for r in page.rows] == [20.0, 21.0, 22.0]


def _observation_by_id(conn, params, lab: StaLab) -> None:
    key = f"{lab.series['air-1/no2']}-{int(T0.timestamp()) * 1_000_000}"
    page = read_entities(conn, params, [Step("Observations", key)], parse_options({}), fields=["id", "result"],
                         keys=[], limit=1)
    assert page.rows[0]["result"] == 20.0


def _datastreams_with_times(conn, params, lab: StaLab) -> None:
    page = read_entities(conn, params, [Step("Datastreams")], parse_options({}),
                         fields=list(ENTITY_SETS["Datastreams"].fields), keys=[], limit=100)
    assert len(page.rows) == 6


def _count_of_one_datastream(conn, params, lab: StaLab) -> None:
    steps = [Step("Datastreams", lab.series["air-1/pm2_5"]), Step("Observations", None, "Observations")]
    assert count_entities(conn, params, steps, parse_options({"$filter": "result gt 10"})) == 99


@pytest.mark.parametrize("run", [_page_of_one_datastream, _served_page_of_one_datastream, _latest_of_each_datastream,
                                 _observation_by_id,
                                 _observations_filtered_by_datastream_id,
                                 _datastreams_with_times, _count_of_one_datastream])
def test_sensorthings_statements_use_the_readings_index(sta_lab: StaLab, run) -> None:
    plan = _plans(sta_lab, run)
    assert plan, "auto_explain gave no plan"
    assert "Seq Scan on readings" not in plan, plan
    assert "readings_series_time" in plan or "readings_default_series_id_time_idx" in plan, plan


@pytest.mark.parametrize("run", [_page_of_one_datastream, _served_page_of_one_datastream])
def test_time_filter_of_a_page_is_an_index_condition(sta_lab: StaLab, run) -> None:
    plan = _plans(sta_lab, run)
    conditions = [line for line in plan.splitlines() if "Index Cond" in line and "series_id" in line]
    assert any('"time" >=' in line for line in conditions), plan
