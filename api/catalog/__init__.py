"""The DCAT-AP 3 face: the lab's catalogue of listed data products, data services and
harvested datasets, in Turtle, JSON-LD, RDF/XML and N-Triples (`routes`), built with
rdflib from plain values (`graph`), with content negotiation (`negotiation`) and the
harvester of other catalogues (`harvest`)."""

from __future__ import annotations

from api.catalog.graph import CatalogContent, build_catalog
from api.catalog.routes import router

__all__ = ["CatalogContent", "build_catalog", "router"]
