"""`citylab catalog harvest URL` across two labs: lab A harvests lab B's catalogue over real
HTTP; B's datasets appear in A's catalogue as external datasets (in B's catalogue as a
sub-catalogue, with catalogue records linking to the source), A's catalogue still validates,
and a second harvest replaces the first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

import stack
from catalog_lab import Market, seed_market
from fastapi.testclient import TestClient
from rdflib import Graph, URIRef
from rdflib.namespace import DCAT, DCTERMS, FOAF, RDF, RDFS
from test_catalog import _violations

from api import create_app
from citylab.embedded import free_port
from citylab.settings import Settings

pytestmark = pytest.mark.slow
BASE_A = "https://data.lab-a.example"


@pytest.fixture
def second_database(pg_server) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.url_for("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE citylab_template')
    yield pg_server.url_for(name)
    with psycopg.connect(pg_server.url_for("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def serving(settings: Settings, port: int) -> Iterator[str]:
    """The app of `settings` on a real uvicorn at `port` (the port its public base URL names)."""
    with stack.serving(create_app(settings), port=port) as url:
        yield url


def _citylab(database_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CITYLAB_DATABASE_URL": database_url}
    return subprocess.run([sys.executable, "-m", "citylab", "catalog", *args], env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def two_labs(database: str, second_database: str) -> Iterator[tuple[Market, Market, str]]:
    a = seed_market(database)
    b = seed_market(second_database, prefix="b-")
    port = free_port()
    settings_b = Settings(database_url=b.url, public_base_url=f"http://127.0.0.1:{port}",
                          catalog_title="Hamar lab", catalog_publisher="b-stavanger")
    with serving(settings_b, port) as url:
        yield a, b, url


def test_a_lab_lists_another_labs_datasets_as_external(two_labs) -> None:
    a, b, url_b = two_labs
    done = _citylab(a.url, "harvest", f"{url_b}/catalog", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    b_datasets = {f"{url_b}/catalog/datasets/{i}" for i in (b.open_product, b.priced_product, b.noise_product)}
    assert {d["iri"] for d in report["datasets"]} == b_datasets
    assert report["catalog"] == f"{url_b}/catalog" and report["title"] == "Hamar lab"
    listed = json.loads(_citylab(a.url, "external", "--json").stdout)
    assert {d["iri"] for d in listed} == b_datasets
    assert all(d["external"] and d["source"] == f"{url_b}/catalog" for d in listed)
    assert {d["publisher"] for d in listed} == {"Luftkvalitet AS", "Energimåling AS"}

    with TestClient(create_app(Settings(database_url=a.url, public_base_url=BASE_A))) as client:
        g = Graph().parse(data=client.get("/catalog.ttl").text, format="turtle")
    ours, theirs = URIRef(f"{BASE_A}/catalog"), URIRef(f"{url_b}/catalog")
    # A's own datasets stay A's; B's are in B's catalogue, a sub-catalogue of A's
    own = set(g.objects(ours, DCAT.dataset))
    assert all(str(d).startswith(BASE_A) for d in own) and len(own) == 3
    assert (ours, DCAT.catalog, theirs) in g and (theirs, RDF.type, DCAT.Catalog) in g
    assert {str(d) for d in g.objects(theirs, DCAT.dataset)} == b_datasets
    # each with a catalogue record marking it harvested, linking to its source
    records = {g.value(r, FOAF.primaryTopic): r for r in g.objects(ours, DCAT.record)}
    assert {str(d) for d in records} == b_datasets
    for dataset, record in records.items():
        assert g.value(record, RDFS.seeAlso) == URIRef(f"{url_b}/catalog")
        assert str(g.value(record, DCTERMS.title)).startswith("Harvested: ")
    # B's description came along: publisher with organisation number, distributions with B's URLs
    open_b = URIRef(f"{url_b}/catalog/datasets/{b.open_product}")
    assert str(g.value(g.value(open_b, DCTERMS.publisher), DCTERMS.identifier)) == "912345678"
    assert str(g.value(URIRef(f"{open_b}/csv"), DCAT.accessURL)).startswith(f"{url_b}/v1/exports/readings?")
    assert _violations(g, "shapes.ttl", "range.ttl") == []
    assert _violations(g, "dcat-ap-no-2.00-shapes.ttl") == []

    # B harvests A back (A's catalogue now holds B's datasets): B takes only A's own
    with serving(Settings(database_url=a.url, public_base_url=f"http://127.0.0.1:{(port := free_port())}"),
                 port) as url_a:
        back = json.loads(_citylab(b.url, "harvest", f"{url_a}/catalog.rdf", "--json").stdout)
    assert {d["iri"] for d in back["datasets"]} == {f"{url_a}/catalog/datasets/{i}"
                                                    for i in (a.open_product, a.priced_product, a.noise_product)}


def test_harvesting_again_replaces_and_bad_sources_are_clear_errors(two_labs) -> None:
    a, b, url_b = two_labs
    assert _citylab(a.url, "harvest", f"{url_b}/catalog.jsonld").returncode == 0
    with psycopg.connect(b.url, autocommit=True) as conn:     # B unlists a product
        conn.execute("UPDATE data_products SET listed = false WHERE id = %s", (b.noise_product,))
    done = _citylab(a.url, "harvest", f"{url_b}/catalog.jsonld")
    assert done.returncode == 0 and "harvested 2 datasets of 'Hamar lab'" in done.stdout
    assert len(json.loads(_citylab(a.url, "external", "--json").stdout)) == 2
    for source, message in ((f"{url_b}/nothing-here", "404"), (f"{url_b}/health", "holds no DCAT dataset"),
                            ("ftp://example.org/catalog", "not an http(s) URL"),
                            (f"{url_b}/console/static/index.html", "not RDF")):
        failed = _citylab(a.url, "harvest", source)
        assert failed.returncode == 1 and message in failed.stderr, (source, failed.stderr)
    with psycopg.connect(a.url) as conn:
        assert conn.execute("SELECT count(*) FROM external_datasets").fetchone()[0] == 2


PORTAL = """
@prefix dcat: <http://www.w3.org/ns/dcat#> . @prefix dct: <http://purl.org/dc/terms/> .
@prefix foaf: <http://xmlns.com/foaf/0.1/> .
<https://portal.example/catalog> a dcat:Catalog ; dct:title "Portal"@en ; dct:description "A portal."@en ;
    dct:publisher <https://portal.example/org> ; dcat:dataset <https://portal.example/ds/1> ;
    dcat:catalog <https://other.example/catalog> .
<https://portal.example/org> a foaf:Agent ; foaf:name "Hamar kommune" .
<https://portal.example/ds/1> a dcat:Dataset ; dct:title "Bysykkel"@nb, "City bikes"@en ;
    dct:description "Trips."@en ; dct:publisher <https://portal.example/org> ;
    dcat:distribution [ a dcat:Distribution ; dcat:accessURL <https://portal.example/ds/1.csv> ] .
<https://other.example/catalog> a dcat:Catalog ; dcat:dataset <https://other.example/ds/9> .
<https://other.example/ds/9> a dcat:Dataset ; dct:title "Someone else's"@en .
"""


def test_a_third_party_catalogue_with_blank_nodes_and_sub_catalogues() -> None:
    from api.catalog.harvest import harvested

    harvest = harvested(Graph().parse(data=PORTAL, format="turtle"), "https://portal.example/catalog.ttl")
    assert harvest.catalog_iri == "https://portal.example/catalog" and harvest.title == "Portal"
    assert [d.iri for d in harvest.datasets] == ["https://portal.example/ds/1"]   # not the sub-catalogue's
    (dataset,) = harvest.datasets
    assert dataset.title == "City bikes" and dataset.publisher == "Hamar kommune"
    g = Graph().parse(data=dataset.turtle, format="turtle")
    distribution = g.value(URIRef(dataset.iri), DCAT.distribution)
    assert g.value(distribution, DCAT.accessURL) == URIRef("https://portal.example/ds/1.csv")
    assert (URIRef("https://portal.example/org"), FOAF.name, None) in g
    catalog = Graph().parse(data=harvest.catalog_turtle, format="turtle")
    assert (URIRef(harvest.catalog_iri), DCAT.dataset, None) not in catalog
    assert (URIRef(harvest.catalog_iri), DCAT.catalog, None) not in catalog
    assert (URIRef("https://other.example/ds/9"), None, None) not in catalog
