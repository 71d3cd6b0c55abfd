"""SensorThings resource paths: `Things(1)/Datastreams`, `Datastreams(5)/Thing/name/$value`,
`Observations/$ref`, ... into the steps of storage.sensorthings.read plus what
the request asks of the last step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from storage.sensorthings import ENTITY_SETS, EntitySet, Step

__all__ = ["PathError", "ResourcePath", "parse_path"]


class PathError(ValueError):
    """The path names no resource of this service (HTTP 404) or is malformed (HTTP 400)."""

    def __init__(self, message: str, *, status: int = 404) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class ResourcePath:
    steps: tuple[Step, ...]
    single: bool                  # one entity (by id or over a to-one link), not a collection
    prop: str | None = None       # Things(1)/name
    value: bool = False           # .../$value
    ref: bool = False             # .../$ref

    @property
    def entity(self) -> EntitySet:
        return ENTITY_SETS[self.steps[-1].entity]


_SEGMENT = re.compile(r"^([A-Za-z]+)(?:\((?:(\d{1,19})|'((?:[^']|'')*)')\))?$")


def _segments(path: str) -> list[str]:
    parts, quoted, start = [], False, 0
    for i, ch in enumerate(path):
        if ch == "'":
            quoted = not quoted
        elif ch == "/" and not quoted:
            parts.append(path[start:i])
            start = i + 1
    parts.append(path[start:])
    return [p for p in parts if p != ""]


def _key(match: re.Match) -> object | None:
    if match[2] is not None:
        return int(match[2])
    if match[3] is not None:
        return match[3].replace("''", "'")
    return None


def parse_path(path: str) -> ResourcePath:
    segments = _segments(path)
    if not segments:
        raise PathError("empty resource path")
    first = _SEGMENT.match(segments[0])
    if not first or first[1] not in ENTITY_SETS:
        raise PathError(f"{segments[0]!r} is not an entity set of this service ({', '.join(ENTITY_SETS)})")
    key = _key(first)
    steps = [Step(first[1], key)]
    single = key is not None
    rest = segments[1:]
    while rest:
        segment, rest = rest[0], rest[1:]
        entity = ENTITY_SETS[steps[-1].entity]
        if segment == "$ref":
            if rest:
                raise PathError("$ref ends a path", status=400)
            return ResourcePath(tuple(steps), single, ref=True)
        match = _SEGMENT.match(segment)
        if not match:
            raise PathError(f"{segment!r} is not a valid path segment", status=400)
        name, key = match[1], _key(match)
        if name in entity.links:
            if not single:
                raise PathError(f"{entity.name}/{name}: address one {entity.singular} by id first", status=400)
            link = entity.links[name]
            if key is not None and not link.many:
                raise PathError(f"{entity.singular}/{name} is one entity: it takes no id", status=400)
            steps.append(Step(link.target, key, name))
            single = key is not None or not link.many
            continue
        if name in entity.fields and key is None:
            if not single:
                raise PathError(f"{entity.name}/{name}: address one {entity.singular} by id first", status=400)
            if rest == ["$value"]:
                return ResourcePath(tuple(steps), True, prop=name, value=True)
            if rest:
                raise PathError(f"{entity.singular}/{name}/{'/'.join(rest)} is not a resource of this service")
            return ResourcePath(tuple(steps), True, prop=name)
        raise PathError(f"{entity.singular} has no property or navigation property {name!r}")
    return ResourcePath(tuple(steps), single)
