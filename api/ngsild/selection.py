"""Which entities a query selects: our device entities first (by org, device,
model), then the context entities (by org, id), paged across both.

`Selection.parse` reads the query parameters every entity query shares (type,
id, idPattern, attrs, q, geo-query) once, against the request's context;
`select` asks both stores and returns one page and the total.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from api.ngsild.context import Context
from api.ngsild.entities import DATE_OBSERVED, LOCATION, NativeEntity, check_uri, context_native, native_entity, \
    parse_entity_id
from api.ngsild.errors import NgsiLdError
from api.ngsild.geo import parse_geo
from api.ngsild.payload import KEYWORDS
from api.ngsild.query import parse_q, resolve
from api.ngsild.request import Caller, vocabulary
from api.ngsild.vocabulary import MODELS
from api.privacy import minimise_entities
from storage import ngsild as store
from storage.audit import DataRead
from storage.ngsild.context import context_entities

__all__ = ["Selected", "Selection", "latest_reads", "model_attribute_names", "select"]


def model_attribute_names(iris: set[str]) -> dict[str, str]:
    """IRI -> model attribute name, for the IRIs that are attributes of a model."""
    found = {}
    for model in MODELS.values():
        for attribute in model.attributes:
            if attribute.iri in iris:
                found[attribute.iri] = attribute.attribute
    return found


def _names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise NgsiLdError("BadRequestData", "an empty list of names")
    return names


def iris(ctx: Context, text: str | None) -> set[str] | None:
    names = _names(text)
    return None if names is None else {ctx.expand(n) for n in names}


def _type_iris(ctx: Context, text: str) -> list[str]:
    """The types of a type list (`A,B` or `A|B`; clause 4.17 selectors without `;`)."""
    names = [n.strip(" ()") for n in re.split(r"[,|]", text) if n.strip(" ()")]
    if ";" in text or not names:
        raise NgsiLdError("BadRequestData", f"type {text!r}: only lists of types (A,B or A|B) are supported")
    return sorted({ctx.expand(n) for n in names})


@dataclass(frozen=True, slots=True)
class Selected:
    native: NativeEntity
    device: store.DeviceEntity | None     # the row of one of our device entities; None: a context entity


@dataclass(frozen=True, slots=True)
class Selection:
    ids: list[str] | None
    types: list[str] | None          # type IRIs
    id_pattern: str | None
    attributes: set[str] | None      # attribute IRIs the entity must have one of
    q_derived: store.Filter | None
    q_context: store.Filter | None
    geo: store.GeoFilter | None
    nothing: bool = False            # e.g. geoproperty other than location

    @classmethod
    def parse(cls, ctx: Context, *, id: str | None = None, type: str | None = None, idPattern: str | None = None,
              attrs: str | None = None, q: str | None = None, georel: str | None = None,
              geometry: str | None = None, coordinates: str | None = None, geoproperty: str | None = None,
              require: bool = True) -> Selection:
        if require and not any(v is not None for v in (id, type, idPattern, attrs, q, georel)):
            raise NgsiLdError("BadRequestData", "a query needs at least one of type, id, idPattern, attrs, q or "
                                                "georel")
        ids = _names(id)
        for each in ids or []:
            check_uri(each)
        if idPattern is not None:
            try:
                re.compile(idPattern)
            except re.error as exc:
                raise NgsiLdError("BadRequestData", f"idPattern {idPattern!r} is not a regular expression: "
                                                    f"{exc}") from None
        tree = parse_q(q) if q is not None else None

        def derived_name(term: str) -> str | None:
            iri = ctx.expand(term)
            return "dateObserved" if iri == DATE_OBSERVED else model_attribute_names({iri}).get(iri)

        def path_name(term: str) -> str:
            return term if term in KEYWORDS else ctx.expand(term)

        return cls(
            ids=ids, types=_type_iris(ctx, type) if type is not None else None, id_pattern=idPattern,
            attributes=iris(ctx, attrs),
            q_derived=resolve(tree, derived_name) if tree is not None else None,
            q_context=resolve(tree, ctx.expand, path_name) if tree is not None else None,
            geo=parse_geo(georel, geometry, coordinates),
            nothing=geoproperty is not None and ctx.expand(geoproperty) != LOCATION,
        )


def select(conn, caller: Caller, selection: Selection, *, offset: int, limit: int) -> tuple[list[Selected], int]:
    """One page of the selected entities and how many there are."""
    if selection.nothing:
        return [], 0
    s = selection
    models = None if s.types is None else [m.name for m in MODELS.values() if m.type_iri in s.types]
    keys = None if s.ids is None else [k for k in (parse_entity_id(i) for i in s.ids) if k is not None]
    measured = None
    if s.attributes is not None:
        named = model_attribute_names(s.attributes)
        measured = list(named.values()) if len(named) == len(s.attributes) else None
    rows: list[store.DeviceEntity] = []
    derived_total = 0
    if not ((models is not None and not models) or (keys is not None and not keys)):
        rows, derived_total = store.device_entities(
            conn, org_id=caller.org_id, org_slug=caller.org_slug, vocabulary=vocabulary(), tenant=caller.tenant,
            models=models, keys=keys, id_pattern=s.id_pattern, attributes=measured, q=s.q_derived, geo=s.geo,
            offset=offset, limit=limit)
        rows, withheld = minimise_entities(conn, caller.principal, rows)   # purpose and precision of grants
        derived_total -= withheld
    selected = [Selected(native_entity(r), r) for r in rows]
    # context entities are read by their own organisation only
    orgs = [caller.org_slug] if caller.tenant in (None, caller.org_slug) else []
    context_ids = None if s.ids is None else [i for i in s.ids if parse_entity_id(i) is None]
    context_total = 0
    if orgs and not (context_ids is not None and not context_ids):
        found, context_total = context_entities(
            conn, orgs=orgs, types=s.types, ids=context_ids, id_pattern=s.id_pattern,
            attributes=sorted(s.attributes) if s.attributes is not None else None, q=s.q_context, geo=s.geo,
            offset=max(0, offset - derived_total), limit=max(0, limit - len(rows)))
        selected += [Selected(context_native(e), None) for e in found]
    return selected, derived_total + context_total


def latest_reads(rows: list[Selected], pick: set[str] | None, omit: set[str] | None) -> list[DataRead]:
    """What an entity answer served of each series, for the audit log: one reading per
    attribute of our device entities that has a value and is rendered."""
    reads = []
    for row in rows:
        if row.device is None:
            continue
        model = MODELS[row.device.model]
        for attribute in row.device.attributes:
            iri = model.attribute_named(attribute.attribute).iri
            if attribute.time is not None and (pick is None or iri in pick) and not (omit and iri in omit):
                reads.append(DataRead(attribute.series_id, 1))
    return reads
