"""GET /metrics: the API's Prometheus metrics (prometheus-client, text exposition format).

    citylab_http_requests_total{method, route, status}   requests answered (route: the path template)
    citylab_http_request_seconds{method, route}         how long they took (histogram)
    citylab_component_up{component}                      1 up, 0 down: database, broker, ingest (probed
                                                         at scrape time), and what `citylab up` supervises
    citylab_component_restarts_total{component}          restarts by `citylab up`'s supervisor
    citylab_db_reads_total{server}                       request reads routed to the replica or the primary
                                                         (api.routing; the primary when there is no replica)

Each app has a registry of its own, so that several apps in one process (the tests)
never share counters. Counters are per process: with `--api-workers N` a scrape of
/metrics is answered by one of the N, so Prometheus sees each process's counters in
turn (sum them with `rate()` over scrapes, or run one API per container and scrape each). Ingest serves its own metrics on its own port
(CITYLAB_INGEST_METRICS_PORT); Prometheus scrapes both.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from citylab.probes import ComponentHealth

__all__ = ["ApiMetrics", "RequestMetrics", "router"]

router = APIRouter(tags=["health"])


class _Components(Collector):
    def __init__(self, health: Callable[[], list[ComponentHealth]],
                 supervised: Callable[[], dict[str, dict] | None]) -> None:
        self._health = health
        self._supervised = supervised

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("citylab_component_up", "1 when the component is up, 0 when it is down.",
                               labels=["component"])
        restarts = CounterMetricFamily("citylab_component_restarts",
                                       "Restarts of the component by the lab's supervisor.", labels=["component"])
        seen = set()
        for component in self._health():
            up.add_metric([component.name], 1.0 if component.up else 0.0)
            seen.add(component.name)
        for name, state in (self._supervised() or {}).items():
            if name not in seen:
                up.add_metric([name], 1.0 if state.get("up") else 0.0)
            restarts.add_metric([name], float(state.get("restarts", 0)))
        yield up
        yield restarts


class _Reads(Collector):
    def __init__(self, reads: Callable[[], dict[str, int]]) -> None:
        self._reads = reads

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily("citylab_db_reads", "Request reads routed to the read replica or the primary.",
                                     labels=["server"])
        for server, count in sorted(self._reads().items()):
            family.add_metric([server], float(count))
        yield family


class ApiMetrics:
    def __init__(self, *, health: Callable[[], list[ComponentHealth]],
                 supervised: Callable[[], dict[str, dict] | None],
                 reads: Callable[[], dict[str, int]] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("citylab_http_requests", "HTTP requests answered by the API.",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("citylab_http_request_seconds", "Time to answer an HTTP request.",
                                 ["method", "route"], registry=self.registry)
        self.registry.register(_Components(health, supervised))
        if reads is not None:
            self.registry.register(_Reads(reads))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetrics:
    """ASGI middleware counting every request by its route's path template (bounded labels)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope.get("method", "GET")
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=True,
            response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def read_metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
