"""The Smart Data Models our series map to, read from the shared vocabulary
(`protocol.quantities`, `protocol.units`): nothing here is a mapping of its own.

A `Model` is one Smart Data Models entity type (`AirQualityObserved`, ...) with
the quantities whose `sdm.model` names it. `ModelAttribute` says how a reading
of a series becomes the model's value: `model = reading * a + b` (the SenML
unit of the series converted to the quantity's unit, then the model's scale)
and the UN/CEFACT `unitCode` of the model's unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from api.ngsild.context import sdm_context_url
from protocol.quantities import QUANTITIES, Quantity
from protocol.units import UNITS, convert, convertible

__all__ = ["MODELS", "Model", "ModelAttribute", "conversions", "model_of_quantity"]


@dataclass(frozen=True, slots=True)
class ModelAttribute:
    quantity: str
    attribute: str      # the model's attribute name, e.g. "pm25"
    iri: str            # the attribute's IRI in the model's @context
    unit_code: str      # UN/CEFACT common code of the model's unit


@dataclass(frozen=True, slots=True)
class Model:
    name: str           # the entity type, e.g. "AirQualityObserved"
    domain: str         # e.g. "Environment"
    attributes: tuple[ModelAttribute, ...]

    @property
    def context_url(self) -> str:
        return sdm_context_url(self.domain)

    @property
    def type_iri(self) -> str:
        return f"https://smartdatamodels.org/dataModel.{self.domain}/{self.name}"

    def attribute(self, quantity: str) -> ModelAttribute | None:
        return next((a for a in self.attributes if a.quantity == quantity), None)

    def attribute_named(self, name: str) -> ModelAttribute:
        return next(a for a in self.attributes if a.attribute == name)


def _attribute(q: Quantity) -> ModelAttribute:
    assert q.sdm is not None
    unit = UNITS[q.sdm.unit or q.unit]
    return ModelAttribute(q.name, q.sdm.attribute, q.sdm.definition, unit.cefact)


def _models() -> dict[str, Model]:
    found: dict[str, tuple[str, list[ModelAttribute]]] = {}
    for q in QUANTITIES.values():
        if q.sdm is not None:
            found.setdefault(q.sdm.model, (q.sdm.domain, []))[1].append(_attribute(q))
    return {name: Model(name, domain, tuple(attrs)) for name, (domain, attrs) in found.items()}


MODELS: dict[str, Model] = _models()


def model_of_quantity(quantity: str) -> Model | None:
    q = QUANTITIES.get(quantity)
    return MODELS.get(q.sdm.model) if q is not None and q.sdm is not None else None


@lru_cache(maxsize=1)
def conversions() -> tuple[list[str], list[str | None], list[str], list[str], list[float], list[float]]:
    """(quantity, series unit, model, attribute, a, b) for every quantity with a
    model and every SenML unit its series may carry (None: the quantity's own):
    the model's value of a reading is `reading * a + b`. The arrays are bound as
    parameters of the entity queries (storage.ngsild)."""
    rows: list[tuple[str, str | None, str, str, float, float]] = []
    for q in QUANTITIES.values():
        if q.sdm is None:
            continue
        scale = q.sdm.scale
        for unit in [None, *(u for u in UNITS if convertible(u, q.unit))]:
            if unit is None or unit == q.unit:
                a, b = scale, 0.0
            else:
                b = float(convert(0.0, unit, q.unit)) * scale
                a = float(convert(1.0, unit, q.unit)) * scale - b
            rows.append((q.name, unit, q.sdm.model, q.sdm.attribute, a, b))
    return tuple(list(column) for column in zip(*rows))  # type: ignore[return-value]
