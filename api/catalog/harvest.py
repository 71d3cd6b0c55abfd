"""Harvesting another catalogue: read a DCAT-AP document (another lab's /catalog, or any
portal's), and keep each of its datasets' descriptions as an external dataset of ours.

    fetch_catalog(url)      the document as an rdflib graph (Turtle, RDF/XML, JSON-LD, N-Triples)
    harvested(graph, url)   its catalogue and datasets, each dataset with the triples that
                            describe it (distributions, publisher, contact point, themes, ...)

The datasets are the `dcat:dataset`s of the document's top catalogue(s) (those no other
catalogue names as a `dcat:catalog`), or every `dcat:Dataset` when it has no catalogue.
A dataset the other lab harvested itself (in one of its sub-catalogues) is not taken:
harvest that lab's source instead.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass

from rdflib import Graph, Literal, URIRef
from rdflib.namespace import DCAT, DCTERMS, FOAF, RDF
from rdflib.term import Node

__all__ = ["Harvest", "HarvestError", "HarvestedDataset", "fetch_catalog", "harvested"]

ACCEPT = ("text/turtle, application/rdf+xml;q=0.9, application/ld+json;q=0.8, application/n-triples;q=0.7")
MAX_BYTES = 64 * 1024 * 1024
_PARSERS = {"text/turtle": "turtle", "application/x-turtle": "turtle", "application/rdf+xml": "xml",
            "application/xml": "xml", "text/xml": "xml", "application/ld+json": "json-ld",
            "application/json": "json-ld", "application/n-triples": "nt", "text/plain": "nt"}
_EXTENSIONS = {".ttl": "turtle", ".rdf": "xml", ".xml": "xml", ".jsonld": "json-ld", ".json": "json-ld",
               ".nt": "nt"}
# Links that lead away from a dataset's own description.
_LEAVING = (DCAT.catalog, DCAT.record, DCAT.dataset, DCAT.service)


class HarvestError(Exception):
    """The source could not be read or holds no DCAT catalogue or dataset."""


@dataclass(frozen=True, slots=True)
class HarvestedDataset:
    iri: str
    title: str
    publisher: str
    landing_page: str | None
    turtle: str


@dataclass(frozen=True, slots=True)
class Harvest:
    url: str
    catalog_iri: str
    title: str
    catalog_turtle: str           # the source catalogue's own description (without its dataset links)
    datasets: list[HarvestedDataset]


def fetch_catalog(url: str, *, timeout_s: float = 30.0) -> Graph:
    if not url.startswith(("http://", "https://")):
        raise HarvestError(f"{url!r} is not an http(s) URL")
    request = urllib.request.Request(url, headers={"Accept": ACCEPT, "User-Agent": "citylab-harvester"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:   # noqa: S310 - http(s) only
            body = response.read(MAX_BYTES + 1)
            media = response.headers.get_content_type()
    except urllib.error.HTTPError as exc:
        raise HarvestError(f"{url} answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise HarvestError(f"cannot read {url}: {getattr(exc, 'reason', exc)}") from None
    if len(body) > MAX_BYTES:
        raise HarvestError(f"{url} is larger than {MAX_BYTES} bytes")
    fmt = _PARSERS.get(media) or next((f for ext, f in _EXTENSIONS.items() if url.split("?")[0].endswith(ext)),
                                      None)
    if fmt is None:
        raise HarvestError(f"{url} is {media}, not RDF (Turtle, RDF/XML, JSON-LD or N-Triples)")
    try:
        return Graph().parse(data=body, format=fmt, publicID=url)
    except Exception as exc:  # noqa: BLE001 - rdflib's parsers raise many kinds; all mean "not this format"
        raise HarvestError(f"{url} is not valid {fmt}: {exc}") from None


def _first_text(graph: Graph, node: Node, prop: URIRef, *, prefer: tuple[str, ...] = ("en", "nb", "no")) -> str:
    values = list(graph.objects(node, prop))
    for lang in prefer:
        for v in values:
            if getattr(v, "language", None) == lang:
                return str(v)
    return str(values[0]) if values else ""


def _describe(graph: Graph, start: Node, *, keep: set[Node], stop: set[Node]) -> Graph:
    """The triples describing `start`: its own and, followed through its objects, those of every
    node it leads to, except through links that leave it (_LEAVING) and into `stop` nodes.
    Links to datasets outside `keep` are dropped (their targets would be undescribed)."""
    out = Graph()
    for prefix, namespace in graph.namespaces():
        out.bind(prefix, namespace)
    seen, todo = {start}, [start]
    while todo:
        node = todo.pop()
        for s, p, o in graph.triples((node, None, None)):
            if p in _LEAVING:
                continue
            if p == DCAT.servesDataset and o not in keep:
                continue
            out.add((s, p, o))
            if o not in seen and o not in stop and (o, None, None) in graph:
                if (o, RDF.type, DCAT.Dataset) in graph and o not in keep:
                    continue
                seen.add(o)
                todo.append(o)
    return out


def harvested(graph: Graph, url: str) -> Harvest:
    catalogs = set(graph.subjects(RDF.type, DCAT.Catalog))
    top = sorted(c for c in catalogs if (None, DCAT.catalog, c) not in graph)
    if top:
        datasets = sorted({d for c in top for d in graph.objects(c, DCAT.dataset)})
    else:
        datasets = sorted(set(graph.subjects(RDF.type, DCAT.Dataset)))
    if not datasets:
        raise HarvestError(f"{url} holds no DCAT dataset")
    catalog = top[0] if top else URIRef(url)
    keep = set(datasets)
    stop = set(catalogs)
    if top:
        catalog_graph = _describe(graph, catalog, keep=set(), stop=keep | (catalogs - {catalog}))
    else:   # datasets without a catalogue: the document stands for their catalogue
        catalog_graph = Graph()
        catalog_graph.add((catalog, RDF.type, DCAT.Catalog))
        catalog_graph.add((catalog, DCTERMS.title, Literal(f"Datasets of {url}", lang="en")))
        catalog_graph.add((catalog, DCTERMS.description, Literal(f"The datasets harvested from {url}.", lang="en")))
        publisher = next((p for d in datasets for p in graph.objects(d, DCTERMS.publisher)), None)
        if publisher is not None:
            catalog_graph.add((catalog, DCTERMS.publisher, publisher))
    out = []
    for dataset in datasets:
        description = _describe(graph, dataset, keep=keep, stop=stop)
        publisher = graph.value(dataset, DCTERMS.publisher)
        page = graph.value(dataset, DCAT.landingPage)
        out.append(HarvestedDataset(
            iri=str(dataset), title=_first_text(graph, dataset, DCTERMS.title) or str(dataset),
            publisher=_first_text(graph, publisher, FOAF.name) if publisher is not None else "",
            landing_page=str(page) if page is not None else None,
            turtle=description.serialize(format="turtle"),
        ))
    title = _first_text(graph, catalog, DCTERMS.title) or url
    return Harvest(url=url, catalog_iri=str(catalog), title=title,
                   catalog_turtle=catalog_graph.serialize(format="turtle"), datasets=out)
