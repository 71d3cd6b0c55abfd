"""api: the HTTP face of citylab (FastAPI).

The testbed API: organisations, API keys and roles; device onboarding with
broker credentials (Mosquitto dynamic security); the series catalogue, raw
readings, aggregates, latest values and anomalies as JSON, CSV and Parquet,
with streamed exports; data products, access grants, usage and quality; the
audit log. Errors are RFC 9457 problem details. One router per resource,
dependencies in `deps`, access rules in `access`.
"""

from __future__ import annotations

from api.app import create_app
from api.errors import ApiError, ConfigurationError

__all__ = ["ApiError", "ConfigurationError", "create_app"]
