"""Migration 0007 (SensorThings ids) on a database that already holds devices and
series: every device gets a Thing id, every quantity an ObservedProperty, and
both stay the same when the device or its series change."""

from __future__ import annotations

import psycopg

from storage.migrate import migrate


def test_0007_gives_existing_devices_and_quantities_stable_ids(empty_database: str) -> None:
    with psycopg.connect(empty_database) as conn:
        migrate(conn, use_timescaledb=False, upto=6)
        conn.execute("INSERT INTO devices (org, device) VALUES ('acme', 'air-1'), ('acme', 'air-2'), ('city', 'air-1')")
        conn.execute("INSERT INTO series (org, device, quantity, unit) VALUES ('acme', 'air-1', 'pm2_5', 'ug/m3'),"
                     " ('acme', 'air-2', 'pm2_5', 'ug/m3'), ('city', 'air-1', 'no2', 'ug/m3')")
        conn.commit()
        assert [m.version for m in migrate(conn, use_timescaledb=False, upto=7)][-1] == 7
        things = dict(((o, d), t) for o, d, t in conn.execute("SELECT org, device, thing_id FROM devices"))
        assert len(set(things.values())) == 3 and None not in things.values()
        quantities = dict(conn.execute("SELECT quantity, id FROM observed_properties").fetchall())
        assert set(quantities) == {"pm2_5", "no2"}
        # new series and devices: a quantity seen for the first time gets its ObservedProperty
        conn.execute("INSERT INTO devices (org, device) VALUES ('acme', 'noise-3')")
        conn.execute("INSERT INTO series (org, device, quantity, unit) VALUES ('acme', 'noise-3', 'noise', 'dB'),"
                     " ('acme', 'noise-3', 'pm2_5', 'ug/m3')")
        after = dict(conn.execute("SELECT quantity, id FROM observed_properties").fetchall())
        assert {q: after[q] for q in quantities} == quantities and "noise" in after
        conn.execute("UPDATE devices SET enabled = false, lat = 1, lon = 2 WHERE org = 'acme' AND device = 'air-1'")
        assert conn.execute("SELECT thing_id FROM devices WHERE org = 'acme' AND device = 'air-1'").fetchone()[0] \
            == things[("acme", "air-1")]
