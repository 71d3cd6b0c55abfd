"""GDPR by construction through the real API, ingest pipeline and database: classification travels
with the data (answers, exports, catalogue), purpose limitation, minimisation, erasure with its
receipt and refused re-entry, retention per series, access reports and the DPIA starter."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import h3
import psycopg
import pytest
from fastapi.testclient import TestClient
from rdflib import Graph, URIRef
from test_catalog import _violations
from testbed import Tenant, make_tenant

from api import create_app
from citylab.settings import Settings
from ingest import Message, Pipeline
from protocol.senml import Pack, Record, encode_pack
from protocol.topics import up_topic
from storage.alarms import create_channel, create_rule
from storage.gdpr import DPV
from storage.registry import register_device
from storage.retention import RetentionPolicy

REPO = Path(__file__).resolve().parents[2]
NOW = datetime.now(UTC).replace(microsecond=0)
BASE = datetime.fromtimestamp((int(NOW.timestamp()) // 3600 - 2) * 3600, UTC)   # a whole hour, 1-2 h ago
LAT, LON = 58.969975, 5.733107
PER_PACK = 10   # one pack per minute: a reading every 6 s


def _pack(seq: int, *, boot: str = "boot-1", minute: int | None = None, n: int = PER_PACK) -> Message:
    start = BASE + timedelta(minutes=seq if minute is None else minute)
    records = tuple(Record(name="wifi-1/traffic_count", unit="count", value=float(seq * 100 + i),
                           time=(start + timedelta(seconds=6 * i)).timestamp()) for i in range(n))
    return Message(topic=up_topic("prov", "wifi-1"), payload=encode_pack(Pack(boot_id=boot, seq=seq, records=records)),
                   mid=seq + 1, qos=1, content_type=None, received_us=int(NOW.timestamp() * 1e6))


@dataclass
class World:
    url: str
    client: TestClient
    pipeline: Pipeline
    prov: Tenant
    city: Tenant
    ops: Tenant
    series_id: int
    product_id: int
    messages: list[Message]


@pytest.fixture
def world(database: str):
    prov = make_tenant(database, name="Wifi Counters AS", kind="provider", slug="prov")
    city = make_tenant(database, name="Stavanger kommune", kind="city", slug="city")
    ops = make_tenant(database, name="Lab staff", kind="city", slug="ops", role="operator")
    with psycopg.connect(database, autocommit=True) as conn:
        register_device(conn, org="prov", device="wifi-1")
        conn.execute("UPDATE devices SET lat = %s, lon = %s WHERE org = 'prov' AND device = 'wifi-1'", (LAT, LON))
    pipeline = Pipeline(database)
    # minutes 0..5 full, minute 6 with only 5 readings (for k-anonymity)
    messages = [_pack(seq) for seq in range(6)] + [_pack(6, n=5)]
    result = pipeline.commit(messages)
    assert result.packs_stored == 7 and result.readings_stored == 65
    with TestClient(create_app(Settings(database_url=database))) as client:
        series_id = client.get("/v1/series", headers=prov.headers).json()[0]["id"]
        product = client.post("/v1/products", headers=prov.headers, json={
            "title": "Wi-Fi presence counts", "licence": "proprietary", "series_ids": [series_id],
            "listed": True}).json()
        yield World(database, client, pipeline, prov, city, ops, series_id, product["id"], messages)
    pipeline.close()


def _grant(w: World, purpose: str = "ResearchAndDevelopment") -> int:
    r = w.client.post(f"/v1/products/{w.product_id}/requests", headers=w.city.headers, json={"purpose": purpose})
    assert r.status_code == 201, r.text
    grant = r.json()["id"]
    assert w.client.post(f"/v1/grants/{grant}/approve", headers=w.prov.headers).status_code == 200
    return grant


def _classify_personal(w: World) -> None:
    r = w.client.put("/v1/devices/wifi-1/classification", headers=w.prov.headers, json={
        "personal_data": "pseudonymous", "legal_basis": "PublicInterest", "purpose": "ServiceOptimisation"})
    assert r.status_code == 200, r.text
    r = w.client.put(f"/v1/products/{w.product_id}/classification", headers=w.prov.headers,
                     json={"personal_data": "personal", "controller": "Stavanger kommune"})
    assert r.status_code == 200, r.text


def test_classification_travels_with_the_data(world: World) -> None:
    w = world
    before = w.client.get("/v1/series", headers=w.prov.headers).json()[0]["privacy"]
    assert before["personal_data"] == "none" and before["dpv:hasPersonalData"] == DPV + "NonPersonalData"
    assert before["controller"] == "Wifi Counters AS"        # the device's organisation by default
    r = w.client.put("/v1/devices/wifi-1/classification", headers=w.city.headers, json={"personal_data": "personal"})
    assert r.status_code == 404                                # not its device
    r = w.client.put("/v1/devices/wifi-1/classification", headers=w.prov.headers, json={"legal_basis": "Whim"})
    assert r.status_code == 422
    _classify_personal(w)

    # every answer's metadata
    privacy = w.client.get("/v1/series", headers=w.prov.headers).json()[0]["privacy"]
    assert privacy == {
        "personal_data": "personal", "dpv:hasPersonalData": DPV + "PersonalData",   # the strictest of all
        "legal_basis": "PublicInterest", "dpv:hasLegalBasis": DPV + "PublicInterest",
        "purpose": "ServiceOptimisation", "dpv:hasPurpose": DPV + "ServiceOptimisation",
        "controller": "Stavanger kommune", "retention_days": None,
    }
    span = {"start": BASE.isoformat(), "end": (BASE + timedelta(hours=1)).isoformat()}
    readings = w.client.get(f"/v1/series/{w.series_id}/readings", headers=w.prov.headers, params=span).json()
    assert readings["count"] == 65 and readings["series"]["privacy"] == privacy
    aggregates = w.client.get(f"/v1/series/{w.series_id}/aggregates", headers=w.prov.headers, params=span).json()
    assert aggregates["series"]["privacy"]["personal_data"] == "personal"
    latest = w.client.get("/v1/latest", headers=w.prov.headers).json()
    assert latest[0]["privacy"]["dpv:hasLegalBasis"] == DPV + "PublicInterest"

    # exports: a header and a sidecar
    export = w.client.get("/v1/exports/readings", headers=w.prov.headers,
                          params={**span, "series_id": w.series_id})
    assert export.status_code == 200 and len(export.text.splitlines()) == 66
    header = export.headers["data-classification"]
    assert header.startswith("personal; legal-basis=" + DPV + "PublicInterest; purpose=" + DPV + "ServiceOptimisation")
    sidecar_url = export.headers["link"].split(">")[0].lstrip("<")
    sidecar = w.client.get(sidecar_url, headers=w.prov.headers).json()
    assert sidecar["@context"] == {"dpv": DPV}
    assert sidecar["series"] == [{"series_id": w.series_id, **privacy}]

    # the DCAT-AP catalogue: DPV terms on the dataset
    turtle = w.client.get("/catalog", headers={"Accept": "text/turtle"})
    assert turtle.status_code == 200
    g = Graph().parse(data=turtle.text, format="turtle")
    dataset = next(s for s in g.subjects(URIRef(DPV + "hasPersonalData"), None))
    assert str(dataset).endswith(f"/catalog/datasets/{w.product_id}")
    assert g.value(dataset, URIRef(DPV + "hasPersonalData")) == URIRef(DPV + "PersonalData")
    assert g.value(dataset, URIRef(DPV + "hasLegalBasis")) == URIRef(DPV + "PublicInterest")
    assert g.value(dataset, URIRef(DPV + "hasPurpose")) == URIRef(DPV + "ServiceOptimisation")
    controller = g.value(dataset, URIRef(DPV + "hasDataController"))
    assert str(g.value(controller, URIRef("http://xmlns.com/foaf/0.1/name"))) == "Stavanger kommune"
    # personal data is placed by its H3 cell of resolution 7, never the device's point
    centroid = str(next(g.objects(None, URIRef("http://www.w3.org/ns/dcat#centroid"))))
    lat7, lon7 = h3.cell_to_latlng(h3.latlng_to_cell(LAT, LON, 7))
    assert centroid == f"POINT({lon7:.6f} {lat7:.6f})"
    # still a valid DCAT-AP 3 catalogue with the DPV terms on it
    assert "\n".join(_violations(g, "shapes.ttl", "range.ttl")) == ""


def test_purpose_limitation(world: World) -> None:
    w = world
    _classify_personal(w)
    r = w.client.post(f"/v1/products/{w.product_id}/requests", headers=w.city.headers, json={})
    assert r.status_code == 422 and "purpose" in r.json()["detail"]
    r = w.client.post(f"/v1/products/{w.product_id}/requests", headers=w.city.headers, json={"purpose": "Fun"})
    assert r.status_code == 422
    grant = _grant(w, "ResearchAndDevelopment")
    url = f"/v1/series/{w.series_id}/readings"
    span = {"start": BASE.isoformat(), "end": (BASE + timedelta(hours=1)).isoformat()}

    refused = w.client.get(url, headers=w.city.headers, params=span)
    assert refused.status_code == 403 and "name the purpose" in refused.json()["detail"]
    outside = w.client.get(url, headers=w.city.headers, params={**span, "purpose": "ServiceProvision"})
    assert outside.status_code == 403 and "ServiceProvision" in outside.json()["detail"]
    inside = w.client.get(url, headers=w.city.headers, params={**span, "purpose": "AcademicResearch"})  # narrower
    assert inside.status_code == 200 and inside.json()["count"] == 65
    header = w.client.get(url, headers={**w.city.headers, "Data-Purpose": "ResearchAndDevelopment"}, params=span)
    assert header.status_code == 200
    export = w.client.get("/v1/exports/readings", headers=w.city.headers, params={**span, "series_id": w.series_id})
    assert export.status_code == 403
    assert w.client.get("/v1/latest", headers=w.city.headers).json() == []       # left out, not served
    assert len(w.client.get("/v1/latest", headers=w.city.headers, params={"purpose": "AcademicResearch"}).json()) == 1
    # the provider reads its own data without naming a purpose
    assert w.client.get(url, headers=w.prov.headers, params=span).status_code == 200

    # the refusals are audited, with the purpose stated; the access report shows them and the grant
    audit = w.client.get("/v1/audit", headers=w.prov.headers).json()
    actions = [(a["action"], (a["detail"] or {}).get("purpose")) for a in audit if a["action"].startswith("refused.")]
    assert ("refused.read.readings", None) in actions and ("refused.read.readings", "ServiceProvision") in actions
    assert ("refused.export.readings", None) in actions
    report = w.client.get("/v1/access-report", headers=w.prov.headers, params={"device": "wifi-1"}).json()
    city_reads = [r for r in report["reads"] if r["reader"] == "city"]
    served = [r for r in city_reads if r["action"] == "read.readings"]
    assert [r["rows"] for r in served] == [65, 65]
    assert all(r["grant_id"] == grant and r["face"] == "/v1" for r in served)
    assert {r["stated_purpose"] for r in city_reads if r["action"].startswith("refused.")} == {None, "ServiceProvision"}
    assert served[0]["purpose"] == "ResearchAndDevelopment"

    # as CSV
    text = w.client.get("/v1/access-report", headers=w.prov.headers,
                        params={"series_id": w.series_id, "format": "csv"}).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows and set(rows[0]) >= {"at", "reader", "face", "rows", "grant_id", "purpose"}
    assert sum(int(r["rows"]) for r in rows if r["reader"] == "city") == 130 + 1
    # the consumer cannot read the provider's access report
    assert w.client.get("/v1/access-report", headers=w.city.headers, params={"device": "wifi-1"}).status_code == 404


def test_minimisation_per_grant(world: World) -> None:
    w = world
    _classify_personal(w)
    grant = _grant(w)
    q = {"purpose": "AcademicResearch"}
    r = w.client.put(f"/v1/grants/{grant}/minimisation", headers=w.city.headers, json={"location_h3_res": 7})
    assert r.status_code == 404                                   # only the product's provider
    r = w.client.put(f"/v1/grants/{grant}/minimisation", headers=w.prov.headers,
                     json={"location_h3_res": 7, "k_anonymity": 8})
    assert r.status_code == 200 and r.json()["location_h3_res"] == 7

    exact = w.client.get("/v1/series", headers=w.prov.headers).json()[0]
    assert (exact["lat"], exact["lon"]) == (LAT, LON)
    coarse = w.client.get("/v1/series", headers=w.city.headers, params=q).json()[0]
    assert (coarse["lat"], coarse["lon"]) == pytest.approx(h3.cell_to_latlng(h3.latlng_to_cell(LAT, LON, 7)))
    assert (coarse["lat"], coarse["lon"]) != (LAT, LON)

    span = {"start": BASE.isoformat(), "end": (BASE + timedelta(hours=1)).isoformat(), **q}
    agg = w.client.get(f"/v1/series/{w.series_id}/aggregates", headers=w.city.headers, params=span).json()
    assert [b["count"] for b in agg["data"]] == [10] * 6         # minute 6 (5 readings) withheld: k = 8
    own = w.client.get(f"/v1/series/{w.series_id}/aggregates", headers=w.prov.headers, params=span).json()
    assert [b["count"] for b in own["data"]] == [10] * 6 + [5]

    r = w.client.put(f"/v1/grants/{grant}/minimisation", headers=w.prov.headers, json={"location_grid_m": 1000})
    grid = w.client.get("/v1/series", headers=w.city.headers, params=q).json()[0]
    assert abs(grid["lat"] - LAT) < 0.0046 and abs(grid["lon"] - LON) < 0.0088 and grid["lat"] != LAT
    again = w.client.get("/v1/series", headers=w.city.headers, params=q).json()[0]
    assert (again["lat"], again["lon"]) == (grid["lat"], grid["lon"])   # the same cell, every time


def test_erasure_gone_from_every_face_and_never_back(world: World) -> None:
    w = world
    span = {"start": BASE.isoformat(), "end": (BASE + timedelta(hours=1)).isoformat()}
    with psycopg.connect(w.url, autocommit=True) as conn:
        conn.execute("INSERT INTO anomalies (time, series_id, value, score, kind) VALUES (%s, %s, 1, 9, 'spike'),"
                     " (%s, %s, 1, 9, 'spike')", (BASE + timedelta(seconds=200), w.series_id,
                                                  BASE + timedelta(seconds=30), w.series_id))
        conn.execute("INSERT INTO dead_letters (received_at, org, topic, device, reason, detail, payload)"
                     " VALUES (%s, 'prov', 'lab/prov/wifi-1/up', 'wifi-1', 'out_of_bounds', 'x', '\\x00')",
                     (BASE + timedelta(seconds=160),))
        # the detectors' own flags count too
        inside, outside = conn.execute(
            "SELECT count(*) FILTER (WHERE time >= %(a)s AND time < %(b)s), count(*) FILTER (WHERE time < %(a)s"
            " OR time >= %(b)s) FROM anomalies", {"a": BASE + timedelta(seconds=150),
                                                   "b": BASE + timedelta(seconds=270)}).fetchone()
    assert inside >= 1 and outside >= 1
    body = {"device": "wifi-1", "start": (BASE + timedelta(seconds=150)).isoformat(),
            "end": (BASE + timedelta(seconds=270)).isoformat()}
    assert w.client.post("/v1/erasure", headers=w.city.headers, json=body).status_code == 404
    assert w.client.post("/v1/erasure", headers=w.ops.headers, json=body).status_code == 422   # names no org
    r = w.client.post("/v1/erasure", headers=w.prov.headers, json=body)
    assert r.status_code == 201, r.text
    receipt = r.json()
    # minute 2 loses 150..174 (5), minute 3 all 10, minute 4 240..264 (5)
    assert receipt["deleted"] == {"readings": 20, "anomalies": inside, "typed_readings": 0, "dead_letters": 1,
                                  "aggregates": 3, "export_cache": 0, "alarms": 0, "notifications": 0, "alarm_values": 0}
    assert receipt["reaggregated"] == 2 and receipt["actor"].startswith("prov/key-")
    assert receipt["series_ids"] == [w.series_id]

    # /v1 readings, aggregates (re-computed exactly), anomalies, exports: the range is gone
    readings = w.client.get(f"/v1/series/{w.series_id}/readings", headers=w.prov.headers, params=span).json()
    times = [datetime.fromisoformat(r["time"]) for r in readings["data"]]
    assert readings["count"] == 45
    assert not [t for t in times if BASE + timedelta(seconds=150) <= t < BASE + timedelta(seconds=270)]
    agg = w.client.get(f"/v1/series/{w.series_id}/aggregates", headers=w.prov.headers, params=span).json()
    per_minute = {}
    for r in readings["data"]:
        per_minute.setdefault(datetime.fromisoformat(r["time"]).replace(second=0), []).append(r["value"])
    assert [(datetime.fromisoformat(b["bucket"]), b["count"], b["mean"], b["min"], b["max"]) for b in agg["data"]] \
        == [(m, len(v), pytest.approx(sum(v) / len(v)), min(v), max(v)) for m, v in sorted(per_minute.items())]
    assert [b["count"] for b in agg["data"]] == [10, 10, 5, 5, 10, 5]
    anomalies = w.client.get("/v1/anomalies", headers=w.prov.headers, params=span).json()
    assert len(anomalies["data"]) == outside
    assert not [a for a in anomalies["data"]
                if BASE + timedelta(seconds=150) <= datetime.fromisoformat(a["time"]) < BASE + timedelta(seconds=270)]
    export = w.client.get("/v1/exports/readings", headers=w.prov.headers, params={**span, "series_id": w.series_id})
    assert len(export.text.splitlines()) == 1 + 45
    parquet = w.client.get("/v1/exports/readings", headers=w.prov.headers,
                           params={**span, "series_id": w.series_id, "format": "parquet"})
    import pyarrow.parquet as pq
    assert pq.read_table(io.BytesIO(parquet.content)).num_rows == 45

    # the receipt is kept: in the audit log and in the receipts
    audit = w.client.get("/v1/audit", headers=w.prov.headers, params={"action": "gdpr.erasure"}).json()
    assert audit[0]["detail"]["deleted"]["readings"] == 20
    assert [e["id"] for e in w.client.get("/v1/erasures", headers=w.prov.headers).json()] == [receipt["id"]]
    assert [e["id"] for e in w.client.get("/v1/erasures", headers=w.ops.headers).json()] == [receipt["id"]]

    # redelivered packs are duplicates; a new pack into the erased range is a dead letter `erased`
    again = w.pipeline.commit(w.messages[2:5])
    assert again.packs_duplicate == 3 and again.readings_stored == 0
    fresh = w.pipeline.commit([_pack(3, boot="boot-2"), _pack(20, boot="boot-2")])
    assert fresh.packs_stored == 1 and [d.reason for d in fresh.dead_letters] == ["erased"]
    after = w.client.get(f"/v1/series/{w.series_id}/readings", headers=w.prov.headers, params=span).json()
    assert after["count"] == 45 + 10

    # the operator erases on behalf of the provider, naming the org
    r = w.client.post("/v1/erasure", headers=w.ops.headers, json={
        "org": "prov", "series_ids": [w.series_id], "start": (BASE + timedelta(minutes=20)).isoformat(),
        "end": (BASE + timedelta(minutes=21)).isoformat()})
    assert r.status_code == 201 and r.json()["deleted"]["readings"] == 10 and r.json()["actor"].startswith("ops/")


def test_erasure_with_reduced_precision_and_purpose_through_a_grant(world: World) -> None:
    w = world
    _classify_personal(w)
    grant = _grant(w)
    w.client.put(f"/v1/grants/{grant}/minimisation", headers=w.prov.headers, json={"location_grid_m": 500})
    w.client.post("/v1/erasure", headers=w.prov.headers, json={
        "device": "wifi-1", "start": BASE.isoformat(), "end": (BASE + timedelta(minutes=3)).isoformat()})
    q = {"start": BASE.isoformat(), "end": (BASE + timedelta(hours=1)).isoformat(), "purpose": "AcademicResearch"}
    readings = w.client.get(f"/v1/series/{w.series_id}/readings", headers=w.city.headers, params=q).json()
    assert readings["count"] == 35
    export = w.client.get("/v1/exports/readings", headers=w.city.headers, params={**q, "series_id": w.series_id})
    assert export.status_code == 200 and len(export.text.splitlines()) == 36
    assert export.headers["data-classification"].startswith("personal")
    series = w.client.get("/v1/series", headers=w.city.headers, params=q).json()[0]
    assert series["lat"] != LAT and abs(series["lat"] - LAT) < 0.0023


def test_retention_per_series_and_the_dpia_report(world: World, tmp_path: Path) -> None:
    w = world
    old = NOW - timedelta(days=10)
    with psycopg.connect(w.url, autocommit=True) as conn:
        conn.execute("INSERT INTO readings (time, series_id, value)"
                     " SELECT %s + g * interval '1 minute', %s, g FROM generate_series(0, 9) g", (old, w.series_id))
    r = w.client.put(f"/v1/series/{w.series_id}/classification", headers=w.prov.headers,
                     json={"personal_data": "personal", "legal_basis": "Consent", "purpose": "AcademicResearch",
                           "retention_days": 7})
    assert r.status_code == 200 and r.json()["retention_days"] == 7
    w.pipeline.apply_retention(RetentionPolicy())        # what ingest runs periodically
    report = w.client.get("/v1/retention-report", headers=w.prov.headers).json()
    assert len(report) == 1 and report[0]["deleted"]["readings"] == 10 and report[0]["days"] == 7
    assert report[0]["series_id"] == w.series_id
    span = {"start": (old - timedelta(hours=1)).isoformat(), "end": NOW.isoformat()}
    assert w.client.get(f"/v1/series/{w.series_id}/readings", headers=w.prov.headers, params=span).json()["count"] \
        == 65                                            # the recent readings stay
    w.pipeline.apply_retention(RetentionPolicy())
    assert len(w.client.get("/v1/retention-report", headers=w.prov.headers).json()) == 1   # nothing more to delete
    assert w.client.get("/v1/retention-report", headers=w.city.headers).json() == []

    grant = _grant(w, "AcademicResearch")
    w.client.get(f"/v1/series/{w.series_id}/readings", headers=w.city.headers,
                 params={**span, "purpose": "AcademicResearch"})
    env = {**os.environ, "CITYLAB_DATABASE_URL": w.url, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "citylab", "gdpr", "report", "--org", "prov", "--out",
                           str(tmp_path)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    by_hand = subprocess.run([sys.executable, "-m", "citylab", "db", "retention"], env=env, capture_output=True,
                             text=True, timeout=120)
    assert by_hand.returncode == 0 and "per-series retention deleted rows of 0 series" in by_hand.stdout, by_hand.stderr
    facts = json.loads((tmp_path / "gdpr-prov.json").read_text())
    assert [s["id"] for s in facts["series"]] == [w.series_id]
    assert facts["series"][0]["legal_basis"] == "Consent" and facts["series"][0]["retention_days"] == 7
    assert [(g["id"], g["consumer"], g["purpose"]) for g in facts["grants"]] == [(grant, "city", "AcademicResearch")]
    assert any(r["reader"] == "city" and r["rows"] == 65 for r in facts["reads"]), facts["reads"]
    assert len(facts["retention_runs"]) == 1
    markdown = (tmp_path / "gdpr-prov.md").read_text()
    assert "| " + str(w.series_id) + " | wifi-1 | traffic_count | personal | Consent | AcademicResearch |" in markdown
    assert "| city | active | AcademicResearch |" in markdown


def test_personal_data_is_never_open_data(world: World) -> None:
    w = world
    _classify_personal(w)
    r = w.client.patch(f"/v1/products/{w.product_id}", headers=w.prov.headers, json={"open": True})
    assert r.status_code == 422 and "personal data" in r.json()["detail"]
    r = w.client.post("/v1/products", headers=w.prov.headers, json={
        "title": "Open counts", "licence": "CC-BY-4.0", "series_ids": [w.series_id], "open": True})
    assert r.status_code == 422
    # the other way round: data of an open product cannot be classified personal
    w.client.put(f"/v1/products/{w.product_id}/classification", headers=w.prov.headers, json={})
    w.client.put("/v1/devices/wifi-1/classification", headers=w.prov.headers, json={})
    opened = w.client.post("/v1/products", headers=w.prov.headers, json={
        "title": "Open counts", "licence": "CC-BY-4.0", "series_ids": [w.series_id], "open": True})
    assert opened.status_code == 201, opened.text
    r = w.client.put(f"/v1/series/{w.series_id}/classification", headers=w.prov.headers,
                     json={"personal_data": "personal"})
    assert r.status_code == 422
    assert w.client.get("/v1/series").json()[0]["privacy"]["personal_data"] == "none"   # read without a key


def test_standard_faces_after_erasure_with_purpose_and_precision(world: World) -> None:
    """SensorThings and NGSI-LD serve what /v1 serves: no more after erasure, within the purpose, coarse."""
    w = world
    _classify_personal(w)
    grant = _grant(w)
    w.client.put(f"/v1/grants/{grant}/minimisation", headers=w.prov.headers, json={"location_h3_res": 6})
    w.client.post("/v1/erasure", headers=w.prov.headers, json={
        "device": "wifi-1", "start": BASE.isoformat(), "end": (BASE + timedelta(minutes=3)).isoformat()})
    observations = f"/sta/v1.1/Datastreams({w.series_id})/Observations"
    q = {"$count": "true", "$top": "1000"}
    assert w.client.get(observations, headers=w.city.headers, params=q).status_code == 403
    sta = w.client.get(observations, headers={**w.city.headers, "Data-Purpose": "AcademicResearch"}, params=q)
    assert sta.status_code == 200, sta.text
    assert sta.json()["@iot.count"] == 35
    assert not [o for o in sta.json()["value"]
                if datetime.fromisoformat(o["phenomenonTime"].replace("Z", "+00:00")) < BASE + timedelta(minutes=3)]

    cell = pytest.approx(h3.cell_to_latlng(h3.latlng_to_cell(LAT, LON, 6)))
    things = w.client.get("/sta/v1.1/Things", headers=w.city.headers,
                          params={"$expand": "Locations"}).json()["value"]
    lon6, lat6 = things[0]["Locations"][0]["location"]["coordinates"]
    assert (lat6, lon6) == cell
    locations = w.client.get("/sta/v1.1/Locations", headers=w.city.headers).json()["value"]
    assert (locations[0]["location"]["coordinates"][1], locations[0]["location"]["coordinates"][0]) == cell
    features = w.client.get("/sta/v1.1/FeaturesOfInterest", headers=w.city.headers).json()["value"]
    assert (features[0]["feature"]["coordinates"][1], features[0]["feature"]["coordinates"][0]) == cell
    own = w.client.get("/sta/v1.1/Locations", headers=w.prov.headers).json()["value"]
    assert own[0]["location"]["coordinates"] == [LON, LAT]

    report = w.client.get("/v1/access-report", headers=w.prov.headers, params={"device": "wifi-1"}).json()["reads"]
    assert [(r["face"], r["action"], r["rows"], r["stated_purpose"]) for r in report if r["reader"] == "city"] == [
        ("SensorThings", "refused.sta.read.observations", 0, None), ("SensorThings", "sta.read.observations", 35, None)]

    entity = "urn:ngsi-ld:TrafficFlowObserved:prov:wifi-1"
    flow = {"type": "https://smartdatamodels.org/dataModel.Transportation/TrafficFlowObserved"}
    listing = w.client.get("/ngsi-ld/v1/entities", headers=w.city.headers, params=flow)
    assert listing.status_code == 200 and listing.json() == []            # outside any granted purpose
    listing = w.client.get("/ngsi-ld/v1/entities", headers={**w.city.headers, "Data-Purpose": "AcademicResearch"},
                           params=flow)
    assert [e["id"] for e in listing.json()] == [entity]
    lon, lat = listing.json()[0]["location"]["value"]["coordinates"]
    assert (lat, lon) == pytest.approx(h3.cell_to_latlng(h3.latlng_to_cell(LAT, LON, 6)))
    own = w.client.get("/ngsi-ld/v1/entities", headers=w.prov.headers, params=flow)
    assert own.json()[0]["location"]["value"]["coordinates"] == [LON, LAT]
    single = w.client.get(f"/ngsi-ld/v1/entities/{entity}", headers=w.city.headers)
    assert single.status_code == 404
    single = w.client.get(f"/ngsi-ld/v1/entities/{entity}", headers={**w.city.headers, "Data-Purpose": "AcademicResearch"})
    assert single.status_code == 200 and single.json()["location"] == listing.json()[0]["location"]


def _box(lat: float, lon: float, d: float) -> str:
    return (f"geography'POLYGON(({lon - d} {lat - d}, {lon + d} {lat - d}, {lon + d} {lat + d}, {lon - d} {lat + d},"
            f" {lon - d} {lat - d}))'")


def test_ngsild_temporal_and_sta_geo_filters_after_erasure_with_k_anonymity_and_precision(world: World) -> None:
    """NGSI-LD's temporal API serves no erased reading, withholds the periods below the grant's k and
    keeps to its purpose; its reads are in the access report. A SensorThings geo $filter never
    selects by the exact point of a location the grant coarsens."""
    w = world
    _classify_personal(w)
    grant = _grant(w)
    r = w.client.put(f"/v1/grants/{grant}/minimisation", headers=w.prov.headers,
                     json={"location_h3_res": 6, "k_anonymity": 10})
    assert r.status_code == 200, r.text
    assert w.client.post("/v1/erasure", headers=w.prov.headers, json={
        "device": "wifi-1", "start": BASE.isoformat(), "end": (BASE + timedelta(minutes=3)).isoformat()}
    ).status_code == 201
    url = "/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:TrafficFlowObserved:prov:wifi-1"
    research = {**w.city.headers, "Data-Purpose": "AcademicResearch"}
    assert w.client.get(url, headers=w.city.headers).status_code == 404          # outside the grant's purpose
    body = w.client.get(url, headers=research, params={"options": "temporalValues"}).json()
    (values,) = [v["values"] for k, v in body.items() if k.endswith("intensity")]
    times = [datetime.fromisoformat(t.replace("Z", "+00:00")) for _, t in values]
    assert len(values) == 35 and min(times) == BASE + timedelta(minutes=3)
    lon, lat = body["location"]["value"]["coordinates"]
    assert (lat, lon) == pytest.approx(h3.cell_to_latlng(h3.latlng_to_cell(LAT, LON, 6)))
    span = {"timerel": "between", "timeAt": BASE.isoformat(), "endTimeAt": (BASE + timedelta(hours=1)).isoformat(),
            "options": "aggregatedValues", "aggrMethods": "totalCount", "aggrPeriodDuration": "PT1M"}
    aggregated = w.client.get(url, headers=research, params=span).json()
    (counts,) = [v["totalCount"] for k, v in aggregated.items() if k.endswith("intensity")]
    assert [c for c, _, _ in counts] == [10, 10, 10]     # minutes 3-5; minute 6 (5 readings) is below k
    own = w.client.get(url, headers=w.prov.headers, params=span).json()
    (counts,) = [v["totalCount"] for k, v in own.items() if k.endswith("intensity")]
    assert [c for c, _, _ in counts] == [10, 10, 10, 5]  # the provider's own data: no threshold
    assert w.client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:TrafficFlowObserved:prov:wifi-1",
                        headers=research).status_code == 200
    report = w.client.get("/v1/access-report", headers=w.prov.headers, params={"device": "wifi-1"}).json()["reads"]
    assert [(r["face"], r["action"], r["rows"], r["grant_id"], r["purpose"]) for r in report
            if r["reader"] == "city"] == [
        ("NGSI-LD", "refused.ngsild.read", 0, grant, "ResearchAndDevelopment"),
        ("NGSI-LD", "ngsild.read.temporal", 35, grant, "ResearchAndDevelopment"),
        ("NGSI-LD", "ngsild.read.temporal", 3, grant, "ResearchAndDevelopment"),
        ("NGSI-LD", "ngsild.read.entities", 1, grant, "ResearchAndDevelopment")]

    # erasing the newest minute: the entity's current value and its history are the reading before it
    assert w.client.post("/v1/erasure", headers=w.prov.headers, json={
        "device": "wifi-1", "start": (BASE + timedelta(minutes=6)).isoformat(),
        "end": (BASE + timedelta(minutes=7)).isoformat()}).status_code == 201
    entity = w.client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:TrafficFlowObserved:prov:wifi-1", headers=research).json()
    (current,) = [v for k, v in entity.items() if k.endswith("intensity")]
    newest = w.client.get(url, headers=research, params={"lastN": 1, "options": "temporalValues"}).json()
    (last,) = [v["values"] for k, v in newest.items() if k.endswith("intensity")]
    assert current["value"] == 509.0 and last == [[509.0, current["observedAt"]]]   # minute 5, its 10th reading

    near = {"type": "https://smartdatamodels.org/dataModel.Transportation/TrafficFlowObserved",
            "georel": "near;maxDistance==50", "geometry": "Point", "coordinates": f"[{LON},{LAT}]"}
    assert [e["id"] for e in w.client.get("/ngsi-ld/v1/entities", headers=w.prov.headers, params=near).json()] == [
        "urn:ngsi-ld:TrafficFlowObserved:prov:wifi-1"]
    assert w.client.get("/ngsi-ld/v1/entities", headers=research, params=near).json() == []   # not by the exact point

    exact = _box(LAT, LON, 0.0005)
    for path, q in (("/sta/v1.1/Locations", f"st_within(location, {exact})"),
                    ("/sta/v1.1/Things", f"geo.intersects(Locations/location, {exact})"),
                    ("/sta/v1.1/FeaturesOfInterest", f"geo.distance(feature, geography'POINT({LON} {LAT})') lt 0.001")):
        mine = w.client.get(path, headers=w.prov.headers, params={"$filter": q}).json()["value"]
        theirs = w.client.get(path, headers=w.city.headers, params={"$filter": q}).json()
        assert len(mine) == 1 and theirs["value"] == [], (path, theirs)
        # the negation holds whatever the box: it tells nothing about where the point is
        far = q.replace(exact, _box(LAT + 1, LON + 1, 0.0005)).replace("lt 0.001", "gt 0.001")
        assert (w.client.get(path, headers=w.city.headers, params={"$filter": f"not ({q})"}).json()["value"]
                == w.client.get(path, headers=w.city.headers, params={"$filter": f"not ({far})"}).json()["value"])


def test_erasure_deletes_the_alarms_of_the_range(world: World) -> None:
    w = world
    with psycopg.connect(w.url, autocommit=True) as conn:
        rule = create_rule(conn, org="prov", name="busy", series_id=w.series_id, on=250.0, off=200.0)
        channel = create_channel(conn, org="prov", kind="webhook", target="http://127.0.0.1:9/h", secret="s")
        opened, cleared = (conn.execute(
            "INSERT INTO alarms (org, rule_id, series_id, state, opened_at, open_value, cleared_at, clear_value)"
            " VALUES ('prov', %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (rule.id, w.series_id, state, at, value, cleared_at, clear)).fetchone()[0]
            for state, at, value, cleared_at, clear in (
                ("open", BASE + timedelta(minutes=1), 301.0, None, None),
                ("cleared", BASE - timedelta(minutes=30), 260.0, BASE + timedelta(minutes=2), 101.0)))
        for alarm, state in ((opened, "open"), (cleared, "cleared")):
            conn.execute("INSERT INTO notifications (channel_id, alarm_id, state, payload) VALUES (%s, %s, %s, %s)",
                         (channel.id, alarm, state, json.dumps({"open_value": 1.0, "clear_value": 101.0})))
    r = w.client.post("/v1/erasure", headers=w.prov.headers, json={
        "device": "wifi-1", "start": BASE.isoformat(), "end": (BASE + timedelta(minutes=3)).isoformat()})
    assert r.status_code == 201, r.text
    deleted = r.json()["deleted"]
    assert (deleted["alarms"], deleted["notifications"], deleted["alarm_values"]) == (1, 1, 1)
    with psycopg.connect(w.url) as conn:
        alarms = conn.execute("SELECT id, open_value, clear_value FROM alarms").fetchall()
        payloads = conn.execute("SELECT alarm_id, payload FROM notifications").fetchall()
        receipts = conn.execute("SELECT deleted FROM erasures").fetchall()
    assert alarms == [(cleared, 260.0, None)]              # opened before the range: its opening value stays
    assert payloads == [(cleared, {"open_value": 1.0, "clear_value": None})]
    assert receipts[0][0]["alarms"] == 1                  # in the receipt kept with the erasure
    listed = w.client.get("/v1/alarms", headers=w.prov.headers)
    assert listed.status_code == 200 and [a["clear_value"] for a in listed.json()] == [None]
