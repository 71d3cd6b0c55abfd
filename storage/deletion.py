"""Deleting what a provider registered: a series with its data, or a whole device.

    delete_series   a series' readings, aggregates and anomalies, its place in data
                    products, and the series row: one transaction
    delete_device   every series of the device as above, its ingest bookkeeping
                    (packs, watermarks, gateway status) and the device row: one transaction

Both take the owning organisation, so that nobody deletes another tenant's
rows. The data goes through the GDPR erasure (`storage.gdpr.erase`) over the
span the series hold, so that the deletion has its erasure receipt and audit
row like any other (and the device's dead letters of that span go with it);
what lies outside that span (an aggregate or anomaly without its reading) is
deleted after it, and so are the series' alarms of rules scoped to a device,
quantity or product. The audit log is kept. A device that is the gateway of other
devices, and a series with alert rules of its own (whose alarms and notifications
are a history of their own), are refused (`InUse`): detach or delete those first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import psycopg

from storage import gdpr
from storage.alarms import delete_series_alarms
from storage.errors import StorageError, map_errors

__all__ = ["Deleted", "InUse", "delete_device", "delete_series"]


class InUse(StorageError):
    """Other rows depend on what was to be deleted (devices on a gateway, alert rules on a series)."""


@dataclass(frozen=True, slots=True)
class Deleted:
    series: tuple[int, ...]   # the ids of the series deleted
    readings: int
    aggregates: int
    anomalies: int


_SPAN = """
SELECT min(t), max(t) FROM (
    SELECT min(time) AS t FROM readings WHERE series_id = ANY(%(ids)s)
    UNION ALL SELECT max(time) FROM readings WHERE series_id = ANY(%(ids)s)
    UNION ALL SELECT min(time) FROM anomalies WHERE series_id = ANY(%(ids)s)
    UNION ALL SELECT max(time) FROM anomalies WHERE series_id = ANY(%(ids)s)
) AS span
"""


def _delete_series_rows(conn: psycopg.Connection, org: str, series_ids: Sequence[int], actor: str,
                        org_id: int | None, key_id: int | None, device: str | None = None) -> Deleted:
    ids = [r[0] for r in conn.execute(
        "SELECT id FROM series WHERE org = %s AND id = ANY(%s) ORDER BY id FOR UPDATE", (org, list(series_ids)))]
    if not ids:
        return Deleted((), 0, 0, 0)
    ruled = [r[0] for r in conn.execute(
        "SELECT DISTINCT series_id FROM alert_rules WHERE series_id = ANY(%s) ORDER BY 1", (ids,))]
    if ruled:
        raise InUse(f"Datastreams {', '.join(map(str, ruled))} have alert rules: delete those first")
    erased = {"readings": 0, "aggregates": 0, "anomalies": 0}
    first, last = conn.execute(_SPAN, {"ids": ids}).fetchone()
    if first is not None:
        receipt = gdpr.erase(conn, org=org, start=first, end=last + timedelta(microseconds=1), actor=actor,
                             org_id=org_id, key_id=key_id, device=device, series_ids=None if device else ids)
        erased = receipt.deleted if receipt is not None else erased
    counts = [conn.execute(statement, (ids,)).rowcount for statement in (
        "DELETE FROM readings WHERE series_id = ANY(%s)",
        "DELETE FROM aggregates WHERE series_id = ANY(%s)",
        "DELETE FROM anomalies WHERE series_id = ANY(%s)",
    )]
    conn.execute("DELETE FROM typed_readings WHERE series_id = ANY(%s)", (ids,))
    conn.execute("DELETE FROM data_product_series WHERE series_id = ANY(%s)", (ids,))
    delete_series_alarms(conn, ids)  # of rules on a device, quantity or product: they go with the series
    conn.execute("DELETE FROM series WHERE id = ANY(%s)", (ids,))
    return Deleted(tuple(ids), *(erased[t] + n for t, n in zip(("readings", "aggregates", "anomalies"), counts)))


def delete_series(conn: psycopg.Connection, *, org: str, series_ids: Sequence[int], actor: str,
                  org_id: int | None = None, key_id: int | None = None) -> Deleted:
    """Delete `org`'s series among `series_ids` with all their data; what was deleted."""
    with map_errors("delete series"), conn.transaction():
        return _delete_series_rows(conn, org, series_ids, actor, org_id, key_id)


def delete_device(conn: psycopg.Connection, *, org: str, device: str, actor: str, org_id: int | None = None,
                  key_id: int | None = None) -> Deleted | None:
    """Delete `org`'s device with its series and their data; None when it has no such device."""
    with map_errors("delete device"), conn.transaction():
        found = conn.execute("SELECT 1 FROM devices WHERE org = %s AND device = %s FOR UPDATE",
                             (org, device)).fetchone()
        if found is None:
            return None
        attached = [r[0] for r in conn.execute(
            "SELECT device FROM devices WHERE org = %s AND gateway = %s ORDER BY device", (org, device))]
        if attached:
            raise InUse(f"device {device!r} is the gateway of {', '.join(attached)}: detach or delete them first")
        ids = [r[0] for r in conn.execute("SELECT id FROM series WHERE org = %s AND device = %s", (org, device))]
        deleted = _delete_series_rows(conn, org, ids, actor, org_id, key_id, device=device)
        for statement in ("DELETE FROM ingest_packs WHERE org = %s AND device = %s",
                          "DELETE FROM ingest_watermarks WHERE org = %s AND device = %s",
                          "DELETE FROM gateway_status WHERE org = %s AND device = %s",
                          "DELETE FROM devices WHERE org = %s AND device = %s"):
            conn.execute(statement, (org, device))
        return deleted
