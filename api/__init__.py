"""api: the HTTP face of citylab (FastAPI).

Series, raw readings, re-bucketed aggregates, anomalies and the lab's status,
read through `storage.queries`; errors as RFC 9457 problem details. Tenants,
keys, onboarding and exports come later on the same seams (`deps`, one router
per resource).
"""

from __future__ import annotations

from api.app import create_app
from api.errors import ApiError, ConfigurationError

__all__ = ["ApiError", "ConfigurationError", "create_app"]
