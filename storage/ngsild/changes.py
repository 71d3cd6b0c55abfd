"""The outbox of NGSI-LD subscriptions (table `ngsild_changes`).

    record_device_changes   in ingest's transaction: the devices and quantities of the
                            committed readings, for organisations with active subscriptions
    record_entity_changes   the context entities (and attribute IRIs) a face wrote
    claim_changes           a notifier takes due changes under a lease (SKIP LOCKED: any
                            number of API processes share the work)
    finish_changes          the changes handled, removed

A change is recorded only for an organisation that has an active subscription,
so a lab without subscriptions pays one statement per commit and keeps no rows.
A notifier that dies holding changes leaves them to the next one when the lease
ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import psycopg

from storage.errors import map_errors

__all__ = ["Change", "claim_changes", "finish_changes", "record_device_changes", "record_entity_changes"]

_SUBSCRIBED = ("EXISTS (SELECT 1 FROM ngsild_subscriptions n WHERE n.org = {org} AND n.active"
               " AND (n.expires_at IS NULL OR n.expires_at > now()))")


@dataclass(frozen=True, slots=True)
class Change:
    id: int
    org: str
    entity_id: str | None          # a context entity, with attribute IRIs
    attributes: list[str]
    device: str | None             # or a device, with quantities
    quantities: list[str]
    at: datetime


def record_device_changes(conn: psycopg.Connection, series_ids: np.ndarray) -> int:
    """One change per (org, device) of the series, with their quantities; the number recorded."""
    if not len(series_ids):
        return 0
    ids = np.unique(np.asarray(series_ids, dtype=np.int64)).tolist()
    with map_errors("record NGSI-LD changes"):
        return conn.execute(
            "INSERT INTO ngsild_changes (org, device, quantities)"
            " SELECT s.org, s.device, array_agg(DISTINCT s.quantity ORDER BY s.quantity) FROM series s"
            " WHERE s.id = ANY(%s) AND " + _SUBSCRIBED.format(org="s.org") + " GROUP BY s.org, s.device",
            (ids,),
        ).rowcount


def record_entity_changes(conn: psycopg.Connection, *, org: str, changes: Sequence[tuple[str, Sequence[str]]]
                          ) -> int:
    """One change per (entity id, attribute IRIs) of `org`; the number recorded."""
    if not changes:
        return 0
    with map_errors("record NGSI-LD changes"):
        return conn.execute(
            "INSERT INTO ngsild_changes (org, entity_id, attributes)"
            " SELECT %s, c.entity_id, string_to_array(c.attributes, ' ')"
            " FROM unnest(%s::text[], %s::text[]) AS c(entity_id, attributes)"
            " WHERE " + _SUBSCRIBED.format(org="%s"),
            (org, [e for e, _ in changes], [" ".join(sorted(a)) for _, a in changes], org),
        ).rowcount


def claim_changes(conn: psycopg.Connection, *, limit: int, lease_s: float) -> list[Change]:
    """Up to `limit` changes, oldest first, that no other notifier holds; held for `lease_s`."""
    with map_errors("claim NGSI-LD changes"):
        rows = conn.execute(
            "UPDATE ngsild_changes SET claimed_until = now() + make_interval(secs => %s) WHERE id IN ("
            " SELECT id FROM ngsild_changes WHERE claimed_until IS NULL OR claimed_until < now()"
            " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)"
            " RETURNING id, org, entity_id, attributes, device, quantities, at",
            (lease_s, limit),
        ).fetchall()
    return sorted((Change(*row) for row in rows), key=lambda c: c.id)


def finish_changes(conn: psycopg.Connection, ids: Sequence[int]) -> None:
    if ids:
        with map_errors("finish NGSI-LD changes"):
            conn.execute("DELETE FROM ngsild_changes WHERE id = ANY(%s)", (list(ids),))
