"""GDPR by construction: classification, erasure, retention per series and access reports.

Classification. A series, a device and a data product may each say whether the
data is personal (`none` / `pseudonymous` / `personal`), its legal basis, its
purpose and its controller, in the terms of the W3C Data Privacy Vocabulary
(DPV, `DPV_TERMS`: the one table of the terms used). A series' *effective*
classification (`classifications`) is the strictest category said of it, of its
device or of any product holding it; legal basis, purpose and controller are the
series' own, else its device's, else a product's; the controller defaults to the
organisation of the device.

Erasure (`erase`): every reading, typed reading, anomaly and dead letter of a device
or of series in a time range is deleted, so are the alarms opened in it (with their
notifications; an alarm cleared in it loses its clearing value), the aggregates the range touches are re-computed from
the readings that remain, and the receipt (rows per table, time, who) is kept in
`erasures` and the audit log. Exports stream from the raw table: there is no export
cache to clear (the receipt says `export_cache: 0`). A redelivered pack is already
refused by its identity (`ingest_packs` keeps it); a pack with another identity
carrying readings of an erased range is refused by ingest with the dead-letter
reason `erased` (`erased_ranges`, `erased_readings`).

Retention (`apply_series_retention`): a series or product retention shorter
than the lab's default deletes, on either engine, the rows older than it; each
run that deleted something is kept in `retention_runs` (`retention_report`).

Access reports (`access_report`): who read a series, through which face, when,
how many rows, under which grant and purpose, from the audit log.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import psycopg

from storage.audit import record_change
from storage.errors import map_errors

__all__ = [
    "CATEGORIES",
    "DPV",
    "DPV_TERMS",
    "Classification",
    "DpvTerm",
    "ErasureReceipt",
    "Minimisation",
    "RetentionRun",
    "access_report",
    "apply_series_retention",
    "classifications",
    "classify_device",
    "classify_product",
    "classify_series",
    "erase",
    "erased_ranges",
    "erased_readings",
    "grant_purposes",
    "list_erasures",
    "minimisations",
    "org_report",
    "open_series",
    "thing_series",
    "org_series",
    "record_refusals",
    "purpose_covers",
    "retention_report",
    "set_grant_minimisation",
    "set_grant_purpose",
]

DPV = "https://w3id.org/dpv#"


@dataclass(frozen=True, slots=True)
class DpvTerm:
    """A DPV concept: what it classifies, its local name and its broader concept (purposes)."""

    kind: str            # personal_data | legal_basis | purpose
    name: str            # the DPV local name, e.g. "PublicInterest"
    label: str
    broader: str | None = None

    @property
    def iri(self) -> str:
        return DPV + self.name


# The DPV terms citylab uses. Personal-data categories are keyed by the short
# values the API takes; legal bases and purposes by their DPV local names.
DPV_TERMS: dict[str, DpvTerm] = {t.name if t.kind != "personal_data" else t.label: t for t in (
    DpvTerm("personal_data", "NonPersonalData", "none"),
    DpvTerm("personal_data", "PseudonymisedData", "pseudonymous"),
    DpvTerm("personal_data", "PersonalData", "personal"),
    DpvTerm("legal_basis", "Consent", "Consent"),
    DpvTerm("legal_basis", "Contract", "Contract"),
    DpvTerm("legal_basis", "LegalObligation", "Legal Obligation"),
    DpvTerm("legal_basis", "VitalInterest", "Vital Interest"),
    DpvTerm("legal_basis", "PublicInterest", "Public Interest"),
    DpvTerm("legal_basis", "OfficialAuthority", "Official Authority"),
    DpvTerm("legal_basis", "LegitimateInterest", "Legitimate Interest"),
    DpvTerm("purpose", "ResearchAndDevelopment", "Research and Development"),
    DpvTerm("purpose", "AcademicResearch", "Academic Research", "ResearchAndDevelopment"),
    DpvTerm("purpose", "CommercialResearch", "Commercial Research", "ResearchAndDevelopment"),
    DpvTerm("purpose", "NonCommercialResearch", "Non-Commercial Research", "ResearchAndDevelopment"),
    DpvTerm("purpose", "ServiceProvision", "Service Provision"),
    DpvTerm("purpose", "ServiceOptimisation", "Service Optimisation", "ServiceProvision"),
    DpvTerm("purpose", "EnforceSecurity", "Enforce Security"),
)}
CATEGORIES = ("none", "pseudonymous", "personal")   # in order of strictness
LEGAL_BASES = tuple(n for n, t in DPV_TERMS.items() if t.kind == "legal_basis")
PURPOSES = tuple(n for n, t in DPV_TERMS.items() if t.kind == "purpose")


def purpose_covers(granted: str | None, stated: str | None) -> bool:
    """True when `stated` is the granted purpose or a narrower DPV purpose of it."""
    while stated is not None:
        if stated == granted:
            return True
        term = DPV_TERMS.get(stated)
        stated = term.broader if term is not None else None
    return False


@dataclass(frozen=True, slots=True)
class Classification:
    personal_data: str = "none"          # none | pseudonymous | personal
    legal_basis: str | None = None       # DPV local name
    purpose: str | None = None           # DPV local name
    controller: str | None = None
    retention_days: int | None = None    # the shortest said of the series or its products

    @property
    def personal(self) -> bool:
        return self.personal_data != "none"

    def dpv(self) -> dict[str, Any]:
        """The classification with DPV IRIs (the API's `privacy` object and the export sidecar)."""
        return {
            "personal_data": self.personal_data,
            "dpv:hasPersonalData": DPV_TERMS[self.personal_data].iri,
            "legal_basis": self.legal_basis,
            "dpv:hasLegalBasis": DPV_TERMS[self.legal_basis].iri if self.legal_basis else None,
            "purpose": self.purpose,
            "dpv:hasPurpose": DPV_TERMS[self.purpose].iri if self.purpose else None,
            "controller": self.controller,
            "retention_days": self.retention_days,
        }

    def header(self) -> str:
        """One HTTP header value: `personal; legal-basis=<iri>; purpose=<iri>; controller="..."`."""
        parts = [self.personal_data]
        if self.legal_basis:
            parts.append(f"legal-basis={DPV_TERMS[self.legal_basis].iri}")
        if self.purpose:
            parts.append(f"purpose={DPV_TERMS[self.purpose].iri}")
        if self.controller:
            parts.append('controller="' + self.controller.replace('"', "'").encode("ascii", "replace").decode() + '"')
        return "; ".join(parts)


def _check_terms(personal_data: str | None, legal_basis: str | None, purpose: str | None) -> None:
    if personal_data is not None and personal_data not in CATEGORIES:
        raise ValueError(f"personal_data must be one of {CATEGORIES}")
    if legal_basis is not None and legal_basis not in LEGAL_BASES:
        raise ValueError(f"legal_basis must be a DPV legal basis: one of {LEGAL_BASES}")
    if purpose is not None and purpose not in PURPOSES:
        raise ValueError(f"purpose must be a DPV purpose: one of {PURPOSES}")


def classify_series(
    conn: psycopg.Connection, *, org: str, series_id: int, personal_data: str | None, legal_basis: str | None,
    purpose: str | None, controller: str | None, retention_days: int | None,
) -> bool:
    """Set the classification of `org`'s series (None clears a field); False when it has no such series."""
    _check_terms(personal_data, legal_basis, purpose)
    with map_errors("classify series"):
        row = conn.execute(
            "UPDATE series SET personal_data = %s, legal_basis = %s, purpose = %s, controller = %s,"
            " retention_days = %s WHERE org = %s AND id = %s RETURNING id",
            (personal_data, legal_basis, purpose, controller, retention_days, org, series_id),
        ).fetchone()
    return row is not None


def classify_device(
    conn: psycopg.Connection, *, org: str, device: str, personal_data: str | None, legal_basis: str | None,
    purpose: str | None, controller: str | None,
) -> bool:
    _check_terms(personal_data, legal_basis, purpose)
    with map_errors("classify device"):
        row = conn.execute(
            "UPDATE devices SET personal_data = %s, legal_basis = %s, purpose = %s, controller = %s"
            " WHERE org = %s AND device = %s RETURNING device",
            (personal_data, legal_basis, purpose, controller, org, device),
        ).fetchone()
    return row is not None


def classify_product(
    conn: psycopg.Connection, *, org_id: int, product_id: int, personal_data: str | None, legal_basis: str | None,
    purpose: str | None, controller: str | None, retention_days: int | None,
) -> bool:
    _check_terms(personal_data, legal_basis, purpose)
    with map_errors("classify product"):
        row = conn.execute(
            "UPDATE data_products SET personal_data = %s, legal_basis = %s, purpose = %s, controller = %s,"
            " retention_days = %s, modified_at = now() WHERE org_id = %s AND id = %s RETURNING id",
            (personal_data, legal_basis, purpose, controller, retention_days, org_id, product_id),
        ).fetchone()
    return row is not None


def _strictest(*values: str | None) -> str:
    return max((v for v in values if v is not None), key=CATEGORIES.index, default="none")


def classifications(conn: psycopg.Connection, series_ids: list[int] | set[int]) -> dict[int, Classification]:
    """The effective classification of each existing series of `series_ids`."""
    ids = sorted(set(series_ids))
    if not ids:
        return {}
    with map_errors("classifications"):
        rows = conn.execute(
            "SELECT s.id, s.personal_data, s.legal_basis, s.purpose, s.controller, s.retention_days,"
            " d.personal_data, d.legal_basis, d.purpose, d.controller, o.name"
            " FROM series s JOIN devices d ON d.org = s.org AND d.device = s.device"
            " LEFT JOIN organisations o ON o.slug = s.org WHERE s.id = ANY(%s)",
            (ids,),
        ).fetchall()
        products = conn.execute(
            "SELECT ps.series_id, p.personal_data, p.legal_basis, p.purpose, p.controller, p.retention_days"
            " FROM data_product_series ps JOIN data_products p ON p.id = ps.product_id"
            " WHERE ps.series_id = ANY(%s) ORDER BY p.id",
            (ids,),
        ).fetchall()
    of: dict[int, list[tuple]] = {}
    for row in products:
        of.setdefault(row[0], []).append(row[1:])
    out: dict[int, Classification] = {}
    for sid, s_pd, s_lb, s_pu, s_ct, s_days, d_pd, d_lb, d_pu, d_ct, org_name in rows:
        prods = of.get(sid, [])

        def first(own, dev, index):
            return own or dev or next((p[index] for p in prods if p[index]), None)

        days = [d for d in [s_days, *(p[4] for p in prods)] if d is not None]
        out[sid] = Classification(
            personal_data=_strictest(s_pd, d_pd, *(p[0] for p in prods)),
            legal_basis=first(s_lb, d_lb, 1), purpose=first(s_pu, d_pu, 2),
            controller=first(s_ct, d_ct, 3) or org_name, retention_days=min(days) if days else None,
        )
    return out


def org_series(
    conn: psycopg.Connection, *, org: str, device: str | None = None, series_ids: list[int] | None = None
) -> list[int]:
    """Ids of `org`'s series: of its `device`, or those of `series_ids` that are its own."""
    with map_errors("series of organisation"):
        rows = conn.execute(
            "SELECT id FROM series WHERE org = %s AND (%s::text IS NULL OR device = %s)"
            " AND (%s::integer[] IS NULL OR id = ANY(%s)) ORDER BY id",
            (org, device, device, series_ids, series_ids),
        ).fetchall()
    return [r[0] for r in rows]


def open_series(conn: psycopg.Connection, series_ids: list[int]) -> set[int]:
    """Those of `series_ids` that an open product holds (readable without a key)."""
    with map_errors("open series"):
        rows = conn.execute("SELECT ps.series_id FROM data_product_series ps JOIN data_products p"
                            " ON p.id = ps.product_id WHERE p.open AND ps.series_id = ANY(%s)", (series_ids,)).fetchall()
    return {r[0] for r in rows}


def thing_series(conn: psycopg.Connection, thing_ids: list[int]) -> dict[int, list[int]]:
    """SensorThings thing id (devices.thing_id) -> the ids of its device's series."""
    with map_errors("thing series"):
        rows = conn.execute("SELECT d.thing_id, s.id FROM devices d JOIN series s ON s.org = d.org"
                            " AND s.device = d.device WHERE d.thing_id = ANY(%s)", (thing_ids,)).fetchall()
    out: dict[int, list[int]] = {}
    for thing, sid in rows:
        out.setdefault(thing, []).append(sid)
    return out


# Grants: purpose and minimisation ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Minimisation:
    """What a grant withholds on the way out: location precision and k-anonymity of aggregates."""

    grant_id: int
    purpose: str | None = None
    location_grid_m: float | None = None
    location_h3_res: int | None = None
    k_anonymity: int | None = None


def set_grant_purpose(conn: psycopg.Connection, *, grant_id: int, purpose: str | None) -> None:
    _check_terms(None, None, purpose)
    with map_errors("set grant purpose"):
        conn.execute("UPDATE access_grants SET purpose = %s WHERE id = %s", (purpose, grant_id))


def set_grant_minimisation(
    conn: psycopg.Connection, *, grant_id: int, provider_org: int, location_grid_m: float | None,
    location_h3_res: int | None, k_anonymity: int | None,
) -> Minimisation | None:
    """Set what the grant withholds (provider of the product only); None when it has no such grant."""
    with map_errors("set grant minimisation"):
        row = conn.execute(
            "UPDATE access_grants g SET location_grid_m = %s, location_h3_res = %s, k_anonymity = %s"
            " FROM data_products p WHERE g.id = %s AND p.id = g.product_id AND p.org_id = %s"
            " RETURNING g.id, g.purpose, g.location_grid_m, g.location_h3_res, g.k_anonymity",
            (location_grid_m, location_h3_res, k_anonymity, grant_id, provider_org),
        ).fetchone()
    return Minimisation(*row) if row else None


_ACTIVE = "g.status = 'active' AND (g.expires_at IS NULL OR g.expires_at > now())"


def grant_purposes(conn: psycopg.Connection, *, consumer_org: int, series_ids: list[int]) -> dict[int, list[str | None]]:
    """series id -> the purposes of `consumer_org`'s active grants covering it."""
    with map_errors("grant purposes"):
        rows = conn.execute(
            "SELECT ps.series_id, g.purpose FROM access_grants g JOIN data_product_series ps"
            f" ON ps.product_id = g.product_id WHERE g.consumer_org = %s AND ps.series_id = ANY(%s) AND {_ACTIVE}",
            (consumer_org, series_ids),
        ).fetchall()
    out: dict[int, list[str | None]] = {}
    for sid, purpose in rows:
        out.setdefault(sid, []).append(purpose)
    return out


def minimisations(conn: psycopg.Connection, *, consumer_org: int, series_ids: list[int]) -> dict[int, Minimisation]:
    """series id -> the minimisation of the grant a consumer reads it through (the oldest active one)."""
    with map_errors("grant minimisations"):
        rows = conn.execute(
            "SELECT DISTINCT ON (ps.series_id) ps.series_id, g.id, g.purpose, g.location_grid_m, g.location_h3_res,"
            " g.k_anonymity FROM access_grants g JOIN data_product_series ps ON ps.product_id = g.product_id"
            f" WHERE g.consumer_org = %s AND ps.series_id = ANY(%s) AND {_ACTIVE} ORDER BY ps.series_id, g.id",
            (consumer_org, series_ids),
        ).fetchall()
    return {row[0]: Minimisation(*row[1:]) for row in rows}


# Erasure -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ErasureReceipt:
    id: int
    at: datetime
    actor: str
    org: str
    device: str | None
    series_ids: list[int]
    start: datetime
    end: datetime
    deleted: dict[str, int] = field(default_factory=dict)   # table -> rows deleted
    reaggregated: int = 0                                    # aggregate windows re-computed


# m2 = Σ (v − mean)² = var_pop · count; last = the value with the latest time (ties: the largest).
_REAGGREGATE = """
INSERT INTO aggregates (width_s, series_id, bucket, count, sum, min, max, last, last_time, m2)
SELECT %(width)s, r.series_id,
       to_timestamp(floor(extract(epoch FROM r.time) / %(width)s) * %(width)s) AS bucket,
       count(*), sum(r.value), min(r.value), max(r.value),
       (array_agg(r.value ORDER BY r.time DESC, r.value DESC))[1], max(r.time),
       coalesce(var_pop(r.value), 0) * count(*)
FROM readings r
WHERE r.series_id = ANY(%(ids)s) AND r.time >= %(from)s AND r.time < %(to)s
GROUP BY r.series_id, 3
"""


# An alarm holds the reading that opened its episode and the one that cleared it, and its
# notifications carry both in their payload. An alarm opened in the range goes with its
# notifications and their attempts; one opened before and cleared in the range keeps its
# episode but loses the clearing value (alarms.clear_value and the payloads' clear_value).
_ALARMS_OPENED = ("SELECT id FROM alarms WHERE series_id = ANY(%(ids)s) AND opened_at >= %(start)s"
                  " AND opened_at < %(end)s")
_ALARMS_CLEARED = ("SELECT id FROM alarms WHERE series_id = ANY(%(ids)s) AND opened_at < %(start)s"
                   " AND cleared_at >= %(start)s AND cleared_at < %(end)s AND clear_value IS NOT NULL")


def _erase_alarms(conn: psycopg.Connection, span: dict[str, Any]) -> dict[str, int]:
    """Delete or clear the alarm values of the erased range; rows per table (alarm_values: values cleared)."""
    conn.execute(f"DELETE FROM notification_attempts WHERE notification_id IN (SELECT id FROM notifications"
                 f" WHERE alarm_id IN ({_ALARMS_OPENED}))", span)
    notifications = conn.execute(f"DELETE FROM notifications WHERE alarm_id IN ({_ALARMS_OPENED})", span).rowcount
    alarms = conn.execute(f"DELETE FROM alarms WHERE id IN ({_ALARMS_OPENED})", span).rowcount
    conn.execute("UPDATE notifications SET payload = jsonb_set(payload, '{clear_value}', 'null')"
                 f" WHERE payload ? 'clear_value' AND alarm_id IN ({_ALARMS_CLEARED})", span)
    cleared = conn.execute(f"UPDATE alarms SET clear_value = NULL, updated_at = now() WHERE id IN ({_ALARMS_CLEARED})",
                           span).rowcount
    return {"alarms": alarms, "notifications": notifications, "alarm_values": cleared}


def erase(
    conn: psycopg.Connection, *, org: str, start: datetime, end: datetime, actor: str, org_id: int | None = None,
    key_id: int | None = None, device: str | None = None, series_ids: list[int] | None = None,
) -> ErasureReceipt | None:
    """Erase every row of `org`'s `device` (or of its `series_ids`) in [start, end), in one transaction.

    Readings and anomalies by their time, dead letters of the device by the time
    they were received; aggregate windows overlapping the range are deleted and
    re-computed from the readings that remain. None when `org` has no such
    device or series. Every face reads these tables, so the erased rows are gone
    from all of them at the commit.
    """
    if end <= start:
        raise ValueError("end must be after start")
    if (device is None) == (series_ids is None):
        raise ValueError("name a device or series, not both")
    with map_errors("erase"), conn.transaction():
        if device is not None:
            ids = [r[0] for r in conn.execute(
                "SELECT id FROM series WHERE org = %s AND device = %s ORDER BY id", (org, device))]
            if not ids and conn.execute("SELECT 1 FROM devices WHERE org = %s AND device = %s",
                                        (org, device)).fetchone() is None:
                return None
            devices = [device]
        else:
            rows = conn.execute("SELECT id, device FROM series WHERE org = %s AND id = ANY(%s) ORDER BY id",
                                (org, series_ids)).fetchall()
            if len(rows) != len(set(series_ids or [])):
                return None
            ids = [r[0] for r in rows]
            devices = sorted({r[1] for r in rows})
        span = {"ids": ids, "start": start, "end": end}
        deleted = {
            "readings": conn.execute("DELETE FROM readings WHERE series_id = ANY(%(ids)s) AND time >= %(start)s"
                                     " AND time < %(end)s", span).rowcount,
            "anomalies": conn.execute("DELETE FROM anomalies WHERE series_id = ANY(%(ids)s) AND time >= %(start)s"
                                      " AND time < %(end)s", span).rowcount,
            "typed_readings": conn.execute("DELETE FROM typed_readings WHERE series_id = ANY(%(ids)s)"
                                           " AND time >= %(start)s AND time < %(end)s", span).rowcount,
            "dead_letters": conn.execute(
                "DELETE FROM dead_letters WHERE org = %s AND device = ANY(%s) AND received_at >= %s"
                " AND received_at < %s", (org, devices, start, end)).rowcount,
            "aggregates": 0,
            "export_cache": 0,   # exports stream from the raw table: nothing cached
            **_erase_alarms(conn, span),
        }
        reaggregated = 0
        widths = [r[0] for r in conn.execute("SELECT DISTINCT width_s FROM aggregates WHERE series_id = ANY(%s)",
                                             (ids,))]
        for width in widths:
            step = timedelta(seconds=width)
            epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
            first = epoch + step * ((start - epoch) // step)
            last = epoch + step * -((epoch - end) // step)
            window = {"ids": ids, "width": width, "from": first, "to": last}
            deleted["aggregates"] += conn.execute(
                "DELETE FROM aggregates WHERE width_s = %(width)s AND series_id = ANY(%(ids)s)"
                " AND bucket >= %(from)s AND bucket < %(to)s", window).rowcount
            reaggregated += conn.execute(_REAGGREGATE, window).rowcount
        row = conn.execute(
            "INSERT INTO erasures (actor, org, device, series_ids, time_start, time_end, deleted)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id, at",
            (actor, org, device, ids, start, end, json.dumps(deleted)),
        ).fetchone()
        receipt = ErasureReceipt(id=row[0], at=row[1], actor=actor, org=org, device=device, series_ids=ids,
                                 start=start, end=end, deleted=deleted, reaggregated=reaggregated)
        owner = conn.execute("SELECT id FROM organisations WHERE slug = %s", (org,)).fetchone()
        record_change(conn, actor=actor, action="gdpr.erasure", org_id=org_id, key_id=key_id,
                      owner_org=owner[0] if owner else None, detail=asdict(receipt))
    return receipt


def list_erasures(conn: psycopg.Connection, *, org: str | None, limit: int = 1000) -> list[ErasureReceipt]:
    """Receipts, newest first; of one organisation's data, or (None) of the whole lab."""
    with map_errors("list erasures"):
        rows = conn.execute(
            "SELECT id, at, actor, org, device, series_ids, time_start, time_end, deleted FROM erasures"
            " WHERE %(org)s::text IS NULL OR org = %(org)s ORDER BY id DESC LIMIT %(limit)s",
            {"org": org, "limit": limit},
        ).fetchall()
    return [ErasureReceipt(*row) for row in rows]


def erased_ranges(conn: psycopg.Connection) -> dict[int, np.ndarray]:
    """series id -> its erased ranges as an (n, 2) int64 array of [start, end) UTC microseconds."""
    with map_errors("erased ranges"):
        rows = conn.execute(
            "SELECT unnest(series_ids), (extract(epoch FROM time_start) * 1000000)::bigint,"
            " (extract(epoch FROM time_end) * 1000000)::bigint FROM erasures"
        ).fetchall()
    out: dict[int, list[tuple[int, int]]] = {}
    for sid, lo, hi in rows:
        out.setdefault(sid, []).append((lo, hi))
    return {sid: np.array(spans, dtype=np.int64) for sid, spans in out.items()}


def erased_readings(ranges: dict[int, np.ndarray], series_id: np.ndarray, time_us: np.ndarray) -> np.ndarray:
    """A boolean mask of the readings (series_id, time_us) that fall into an erased range."""
    hit = np.zeros(len(series_id), dtype=bool)
    if not ranges or not len(series_id):
        return hit
    for sid in np.intersect1d(np.unique(series_id), np.fromiter(ranges, dtype=np.int64)):
        rows = series_id == sid
        t = time_us[rows]
        spans = ranges[int(sid)]
        inside = ((t[:, None] >= spans[None, :, 0]) & (t[:, None] < spans[None, :, 1])).any(axis=1)
        hit[np.flatnonzero(rows)[inside]] = True
    return hit


# Retention per series and product ------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetentionRun:
    at: datetime
    series_id: int
    days: int
    horizon: datetime
    deleted: dict[str, int]


def apply_series_retention(conn: psycopg.Connection, *, now: datetime | None = None) -> list[RetentionRun]:
    """Delete what is older than each series' retention (its own, or its products' shortest).

    Row deletes on either engine (on TimescaleDB they reach compressed chunks
    too); runs that deleted rows are recorded in `retention_runs`.
    """
    now = now or datetime.now(timezone.utc)
    with map_errors("series retention"):
        rows = conn.execute(
            "SELECT s.id, min(d.days) FROM series s CROSS JOIN LATERAL (SELECT s.retention_days AS days UNION ALL"
            " SELECT p.retention_days FROM data_product_series ps JOIN data_products p ON p.id = ps.product_id"
            " WHERE ps.series_id = s.id) d WHERE d.days IS NOT NULL GROUP BY s.id ORDER BY s.id"
        ).fetchall()
    runs: list[RetentionRun] = []
    for series_id, days in rows:
        horizon = now - timedelta(days=days)
        with map_errors("series retention"), conn.transaction():
            deleted = {
                "readings": conn.execute("DELETE FROM readings WHERE series_id = %s AND time < %s",
                                         (series_id, horizon)).rowcount,
                "anomalies": conn.execute("DELETE FROM anomalies WHERE series_id = %s AND time < %s",
                                          (series_id, horizon)).rowcount,
                "typed_readings": conn.execute("DELETE FROM typed_readings WHERE series_id = %s AND time < %s",
                                               (series_id, horizon)).rowcount,
                # a window is kept while any of it lies inside the retention
                "aggregates": conn.execute(
                    "DELETE FROM aggregates WHERE series_id = %s AND bucket + make_interval(secs => width_s) <= %s",
                    (series_id, horizon)).rowcount,
            }
            if any(deleted.values()):
                at = conn.execute(
                    "INSERT INTO retention_runs (series_id, days, horizon, deleted) VALUES (%s, %s, %s, %s)"
                    " RETURNING at", (series_id, days, horizon, json.dumps(deleted))).fetchone()[0]
                runs.append(RetentionRun(at, series_id, days, horizon, deleted))
    return runs


def retention_report(conn: psycopg.Connection, *, org: str | None, limit: int = 1000) -> list[RetentionRun]:
    """What per-series retention deleted when, newest first; of one organisation's series or (None) all."""
    with map_errors("retention report"):
        rows = conn.execute(
            "SELECT r.at, r.series_id, r.days, r.horizon, r.deleted FROM retention_runs r"
            " JOIN series s ON s.id = r.series_id WHERE %(org)s::text IS NULL OR s.org = %(org)s"
            " ORDER BY r.id DESC LIMIT %(limit)s", {"org": org, "limit": limit},
        ).fetchall()
    return [RetentionRun(*row) for row in rows]


# Access reports ------------------------------------------------------------------

# The face an audit action belongs to, by its first segment.
FACES = {"read": "/v1", "export": "exports", "sta": "SensorThings", "ngsild": "NGSI-LD",
         "open": "open data", "catalog": "catalogue"}

ACCESS_COLUMNS = ("at", "actor", "reader", "face", "action", "series_id", "device", "quantity", "time_start",
                  "time_end", "rows", "grant_id", "purpose", "stated_purpose")


def access_report(
    conn: psycopg.Connection, *, series_ids: list[int], start: datetime, end: datetime, limit: int = 100_000,
) -> list[dict[str, Any]]:
    """Every read of `series_ids` logged in [start, end), oldest first: who, through which face, when,
    how many rows, and the grant it went through (the reader's oldest grant covering the series at
    that time, the one usage is metered on) with its purpose; refused reads too (rows 0, with the
    purpose they stated)."""
    with map_errors("access report"):
        rows = conn.execute(
            "SELECT a.at, a.actor, o.slug, a.action, a.series_id, s.device, s.quantity, a.time_start, a.time_end,"
            " coalesce(a.rows, 0), g.id, g.purpose, a.detail->>'purpose'"
            " FROM audit_log a JOIN series s ON s.id = a.series_id LEFT JOIN organisations o ON o.id = a.org_id"
            " LEFT JOIN LATERAL (SELECT g.id, g.purpose FROM access_grants g"
            "   JOIN data_product_series ps ON ps.product_id = g.product_id"
            "   WHERE g.consumer_org = a.org_id AND ps.series_id = a.series_id AND g.decided_at <= a.at"
            "   AND g.status IN ('active', 'revoked') ORDER BY g.id LIMIT 1) g ON true"
            " WHERE a.series_id = ANY(%s) AND a.at >= %s AND a.at < %s ORDER BY a.id LIMIT %s",
            (series_ids, start, end, limit),
        ).fetchall()
    out = []
    for at, actor, reader, action, sid, device, quantity, t0, t1, n, grant, purpose, stated in rows:
        out.append({"at": at, "actor": actor, "reader": reader, "face": FACES.get(action.removeprefix("refused.").split(".")[0], action),
                    "action": action, "series_id": sid, "device": device, "quantity": quantity,
                    "time_start": t0, "time_end": t1, "rows": n, "grant_id": grant, "purpose": purpose,
                    "stated_purpose": stated})
    return out


def record_refusals(
    conn: psycopg.Connection, *, actor: str, action: str, org_id: int, key_id: int, series_ids: list[int],
    detail: dict[str, Any],
) -> None:
    """One audit row (0 rows served) per series whose read was refused, with the purpose stated."""
    with map_errors("audit refusals"):
        conn.execute(
            "INSERT INTO audit_log (actor, action, org_id, key_id, owner_org, series_id, rows, detail)"
            " SELECT %s, %s, %s, %s, o.id, s.id, 0, %s FROM series s LEFT JOIN organisations o ON o.slug = s.org"
            " WHERE s.id = ANY(%s)",
            (actor, action, org_id, key_id, json.dumps(detail, default=str), series_ids),
        )


# The DPIA starter ------------------------------------------------------------------


def org_report(conn: psycopg.Connection, *, org: str) -> dict[str, Any]:
    """The facts a DPIA needs about one organisation's personal series, from the data."""
    with map_errors("GDPR report"):
        found = conn.execute("SELECT id, name FROM organisations WHERE slug = %s", (org,)).fetchone()
        if found is None:
            raise ValueError(f"no organisation {org!r}")
        ids = [r[0] for r in conn.execute("SELECT id FROM series WHERE org = %s ORDER BY id", (org,))]
        classes = classifications(conn, ids)
        personal = [sid for sid in ids if classes[sid].personal]
        series = conn.execute(
            "SELECT s.id, s.device, s.quantity, s.unit,"
            " (SELECT count(*) FROM readings r WHERE r.series_id = s.id) FROM series s WHERE s.id = ANY(%s)"
            " ORDER BY s.id", (personal,)).fetchall()
        grants = conn.execute(
            "SELECT DISTINCT g.id, o.slug, g.status, g.purpose, g.expires_at, g.location_grid_m, g.location_h3_res,"
            " g.k_anonymity, g.requests, g.rows_served, array_agg(ps.series_id ORDER BY ps.series_id)"
            " FROM access_grants g JOIN organisations o ON o.id = g.consumer_org"
            " JOIN data_product_series ps ON ps.product_id = g.product_id"
            " WHERE ps.series_id = ANY(%s) AND g.status IN ('active', 'requested')"
            " GROUP BY g.id, o.slug ORDER BY g.id", (personal,)).fetchall()
        reads = conn.execute(
            "SELECT a.series_id, coalesce(o.slug, a.actor), a.action, count(*), coalesce(sum(a.rows), 0)::bigint, max(a.at)"
            " FROM audit_log a LEFT JOIN organisations o ON o.id = a.org_id WHERE a.series_id = ANY(%s)"
            " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3", (personal,)).fetchall()
        erasures = conn.execute("SELECT count(*) FROM erasures WHERE org = %s", (org,)).fetchone()[0]
    return {
        "organisation": {"slug": org, "name": found[1]},
        "series": [{"id": sid, "device": dev, "quantity": q, "unit": unit, "readings": n, **classes[sid].dpv()}
                   for sid, dev, q, unit, n in series],
        "grants": [{"id": g[0], "consumer": g[1], "status": g[2], "purpose": g[3], "expires_at": g[4],
                    "location_grid_m": g[5], "location_h3_res": g[6], "k_anonymity": g[7], "requests": g[8],
                    "rows_served": g[9], "series_ids": g[10]} for g in grants],
        "reads": [{"series_id": r[0], "reader": r[1], "action": r[2], "requests": r[3], "rows": r[4],
                   "last": r[5]} for r in reads],
        "erasures": erasures,
        "retention_runs": [asdict(r) for r in retention_report(conn, org=org)],
    }
