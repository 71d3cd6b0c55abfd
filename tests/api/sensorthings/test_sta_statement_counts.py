"""Statements per request do not grow with the entities served: a nested `$expand` costs one
statement per level, and the privacy checks of the served series one statement (counted at
psycopg's cursor while a real request runs against a real PostgreSQL)."""

from __future__ import annotations

import threading

import psycopg
import pytest
from sta_lab import ROOT, StaLab, client_of


@pytest.fixture
def statements(monkeypatch) -> list[str]:
    """The texts of the statements executed through psycopg cursors, in order."""
    seen: list[str] = []
    lock = threading.Lock()
    execute = psycopg.Cursor.execute

    def counted(self, query, params=None, **kwargs):
        text = query.as_string(self) if hasattr(query, "as_string") else str(query)
        with lock:
            seen.append(text)
        return execute(self, query, params, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", counted)
    return seen


def _linked_reads(statements: list[str]) -> list[str]:   # storage.sensorthings.read_linked
    return [q for q in statements if "CROSS JOIN LATERAL" in q and "k(parent)" in q]


def _own_or_open(statements: list[str]) -> list[str]:    # api.privacy: the series read without a grant
    return [q for q in statements if "UNION SELECT ps.series_id FROM data_product_series" in q]


def test_nested_expand_is_one_statement_per_level(sta_lab: StaLab, statements: list[str]) -> None:
    with client_of(sta_lab, sta_lab.lab.headers) as client:
        body = client.get(f"{ROOT}/Things", params={
            "$expand": "Datastreams($expand=Observations($top=1;$orderby=phenomenonTime desc),ObservedProperty)"})
    assert body.status_code == 200, body.text
    things = body.json()["value"]
    datastreams = [d for t in things for d in t["Datastreams"]]
    assert len(things) >= 3 and len(datastreams) > len(things)   # several entities on every level
    assert all(len(d["Observations"]) == 1 and d["ObservedProperty"]["@iot.id"] for d in datastreams)
    # Datastreams of every Thing; Observations and ObservedProperty of every Datastream
    assert len(_linked_reads(statements)) == 3, [q[:80] for q in _linked_reads(statements)]
    # one privacy check for all the Datastreams whose Observations were served
    assert len(_own_or_open(statements)) == 1
