"""The public city page at /open: for citizens, no key. A map of the open series' latest
values by place, a chart per quantity over a day and a week, the units and what the
numbers mean, the provider and licence of each product, download links. Static assets
in `static/` (no outside requests at run time unless a map tile source is configured);
the data from `/open/api/...` (`routes`)."""

from __future__ import annotations

from api.open.routes import router

__all__ = ["router"]
