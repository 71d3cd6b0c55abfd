"""Query parameter types: timezone-aware instants, time ranges and bucket widths.

Instants are ISO 8601 with a timezone (`2025-03-01T12:00:00Z`,
`2025-03-01T13:00:00+01:00`); naive ones are refused, since "12:00" means
different instants in Stavanger and in UTC. A `+` that reached us as a space
(an unencoded `+01:00` in a query string) is read back as `+`.

Bucket widths are ISO 8601 durations in days, hours, minutes and seconds
(`PT1M`, `PT15M`, `PT1H`, `P1D`, `P1DT12H`) or a whole number of seconds
(`900`); they must be positive multiples of the stored aggregate width (60 s).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import AwareDatetime, BeforeValidator, WithJsonSchema

from api.errors import Problem

__all__ = ["DEFAULT_RANGE", "MAX_BUCKET_S", "Instant", "TimeRange", "parse_bucket", "resolve_range"]

DEFAULT_RANGE = timedelta(hours=1)
MAX_BUCKET_S = 366 * 86_400

# "2025-03-01T12:00:00 01:00": the `+` of the offset decoded as a space.
_SPACE_FOR_PLUS = re.compile(r"^(\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?) (\d\d(?::?\d\d)?)$")


def _plus_from_space(value: Any) -> Any:
    if isinstance(value, str):
        match = _SPACE_FOR_PLUS.match(value)
        if match:
            return f"{match[1]}+{match[2]}"
    return value


Instant = Annotated[
    AwareDatetime,
    BeforeValidator(_plus_from_space),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "description": "ISO 8601 with a timezone (Z or ±hh:mm); naive times are refused.",
            "examples": ["2025-03-01T12:00:00Z"],
        }
    ),
]


@dataclass(frozen=True, slots=True)
class TimeRange:
    start: datetime  # inclusive, UTC
    end: datetime    # exclusive, UTC


def resolve_range(start: datetime | None, end: datetime | None, *, default: timedelta = DEFAULT_RANGE) -> TimeRange:
    """[start, end) in UTC; end defaults to now and start to end − `default`."""
    try:
        end = (end or datetime.now(UTC)).astimezone(UTC)
        start = (start.astimezone(UTC) if start else end - default)
    except OverflowError:
        raise Problem(422, "start/end are out of the supported range of times", title="Invalid request") from None
    if end <= start:
        raise Problem(
            422,
            f"end ({end.isoformat()}) must be later than start ({start.isoformat()}); the range is [start, end)",
            title="Invalid request",
        )
    return TimeRange(start, end)


_DURATION = re.compile(r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?$")


def parse_bucket(text: str, *, multiple_of: int) -> int:
    """Seconds of a bucket width given as an ISO 8601 duration or whole seconds."""
    raw = text.strip().upper()
    if raw.isdigit():
        seconds = int(raw)
    else:
        match = _DURATION.match(raw)
        if not match or raw in ("P", "PT") or raw.endswith("T"):
            raise Problem(
                422,
                f"bucket {text!r} is not an ISO 8601 duration (PT1M, PT15M, PT1H, P1D) nor whole seconds (900)",
                title="Invalid request",
            )
        parts = {k: int(v) if v else 0 for k, v in match.groupdict().items()}
        seconds = parts["d"] * 86_400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]
    if seconds > MAX_BUCKET_S:
        raise Problem(422, f"bucket {text!r} is longer than {MAX_BUCKET_S // 86_400} days", title="Invalid request")
    if seconds <= 0 or seconds % multiple_of:
        raise Problem(
            422,
            f"bucket {text!r} is {seconds} s; it must be a positive multiple of {multiple_of} s (e.g. PT1M, PT15M, PT1H)",
            title="Invalid request",
        )
    return seconds
