"""The NGSI-LD face (ETSI GS CIM 009 V1.8.1) with Smart Data Models: citylab as a
context broker under `/ngsi-ld/v1`.

Entities are derived from our devices and series (`entities`), rendered
against the request's JSON-LD context (`context`, pyld with local copies of
the core and Smart Data Models contexts), queried with the NGSI-LD query
language (`query`, a lark grammar) and geo-queries (`geo`), compiled to SQL
in `storage.ngsild`. Errors are the specification's problem details
(`errors`). `install(app)` mounts it on the citylab app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.ngsild.backfill import router as backfill_router
from api.ngsild.context import ContextResolver
from api.ngsild.errors import NgsiLdError, install_error_handlers
from api.ngsild.notifier import Notifier
from citylab.outbound import OutboundPolicy
from api.ngsild.provision import router as provision_router
from api.ngsild.routes import router
from api.ngsild.subscriptions import router as subscriptions_router
from api.ngsild.temporal import router as temporal_router

__all__ = ["NgsiLdError", "install", "router"]


def install(app: FastAPI) -> None:
    """Mount the face: its router, its context resolver and its error rendering."""
    settings = app.state.settings
    policy = OutboundPolicy(allow_loopback=settings.outbound_allow_loopback,
                            allow_private=settings.outbound_allow_private)
    resolver = ContextResolver(policy)
    app.state.ngsild_contexts = resolver
    app.state.ngsild_outbound = policy
    notifier = Notifier(app.state.pool, resolver, policy)
    app.state.ngsild_notifier = notifier
    app.include_router(router)
    app.include_router(temporal_router)
    app.include_router(provision_router)
    app.include_router(backfill_router)
    app.include_router(subscriptions_router)
    install_error_handlers(app)

    outer = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: FastAPI) -> AsyncIterator[object]:
        async with outer(app_) as state:
            notifier.start()   # changes ingest commits are notified without a write here
            try:
                yield state
            finally:
                notifier.close()

    app.router.lifespan_context = lifespan
