"""JSON-LD `@context` handling with pyld: local copies, remote contexts, term
expansion and compaction.

A `Context` is what a request brings (`Link` header or `@context` member),
always with the NGSI-LD core context last, as clause 5.5.7 requires. The
core context (v1.8) and the Smart Data Models contexts are answered from the
copies in `contexts/`; any other URL is dereferenced once through the
outbound guard (`outbound.fetch`: timeout, size limit, no private addresses)
and cached. A context that cannot be retrieved is a 503
LdContextNotAvailable; one that is not valid JSON-LD is a 400 BadRequestData.

Attribute names and entity types are compacted and expanded term by term
(with pyld on a one-term document, cached per context), so that rendering an
entity costs dictionary look-ups, not a JSON-LD algorithm per entity.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from pyld import jsonld

from api.ngsild.errors import NgsiLdError
from citylab.outbound import OutboundError, OutboundPolicy, fetch

__all__ = [
    "CORE_CONTEXT",
    "Context",
    "ContextResolver",
    "compact_document",
    "expand_document",
    "link_header",
    "parse_link_header",
    "sdm_context_url",
]

CORE_CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
JSONLD_CONTEXT_REL = "http://www.w3.org/ns/json-ld#context"
_SDM_CONTEXT = "https://raw.githubusercontent.com/smart-data-models/dataModel.{}/master/context.jsonld"

_LOCAL: dict[str, str] = {
    CORE_CONTEXT: "ngsi-ld-core-context-v1.8.jsonld",
    # older core URLs that producers still send resolve to the current core
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld": "ngsi-ld-core-context-v1.8.jsonld",
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.7.jsonld": "ngsi-ld-core-context-v1.8.jsonld",
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.6.jsonld": "ngsi-ld-core-context-v1.8.jsonld",
    **{_SDM_CONTEXT.format(d): f"sdm-{d}.jsonld" for d in ("Environment", "Weather", "Transportation", "Energy")},
}


def sdm_context_url(domain: str) -> str:
    """The published `@context` of a Smart Data Models domain."""
    return _SDM_CONTEXT.format(domain)


@lru_cache(maxsize=None)
def _local_document(name: str) -> dict[str, Any]:
    text = resources.files("api.ngsild").joinpath("contexts").joinpath(name).read_text(encoding="utf-8")
    return json.loads(text)


class ContextResolver:
    """Serves context documents to pyld: local copies, then a bounded cache of
    remote ones fetched under the outbound policy."""

    def __init__(self, policy: OutboundPolicy, *, cache_size: int = 64) -> None:
        self.policy = policy
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def document(self, url: str) -> dict[str, Any]:
        if url in _LOCAL:
            return _local_document(_LOCAL[url])
        with self._lock:
            if url in self._cache:
                self._cache.move_to_end(url)
                return self._cache[url]
        try:
            body = fetch(url, self.policy)
            document = json.loads(body)
        except OutboundError as exc:
            raise NgsiLdError("LdContextNotAvailable", f"the @context {url} cannot be retrieved: {exc}") from None
        except ValueError:
            raise NgsiLdError("BadRequestData", f"the @context {url} is not a JSON document") from None
        if not isinstance(document, dict) or "@context" not in document:
            raise NgsiLdError("BadRequestData", f"the @context {url} has no @context member")
        with self._lock:
            self._cache[url] = document
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return document

    def loader(self, url: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"contextUrl": None, "documentUrl": url, "document": self.document(url)}


@dataclass(frozen=True, slots=True)
class Context:
    """The user context of a request: `sources` (URLs or inline objects), the
    core context appended. `link` is what the answer's Link header names."""

    sources: tuple[str, ...]   # each a URL or a JSON text of an inline context
    resolver: ContextResolver

    @classmethod
    def of(cls, resolver: ContextResolver, value: Any = None) -> Context:
        items = [] if value is None else value if isinstance(value, list) else [value]
        sources: list[str] = []
        for item in items:
            if isinstance(item, str):
                if item not in _LOCAL or _LOCAL[item] != _LOCAL[CORE_CONTEXT]:
                    sources.append(item)
            elif isinstance(item, dict):
                sources.append(json.dumps(item, sort_keys=True))
            else:
                raise NgsiLdError("BadRequestData", "an @context is a URL, an object or a list of those")
        for source in sources:
            if not source.startswith("{"):
                resolver.document(source)  # dereference now: errors leave as the face's problems
        ctx = cls(tuple(sources), resolver)
        ctx._validate()
        return ctx

    @property
    def value(self) -> list[Any]:
        """The context as a JSON-LD `@context` value, core last."""
        return [json.loads(s) if s.startswith("{") else s for s in self.sources] + [CORE_CONTEXT]

    @property
    def link(self) -> str:
        """The one URL to name in a Link header: the first user context URL, else the core."""
        for source in self.sources:
            if not source.startswith("{"):
                return source
        return CORE_CONTEXT

    def _options(self) -> dict[str, Any]:
        return {"documentLoader": self.resolver.loader}

    def _validate(self) -> None:
        try:
            _expand_term(self, "urn:citylab:probe")
        except jsonld.JsonLdError as exc:
            raise NgsiLdError("BadRequestData", f"the @context is not valid JSON-LD: {_reason(exc)}") from None

    def expand(self, term: str) -> str:
        """The IRI of an attribute name or entity type."""
        if term in ("id", "type", "@id", "@type"):
            return term
        return _expand_term(self, term)

    def compact(self, iri: str) -> str:
        """The term of an IRI under this context (the IRI itself when none)."""
        return _compact_iri(self, iri)


def _reason(exc: Exception) -> str:
    cause = getattr(exc, "cause", None)
    if isinstance(cause, NgsiLdError):
        raise cause
    return str(getattr(exc, "message", exc)).splitlines()[0]


@lru_cache(maxsize=20_000)
def _expand_term(ctx: Context, term: str) -> str:
    try:
        expanded = jsonld.expand({"@context": ctx.value, term: "x"}, ctx._options())
    except jsonld.JsonLdError as exc:
        raise NgsiLdError("BadRequestData", f"cannot expand {term!r}: {_reason(exc)}") from None
    keys = [k for k in (expanded[0] if expanded else {}) if not k.startswith("@")]
    if not keys:
        raise NgsiLdError("BadRequestData", f"{term!r} is not a valid attribute name or type")
    return keys[0]


@lru_cache(maxsize=20_000)
def _compact_iri(ctx: Context, iri: str) -> str:
    try:
        compacted = jsonld.compact({iri: "x"}, {"@context": ctx.value}, ctx._options())
    except jsonld.JsonLdError as exc:
        raise NgsiLdError("BadRequestData", f"cannot compact {iri!r}: {_reason(exc)}") from None
    keys = [k for k in compacted if k != "@context"]
    return keys[0] if keys else iri


def expand_document(document: dict[str, Any], ctx: Context) -> list[dict[str, Any]]:
    """JSON-LD expansion of a whole document (context entities)."""
    try:
        return jsonld.expand({**document, "@context": ctx.value}, ctx._options())
    except jsonld.JsonLdError as exc:
        raise NgsiLdError("BadRequestData", f"the document cannot be expanded: {_reason(exc)}") from None


def compact_document(expanded: Any, ctx: Context) -> dict[str, Any]:
    """JSON-LD compaction against the context (context entities)."""
    try:
        out = jsonld.compact(expanded, {"@context": ctx.value}, ctx._options())
    except jsonld.JsonLdError as exc:
        raise NgsiLdError("InternalError", f"the document cannot be compacted: {_reason(exc)}") from None
    out.pop("@context", None)
    return out


def link_header(url: str) -> str:
    return f'<{url}>; rel="{JSONLD_CONTEXT_REL}"; type="application/ld+json"'


def parse_link_header(value: str | None) -> str | None:
    """The context URL of a request's Link header (None without one).

    Clause 6.3.5: at most one Link header with the JSON-LD context relation."""
    if not value:
        return None
    found = []
    for part in value.split(","):
        segments = [s.strip() for s in part.split(";")]
        if not segments[0].startswith("<") or not segments[0].endswith(">"):
            raise NgsiLdError("BadRequestData", f"the Link header {value!r} is not <url>; rel=...")
        params = {}
        for segment in segments[1:]:
            if "=" in segment:
                key, _, val = segment.partition("=")
                params[key.strip().lower()] = val.strip().strip('"')
        if params.get("rel") == JSONLD_CONTEXT_REL:
            found.append(segments[0][1:-1])
    if len(found) > 1:
        raise NgsiLdError("BadRequestData", "more than one JSON-LD context Link header")
    return found[0] if found else None
