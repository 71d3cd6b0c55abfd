"""Which RDF serialisation a request asks for: by file extension, else by `Accept`.

    Turtle     text/turtle              .ttl     (the default, also for */*)
    JSON-LD    application/ld+json      .jsonld
    RDF/XML    application/rdf+xml      .rdf
    N-Triples  application/n-triples    .nt

An `Accept` header naming none of them (and no */*) gets 406 with the list.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FORMATS", "RdfFormat", "by_extension", "negotiate"]


@dataclass(frozen=True, slots=True)
class RdfFormat:
    extension: str
    media_type: str
    rdflib_name: str          # rdflib's serializer


FORMATS = (
    RdfFormat("ttl", "text/turtle", "turtle"),
    RdfFormat("jsonld", "application/ld+json", "json-ld"),
    RdfFormat("rdf", "application/rdf+xml", "xml"),
    RdfFormat("nt", "application/n-triples", "nt"),
)
_ALIASES = {"application/json": "application/ld+json", "application/xml": "application/rdf+xml",
            "text/xml": "application/rdf+xml", "application/x-turtle": "text/turtle", "text/n3": "text/turtle"}


def by_extension(extension: str) -> RdfFormat | None:
    return next((f for f in FORMATS if f.extension == extension), None)


def _accepted(header: str) -> list[tuple[float, int, str]]:
    """(q, order, media range) of an Accept header, best first; q=0 ranges dropped."""
    ranges = []
    for order, part in enumerate(header.split(",")):
        fields = [f.strip() for f in part.split(";")]
        media = fields[0].lower()
        if not media:
            continue
        q = 1.0
        for param in fields[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0:
            ranges.append((-q, order, media))
    return [(-q, order, media) for q, order, media in sorted(ranges)]


def negotiate(accept: str | None) -> RdfFormat | None:
    """The format for an `Accept` header (Turtle when absent or */*); None when none is acceptable."""
    if not accept or not accept.strip():
        return FORMATS[0]
    for _, _, media in _accepted(accept):
        media = _ALIASES.get(media, media)
        if media in ("*/*", "text/*"):
            return FORMATS[0]
        if media == "application/*":
            return FORMATS[1]
        found = next((f for f in FORMATS if f.media_type == media), None)
        if found is not None:
            return found
    return None
