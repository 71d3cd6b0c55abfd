"""One router per resource: health, series (readings, aggregates), anomalies, status."""

from __future__ import annotations

from api.errors import PROBLEM_JSON
from api.models import ProblemPublic

__all__ = ["problem_responses"]


def problem_responses(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI `responses=` entries documenting problem-details answers."""
    return {
        status: {"model": ProblemPublic, "content": {PROBLEM_JSON: {}}, "description": description}
        for status, description in (
            (404, "Unknown series"),
            (422, "Invalid parameter (naive time, end before start, bad bucket, ...)"),
            (503, "Database unavailable; retry later"),
        )
        if status in statuses
    }
