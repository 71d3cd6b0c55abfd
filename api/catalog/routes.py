"""The catalogue's routes: the whole catalogue, and each entity's own description.

    GET /catalog                      by content negotiation (Accept), Turtle by default
    GET /catalog.ttl | .jsonld | .rdf | .nt
    GET /catalog/{path}               the description of one entity of the catalogue
                                      (datasets/3, services/v1, organisations/lab, ...), same formats

No key is needed (the catalogue is public; a caller without a key is rate-limited
per client address like every keyless read).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Request, Response
from rdflib import Graph, URIRef

from api.catalog.content import load_content, served_faces
from api.catalog.graph import NAMESPACES, build_catalog
from api.catalog.negotiation import FORMATS, RdfFormat, by_extension, negotiate
from api.deps import ReadConnDep, ReaderDep, SettingsDep
from api.errors import Problem

__all__ = ["router"]

router = APIRouter(tags=["catalog"])

_RDF_CONTENT = {200: {"content": {f.media_type: {} for f in FORMATS},
                      "description": "The DCAT-AP 3 catalogue (or the entity's description)."}}
_CONTEXT = {prefix: str(ns) for prefix, ns in NAMESPACES.items()}


def _format(extension: str | None, accept: str | None) -> RdfFormat:
    if extension is not None:
        fmt = by_extension(extension)
        if fmt is None:
            raise Problem(404, f"no catalogue format .{extension}; one of "
                               + ", ".join("." + f.extension for f in FORMATS))
        return fmt
    fmt = negotiate(accept)
    if fmt is None:
        raise Problem(406, "the catalogue is served as " + ", ".join(f.media_type for f in FORMATS),
                      title="Not Acceptable")
    return fmt


def _serialise(graph: Graph, fmt: RdfFormat, *, location: str, head: bool = False) -> Response:
    """The graph in `fmt`; `location` is the IRI of this very representation (Content-Location)."""
    if fmt.rdflib_name == "json-ld":
        body = graph.serialize(format="json-ld", context=_CONTEXT, auto_compact=True)
    else:
        body = graph.serialize(format=fmt.rdflib_name)
    headers = {"Vary": "Accept", "Content-Location": f"{location}.{fmt.extension}"}
    if head:
        headers["Content-Length"] = str(len(body.encode()))
        return Response(None, media_type=fmt.media_type, headers=headers)
    return Response(body, media_type=fmt.media_type, headers=headers)


def catalog_graph(request: Request, conn, settings) -> Graph:
    paths = set(request.app.openapi().get("paths", {}))   # the app's OpenAPI document is built once, cached
    return build_catalog(load_content(conn, settings, faces=served_faces(paths)))


def _describe(graph: Graph, subject: URIRef) -> Graph:
    """The triples of `subject` and of the nodes named by fragments of it (#spatial, #temporal, ...)."""
    out = Graph()
    for prefix, ns in NAMESPACES.items():
        out.bind(prefix, ns)
    prefix = str(subject)
    for s, p, o in graph:
        if s == subject or str(s).startswith(prefix + "#") or str(s).startswith(prefix + "/"):
            out.add((s, p, o))
    return out


@router.head("/catalog", include_in_schema=False, response_class=Response)
@router.get("/catalog", summary="The DCAT-AP 3 catalogue", responses=_RDF_CONTENT, response_class=Response)
def read_catalog(request: Request, conn: ReadConnDep, settings: SettingsDep, reader: ReaderDep,
                 accept: Annotated[str | None, Header()] = None) -> Response:
    fmt = _format(None, accept)
    return _serialise(catalog_graph(request, conn, settings), fmt, location=f"{settings.base_url}/catalog",
                      head=request.method == "HEAD")


@router.head("/catalog.{extension}", include_in_schema=False, response_class=Response)
@router.get("/catalog.{extension}", summary="The DCAT-AP 3 catalogue in one format", responses=_RDF_CONTENT,
            response_class=Response)
def read_catalog_file(request: Request, conn: ReadConnDep, settings: SettingsDep, reader: ReaderDep,
                      extension: Annotated[str, Path(max_length=8)]) -> Response:
    fmt = _format(extension, None)
    return _serialise(catalog_graph(request, conn, settings), fmt, location=f"{settings.base_url}/catalog",
                      head=request.method == "HEAD")


@router.get("/catalog/{entity:path}", summary="One entity of the catalogue", responses=_RDF_CONTENT,
            response_class=Response)
def read_entity(request: Request, conn: ReadConnDep, settings: SettingsDep, reader: ReaderDep,
                entity: Annotated[str, Path(max_length=300)],
                accept: Annotated[str | None, Header()] = None) -> Response:
    extension = None
    stem, dot, suffix = entity.rpartition(".")
    if dot and by_extension(suffix) is not None:
        entity, extension = stem, suffix
    fmt = _format(extension, accept)
    graph = catalog_graph(request, conn, settings)
    subject = URIRef(f"{settings.base_url}/catalog/{entity}")
    described = _describe(graph, subject)
    if (subject, None, None) not in graph:
        raise Problem(404, f"the catalogue has no entity {entity!r}")
    return _serialise(described, fmt, location=str(subject))
