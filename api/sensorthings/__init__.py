"""api.sensorthings: the OGC SensorThings API 1.1 face (OGC 18-088) under /sta/v1.1.

Routing (routes.py), resource paths (paths.py), query options parsed into the
shared expression tree (query.py), the JSON of the standard (mapping.py), reads
(resources.py) and writes (writes.py). The SQL is in storage.sensorthings.
"""

from __future__ import annotations

from api.sensorthings.routes import ROOT, router

__all__ = ["ROOT", "router"]
