"""The DCAT-AP 3 catalogue at /catalog: formats, content, stable IRIs, and SHACL validation
with pyshacl against the DCAT-AP 3.0.1 shapes and range shapes and the DCAT-AP-NO 2.0 shapes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from catalog_lab import Market, seed_market
from fastapi.testclient import TestClient
from pyshacl import validate
from rdflib import Graph, Literal, Namespace, URIRef
from rdflib.namespace import DCAT, DCTERMS, FOAF, RDF, SH

from api import create_app
from citylab.settings import Settings

SHAPES = Path(__file__).resolve().parents[3] / "shared" / "data" / "dcat-ap"
BASE = "https://data.example.no/lab"
DQV = Namespace("http://www.w3.org/ns/dqv#")


@pytest.fixture
def market(database: str) -> Market:
    return seed_market(database)


@pytest.fixture
def client(market: Market) -> Iterator[TestClient]:
    settings = Settings(database_url=market.url, public_base_url=BASE)
    with TestClient(create_app(settings)) as client:
        yield client


def _graph(client: TestClient, path: str = "/catalog", **headers: str) -> Graph:
    r = client.get(path, headers=headers)
    assert r.status_code == 200, r.text
    fmt = {"text/turtle": "turtle", "application/ld+json": "json-ld", "application/rdf+xml": "xml",
           "application/n-triples": "nt"}[r.headers["content-type"].split(";")[0]]
    return Graph().parse(data=r.text, format=fmt)


def _violations(data: Graph, *shape_files: str) -> list[str]:
    shapes = Graph()
    for name in shape_files:
        shapes.parse(SHAPES / name, format="turtle")
    _, report, _ = validate(data, shacl_graph=shapes, ont_graph=None, inference="rdfs", abort_on_first=False,
                            allow_warnings=True, advanced=True)
    out = []
    # The report's own results (nested sh:detail results of sh:node carry the inner shape's severity).
    for result in report.objects(report.value(predicate=RDF.type, object=SH.ValidationReport), SH.result):
        if report.value(result, SH.resultSeverity) == SH.Violation:
            out.append(f"{report.value(result, SH.focusNode)} {report.value(result, SH.resultPath)}: "
                       f"{report.value(result, SH.resultMessage)}")
    return out


@pytest.mark.slow
def test_catalogue_validates_against_dcat_ap_3_and_dcat_ap_no(client: TestClient) -> None:
    data = _graph(client)
    assert "\n".join(_violations(data, "shapes.ttl", "range.ttl")) == ""
    assert "\n".join(_violations(data, "dcat-ap-no-2.00-shapes.ttl")) == ""


@pytest.mark.parametrize(("path", "accept", "media"), [
    ("/catalog", None, "text/turtle"),
    ("/catalog", "*/*", "text/turtle"),
    ("/catalog", "application/ld+json", "application/ld+json"),
    ("/catalog", "application/rdf+xml", "application/rdf+xml"),
    ("/catalog", "text/html;q=0.9, application/rdf+xml;q=0.5, text/turtle;q=0.8", "text/turtle"),
    ("/catalog", "application/ld+json;q=0.2, application/n-triples", "application/n-triples"),
    ("/catalog.ttl", "application/ld+json", "text/turtle"),
    ("/catalog.jsonld", None, "application/ld+json"),
    ("/catalog.rdf", None, "application/rdf+xml"),
    ("/catalog.nt", None, "application/n-triples"),
])
def test_every_format_carries_the_same_graph(client: TestClient, path: str, accept: str | None, media: str) -> None:
    headers = {"Accept": accept} if accept else {}
    r = client.get(path, headers=headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith(media)
    reference = _graph(client, "/catalog.nt")
    graph = _graph(client, path, **headers)
    assert len(graph) == len(reference)
    assert set(graph.subjects(RDF.type, DCAT.Dataset)) == set(reference.subjects(RDF.type, DCAT.Dataset))


def test_unacceptable_format_is_406_and_unknown_extension_404(client: TestClient) -> None:
    r = client.get("/catalog", headers={"Accept": "image/png"})
    assert r.status_code == 406 and "text/turtle" in r.json()["detail"]
    assert client.get("/catalog.docx").status_code == 404


def test_datasets_say_what_the_issue_lists(client: TestClient, market: Market) -> None:
    g = _graph(client)
    catalog = URIRef(f"{BASE}/catalog")
    datasets = set(g.objects(catalog, DCAT.dataset))
    open_ds, priced_ds, noise_ds = (URIRef(f"{BASE}/catalog/datasets/{i}")
                                    for i in (market.open_product, market.priced_product, market.noise_product))
    assert datasets == {open_ds, priced_ds, noise_ds}          # the unlisted product is not in the catalogue
    assert (catalog, DCTERMS.publisher, URIRef(f"{BASE}/catalog/organisations/stavanger")) in g
    assert g.value(catalog, DCAT.contactPoint) is not None
    # titles and descriptions with language tags
    titles = {(t.language, str(t)) for t in g.objects(open_ds, DCTERMS.title)}
    assert titles == {("en", "Air quality in central Stavanger"), ("nb", "Luftkvalitet i Stavanger sentrum")}
    assert {d.language for d in g.objects(open_ds, DCTERMS.description)} == {"en", "nb"}
    # publisher: the providing organisation with its organisation number; contact point with e-mail
    publisher = g.value(open_ds, DCTERMS.publisher)
    assert (publisher, RDF.type, FOAF.Agent) in g and str(g.value(publisher, FOAF.name)) == "Luftkvalitet AS"
    assert str(g.value(publisher, DCTERMS.identifier)) == "912345678"
    assert g.value(g.value(priced_ds, DCTERMS.publisher), DCTERMS.identifier) is None   # none given
    contact = g.value(open_ds, DCAT.contactPoint)
    assert str(g.value(contact, URIRef("http://www.w3.org/2006/vcard/ns#hasEmail"))) == "mailto:post@luft.example"
    # keywords, EU data themes from the vocabulary table
    assert Literal("air quality", lang="en") in set(g.objects(open_ds, DCAT.keyword))
    eu = "http://publications.europa.eu/resource/authority/"
    assert set(g.objects(open_ds, DCAT.theme)) == {URIRef(eu + "data-theme/ENVI")}
    assert set(g.objects(priced_ds, DCAT.theme)) == {URIRef(eu + "data-theme/ENER")}
    # spatial coverage from the devices' places, temporal from the data, frequency from the intervals
    bbox = str(g.value(g.value(open_ds, DCTERMS.spatial), DCAT.bbox))
    assert bbox.startswith("POLYGON((5.7189 58.9633,5.7331 58.9633")
    assert g.value(noise_ds, DCTERMS.spatial) is None                      # the noise sensor has no place
    period = g.value(open_ds, DCTERMS.temporal)
    assert g.value(period, DCAT.startDate).toPython() < g.value(period, DCAT.endDate).toPython()
    assert g.value(open_ds, DCTERMS.accrualPeriodicity) == URIRef(eu + "frequency/UPDATE_CONT")
    assert g.value(open_ds, DCAT.temporalResolution).toPython() == timedelta(seconds=60)
    assert g.value(priced_ds, DCAT.temporalResolution).toPython() == timedelta(seconds=900)
    # access rights and licences from the EU authority tables
    assert g.value(open_ds, DCTERMS.accessRights) == URIRef(eu + "access-right/PUBLIC")
    assert g.value(priced_ds, DCTERMS.accessRights) == URIRef(eu + "access-right/RESTRICTED")
    csv = URIRef(f"{open_ds}/csv")
    assert g.value(csv, DCTERMS.license) == URIRef(eu + "licence/NLOD_2_0")
    # the quality report as measurements
    values = {str(g.value(m, DQV.isMeasurementOf)).rsplit("/", 1)[1]: g.value(m, DQV.value).toPython()
              for m in g.objects(open_ds, DQV.hasQualityMeasurement)}
    assert values["completeness-7d"] > 0.99 and 0.8 < values["uptime-30d"] <= 1.0   # 6 or 7 clock hours
    assert values["anomaly-rate-7d"] == 0.0


def test_distributions_and_data_services(client: TestClient, market: Market) -> None:
    g = _graph(client)
    dataset = URIRef(f"{BASE}/catalog/datasets/{market.open_product}")
    distributions = set(g.objects(dataset, DCAT.distribution))
    assert distributions == {URIRef(f"{dataset}/csv"), URIRef(f"{dataset}/parquet")}
    csv, parquet = URIRef(f"{dataset}/csv"), URIRef(f"{dataset}/parquet")
    assert str(g.value(csv, DCAT.mediaType)).endswith("/text/csv")
    assert str(g.value(parquet, DCAT.mediaType)).endswith("/application/vnd.apache.parquet")
    ids = "&".join(f"series_id={s}" for s in market.open_series)
    assert str(g.value(csv, DCAT.accessURL)) == f"{BASE}/v1/exports/readings?{ids}&format=csv"
    assert "µg/m³" in str(g.value(csv, DCTERMS.description))        # units documented, from protocol.units
    service = URIRef(f"{BASE}/catalog/services/v1")
    assert (service, RDF.type, DCAT.DataService) in g
    assert str(g.value(service, DCAT.endpointURL)) == f"{BASE}/v1"
    assert str(g.value(service, DCAT.endpointDescription)) == f"{BASE}/openapi.json"
    assert dataset in set(g.objects(service, DCAT.servesDataset))
    assert g.value(csv, DCAT.accessService) == service
    # the /v1 document it points to is really served
    assert client.get("/openapi.json").json()["openapi"].startswith("3.")


def test_iris_are_absolute_stable_and_never_from_the_host_header(client: TestClient) -> None:
    g1 = _graph(client, "/catalog.nt", Host="evil.example")
    g2 = _graph(client, "/catalog.nt", **{"X-Forwarded-Host": "other.example"})
    main = [DCAT.Catalog, DCAT.Dataset, DCAT.Distribution, DCAT.DataService, FOAF.Agent, DQV.QualityMeasurement]
    for graph in (g1, g2):
        for cls in main:
            for node in graph.subjects(RDF.type, cls):
                assert isinstance(node, URIRef) and str(node).startswith(BASE + "/"), node
        assert not any("evil.example" in str(t) or "other.example" in str(t) for triple in graph for t in triple)
    assert set(g1.subjects(RDF.type, DCAT.Dataset)) == set(g2.subjects(RDF.type, DCAT.Dataset))


def test_each_entity_is_dereferenceable(client: TestClient, market: Market) -> None:
    iri = f"{BASE}/catalog/datasets/{market.open_product}"
    g = _graph(client, f"/catalog/datasets/{market.open_product}.ttl")
    assert (URIRef(iri), RDF.type, DCAT.Dataset) in g
    assert (URIRef(iri + "/csv"), RDF.type, DCAT.Distribution) in g
    assert (URIRef(f"{BASE}/catalog/datasets/{market.priced_product}"), None, None) not in g
    assert client.get("/catalog/datasets/999").status_code == 404
    jsonld = client.get(f"/catalog/datasets/{market.open_product}", headers={"Accept": "application/ld+json"})
    assert jsonld.headers["content-type"].startswith("application/ld+json")


def test_json_ld_expands_with_a_standard_processor(client: TestClient, market: Market) -> None:
    from pyld import jsonld

    expanded = jsonld.expand(client.get("/catalog.jsonld").json())
    datasets = [n for n in expanded if "http://www.w3.org/ns/dcat#Dataset" in n.get("@type", [])]
    assert {n["@id"] for n in datasets} == {f"{BASE}/catalog/datasets/{i}" for i in
                                           (market.open_product, market.priced_product, market.noise_product)}


def test_head_and_content_location(client: TestClient) -> None:
    head = client.head("/catalog", headers={"Accept": "application/rdf+xml"})
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"].startswith("application/rdf+xml")
    assert head.headers["content-location"] == f"{BASE}/catalog.rdf"
    assert int(head.headers["content-length"]) > 1000
    assert client.get("/catalog", headers={"Accept": "text/n3"}).headers["content-location"] == f"{BASE}/catalog.ttl"
    assert client.get("/catalog.jsonld").headers["vary"] == "Accept"


def test_standard_faces_are_data_services_where_the_app_serves_them() -> None:
    from api.catalog.content import served_faces

    assert [f.name for f in served_faces({"/v1/series", "/health"})] == ["v1"]
    faces = served_faces({"/v1/series", "/v1.1/Things", "/ngsi-ld/v1/entities"})
    assert [(f.name, f.path) for f in faces] == [("v1", "/v1"), ("sensorthings", "/v1.1"), ("ngsi-ld", "/ngsi-ld/v1")]
    assert [f.path for f in served_faces({"/sta/v1.1/Things", "/v1.1/Things"}) if f.name == "sensorthings"] == ["/sta/v1.1"]
