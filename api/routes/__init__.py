"""One router per resource: health, series (readings, aggregates, latest), anomalies, status,
organisations and keys, devices, HTTP ingest, LoRaWAN integrations, exports, data products, grants,
audit."""

from __future__ import annotations

from api.errors import PROBLEM_JSON
from api.models import ProblemPublic

__all__ = ["problem_responses"]


def problem_responses(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI `responses=` entries documenting problem-details answers."""
    return {
        status: {"model": ProblemPublic, "content": {PROBLEM_JSON: {}}, "description": description}
        for status, description in (
            (400, "Bad request"),
            (401, "Missing or invalid API key"),
            (403, "The key's role does not allow this"),
            (404, "Not found (or not yours)"),
            (409, "Conflict with the current state"),
            (422, "Invalid parameter (naive time, end before start, bad bucket, ...)"),
            (429, "Too many requests without a key from this address; see Retry-After"),
            (503, "Database unavailable; retry later"),
        )
        if status in statuses
    }
