"""Response models of the API (`XPublic`), and the problem-details document.

Times leave as ISO 8601 in UTC (`...Z`). Non-finite floats (NaN, ±inf, which
PostgreSQL's double precision can hold) leave as null rather than breaking JSON.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from api.privacy import PrivacyPublic

__all__ = [
    "AggregatePublic",
    "AggregatesPublic",
    "AnomaliesPublic",
    "AnomalyPublic",
    "HealthPublic",
    "LatestPublic",
    "MapPublic",
    "ProblemPublic",
    "ReadingPublic",
    "ReadingsPublic",
    "SeriesPublic",
    "StatusPublic",
]


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]
JsonFloat = Annotated[float | None, AfterValidator(_finite)]


class _Public(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)


class MapPublic(_Public):
    """The background of a map (the open page's and the console's): the lab's tile source, if any."""

    tile_url: str | None = Field(description="{z}/{x}/{y} template; null: districts and sensors over a plain outline.")
    attribution: str | None


class ProblemPublic(_Public):
    """An RFC 9457 problem document (media type application/problem+json)."""

    type: str = Field(default="about:blank", examples=["about:blank"])
    title: str = Field(examples=["Not Found"])
    status: int = Field(examples=[404])
    detail: str = Field(examples=["no series with id 42"])
    errors: list[dict[str, str]] | None = Field(
        default=None, description="Validation errors: each with `in`, `name` and `message`."
    )


class HealthPublic(_Public):
    status: Literal["ok", "degraded"] = Field(description="ok: every component is up; degraded: one is down (503).")
    database: Literal["ok", "unavailable"]
    components: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per component (database, broker, ingest, and under `citylab up` every supervised process): "
                    "`up`, and where known `detail`, `restarts`, ingest's `lag_seconds`, `broker_connected` and "
                    "`refused_subscriptions` (each `server`, `filter`, `reason`: a refusal makes ingest down).",
    )


class SeriesPublic(_Public):
    id: int = Field(description="Dense series id used by every other endpoint.")
    device: str
    quantity: str = Field(examples=["pm2_5"])
    unit: str | None = Field(examples=["ug/m3"], description="SenML unit (RFC 8428 registry), e.g. ug/m3, Cel, %RH.")
    provider: str | None = Field(default=None, description="The organisation whose device it is.")
    lat: float | None = Field(default=None, description="Latitude of the device (WGS 84).")
    lon: float | None = Field(default=None, description="Longitude of the device (WGS 84).")
    interval_s: float | None = Field(default=None, description="Declared interval between readings, seconds.")
    low: float | None = Field(default=None, description="Lower physical bound declared at onboarding.")
    high: float | None = Field(default=None, description="Upper physical bound declared at onboarding.")
    privacy: PrivacyPublic | None = Field(default=None, description="Personal data, legal basis, purpose and "
                                          "controller (W3C DPV terms); see docs/gdpr.md.")


class ReadingPublic(_Public):
    time: UtcDatetime
    value: JsonFloat


class ReadingsPublic(_Public):
    series: SeriesPublic
    start: UtcDatetime = Field(description="Inclusive.")
    end: UtcDatetime = Field(description="Exclusive.")
    count: int
    truncated: bool = Field(description="True when `limit` cut the answer; continue with `next_cursor`.")
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` (with the same start and end) for the next page; null at the end."
    )
    data: list[ReadingPublic]


class LatestPublic(_Public):
    series_id: int
    device: str
    quantity: str
    unit: str | None
    time: UtcDatetime
    value: JsonFloat
    privacy: PrivacyPublic | None = None


class AggregatePublic(_Public):
    bucket: UtcDatetime = Field(description="Start of the bucket (aligned to the Unix epoch).")
    count: int
    mean: JsonFloat
    min: JsonFloat
    max: JsonFloat
    last: JsonFloat = Field(description="The reading with the latest time in the bucket.")
    std: JsonFloat = Field(description="Population standard deviation.")


class AggregatesPublic(_Public):
    series: SeriesPublic
    start: UtcDatetime = Field(description="Inclusive.")
    end: UtcDatetime = Field(description="Exclusive.")
    bucket_s: int = Field(description="Bucket width in seconds.")
    data: list[AggregatePublic]


class AnomalyPublic(_Public):
    time: UtcDatetime
    series_id: int
    device: str
    quantity: str
    value: JsonFloat
    score: JsonFloat = Field(description="Higher is more anomalous.")
    kind: str


class AnomaliesPublic(_Public):
    start: UtcDatetime = Field(description="Inclusive.")
    end: UtcDatetime = Field(description="Exclusive.")
    count: int
    truncated: bool
    data: list[AnomalyPublic]


class StatusPublic(_Public):
    scope: Literal["organisation", "lab"] = Field(description="Whose figures these are.")
    org: str | None = Field(description="The organisation (slug) for scope organisation; null for the lab.")
    packs_received: int = Field(description="Always packs_stored + packs_dead_lettered.")
    packs_stored: int
    packs_dead_lettered: int
    packs_duplicate: int = Field(description="Redelivered packs recognised and skipped.")
    readings_stored: int
    dead_letters: int = Field(description="Rows in the dead-letter table (of the scope).")
    devices: int
    series: int
    newest_reading: UtcDatetime | None
    lag_seconds: float | None = Field(
        description="now − newest_reading in seconds; null without readings (negative means device clocks ahead)."
    )
