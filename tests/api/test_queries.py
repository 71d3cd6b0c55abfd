"""storage.queries directly: the parts no endpoint serves yet (dead letters) and
argument checks. (Here rather than in tests/storage/ because the API issue owns
storage/queries.py.)"""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from explain import plans_of
from seeded_lab import T0, Lab

from storage import queries


def test_dead_letters_newest_first(lab: Lab) -> None:
    with psycopg.connect(lab.url) as conn:
        letters = queries.dead_letters(conn, limit=10)
        assert [(d.reason, d.device, d.payload) for d in letters] == [
            ("unknown_device", None, b"{}"),
            ("undecodable", "air-042", b"\x00\x01"),
        ]
        assert letters[1].received_at == T0
        assert len(queries.dead_letters(conn, limit=1)) == 1


def test_get_series(lab: Lab) -> None:
    with psycopg.connect(lab.url) as conn:
        assert queries.get_series(conn, lab.no2) == queries.SeriesInfo(lab.no2, "air-042", "no2", "ug/m3", "lab")
        assert queries.get_series(conn, 10_000) is None


def test_read_aggregates_refuses_a_bucket_not_a_multiple_of_the_width(lab: Lab) -> None:
    with psycopg.connect(lab.url) as conn, pytest.raises(ValueError, match="multiple"):
        queries.read_aggregates(conn, lab.pm25, T0, T0 + timedelta(hours=1), bucket_s=90)


@pytest.mark.parametrize(
    "query",
    [
        lambda conn, lab: queries.read_readings(conn, lab.pm25, T0, T0 + timedelta(hours=1), limit=10),
        lambda conn, lab: queries.read_readings(conn, lab.pm25, T0, T0 + timedelta(hours=1), limit=10, skip=5),
        lambda conn, lab: queries.latest_values(conn, [lab.pm25]),
        lambda conn, lab: queries.read_aggregates(conn, lab.pm25, T0, T0 + timedelta(hours=1), bucket_s=900),
        lambda conn, lab: queries.read_anomalies(conn, T0, T0 + timedelta(hours=1), limit=10),
        lambda conn, lab: queries.read_anomalies(conn, T0, T0 + timedelta(hours=1), series_id=lab.pm25, limit=10),
        lambda conn, lab: queries.lab_status(conn),
        lambda conn, lab: queries.dead_letters(conn, limit=10),
    ],
)
def test_queries_use_indexes(lab: Lab, query) -> None:
    """With sequential scans priced out, every big table is reached through an index
    (the tiny registry tables may still be scanned)."""
    with psycopg.connect(lab.url) as conn:
        plan = plans_of(conn, lambda: query(conn, lab))
    assert plan, "auto_explain gave no plan"
    for table in ("readings", "aggregates", "anomalies", "dead_letters"):
        assert f"Seq Scan on {table}" not in plan, plan
