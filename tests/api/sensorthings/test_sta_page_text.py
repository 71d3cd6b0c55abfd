"""The one-statement page of Observations (read_entities_text) against the row-by-row read of
the same page: the same entities in the same order, the same count per series, and the keys of
the last one, whatever the order, $skip and $top."""

from __future__ import annotations

import json
from collections import Counter

import psycopg
import pytest
from sta_lab import StaLab

from api.sensorthings.mapping import members, query_params
from api.sensorthings.query import parse_options
from storage.sensorthings import ENTITY_SETS, Step, read_entities, read_entities_text
from storage.tenants import Principal

OBSERVATIONS = ENTITY_SETS["Observations"]


def _params(lab: StaLab) -> dict:
    return query_params(Principal(key_id=0, org_id=lab.lab.org_id, org_slug="lab", org_kind="provider",
                                  role="admin"))


@pytest.mark.parametrize(("orderby", "skip", "top"), [
    ("phenomenonTime", 0, 7),           # several series interleaved in time: runs of one or two
    ("phenomenonTime desc", 3, 11),     # the page's first entity continues the run before $skip
    ("result", 5, 40),
    ("phenomenonTime", 0, 1000),        # everything: no more, no last keys needed
])
def test_page_text_matches_the_rows_of_the_page(sta_lab: StaLab, orderby: str, skip: int, top: int) -> None:
    query = parse_options({"$orderby": orderby, "$skip": str(skip), "$top": str(top)})
    steps = [Step("Observations")]
    with psycopg.connect(sta_lab.url) as conn:
        rows = read_entities(conn, _params(sta_lab), steps, query, fields=["id"], keys=["_series", "_time"],
                             limit=top)
        page = read_entities_text(conn, _params(sta_lab), steps, query, members=members(OBSERVATIONS),
                                  base="http://x/sta/v1.1", keys=["_series", "_time"], limit=top)
    entities = json.loads(b"[" + page.text + b"]")
    assert [e["@iot.id"] for e in entities] == [r["id"] for r in rows.rows]
    assert page.more == rows.more
    assert page.per_series == dict(Counter(r["_series"] for r in rows.rows))
    assert sum(page.per_series.values()) == len(entities) > 0
    if rows.more:
        assert page.last == (rows.rows[-1]["_series"], rows.rows[-1]["_time"])
