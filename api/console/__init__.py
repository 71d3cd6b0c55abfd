"""api.console: the lab console, a web page for people served at `/`.

The fleet (list and map with status), a live chart of any series with its
anomalies, a feed of recent anomalies, data products with their quality reports
and the SME onboarding flow. The page is built from `console/` (vite, uPlot,
Leaflet) into `api/console/static/`, committed, so the API needs no network and
no npm at run time. The router also runs the gateway status listener.
"""

from __future__ import annotations

from api.console.routes import STATIC_DIR, router

__all__ = ["STATIC_DIR", "router"]
