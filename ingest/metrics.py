"""Ingest's Prometheus metrics, served over HTTP by the ingest process itself.

    citylab_packs_received_total              deliveries taken from the broker (redeliveries too)
    citylab_packs_stored_total                packs whose readings were stored
    citylab_packs_duplicate_total             packs already stored (or dead-lettered) before
    citylab_packs_dead_lettered_total{reason} packs refused, by dead-letter reason
    citylab_readings_stored_total             readings stored
    citylab_ingest_lag_seconds                age of the oldest received, not yet committed message
    citylab_ingest_queue_depth{queue}         "received": in the bounded queue; "committing": in the batch
    citylab_commit_seconds                    histogram of one committed piece's transaction time
    citylab_broker_connected                  1 while the MQTT session is up
    citylab_subscriptions_refused             filters the broker's last SUBACK refused (0 when all granted)
    citylab_subscription_refused{server,filter,reason}
                                              1 for each of them, with the server ("broker", or
                                              "integration-{id}" for a network server ingest subscribes to)
                                              and the SUBACK's (or CONNACK's) reason
    citylab_sta_feed{state}                   SensorThings feed: "published" messages, "dropped" readings,
                                              "pending" readings waiting for the feed's thread

Each service has a registry of its own (several run in one test process); the HTTP
server is started only when a port is configured (0 picks a free one).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

from ingest.observation_feed import ObservationFeed

__all__ = ["IngestMetrics"]

logger = logging.getLogger("citylab.ingest.metrics")

_COMMIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _Refusals:
    """One sample per refused subscription, so that /health can say which and why."""

    def __init__(self, refused: Callable[[], dict[tuple[str, str], str]]) -> None:
        self._refused = refused

    def describe(self) -> list:
        return []

    def collect(self):
        family = GaugeMetricFamily("citylab_subscription_refused", "A subscription refused, with its reason",
                                   labels=["server", "filter", "reason"])
        for (server, topic_filter), reason in sorted(self._refused().items()):
            family.add_metric([server, topic_filter, reason], 1.0)
        yield family


class IngestMetrics:
    def __init__(self, *, lag_s: Callable[[], float], queue_depth: Callable[[], int],
                 committing: Callable[[], int], connected: Callable[[], bool],
                 refused: Callable[[], dict[tuple[str, str], str]] = dict,
                 feed: ObservationFeed | None = None) -> None:
        self.registry = registry = CollectorRegistry()
        self.received = Counter("citylab_packs_received", "Deliveries taken from the broker, redeliveries included",
                                registry=registry)
        self.stored = Counter("citylab_packs_stored", "Packs whose readings were stored", registry=registry)
        self.duplicate = Counter("citylab_packs_duplicate", "Packs already stored or dead-lettered before",
                                 registry=registry)
        self.dead_lettered = Counter("citylab_packs_dead_lettered", "Packs refused, by dead-letter reason",
                                     ["reason"], registry=registry)
        self.readings = Counter("citylab_readings_stored", "Readings stored", registry=registry)
        self.commit_seconds = Histogram("citylab_commit_seconds", "Time of one committed transaction",
                                        buckets=_COMMIT_BUCKETS, registry=registry)
        Gauge("citylab_ingest_lag_seconds", "Age of the oldest received message not committed yet",
              registry=registry).set_function(lag_s)
        depth = Gauge("citylab_ingest_queue_depth", "Messages waiting in ingest", ["queue"], registry=registry)
        depth.labels("received").set_function(queue_depth)
        depth.labels("committing").set_function(committing)
        Gauge("citylab_broker_connected", "1 while ingest's MQTT session is connected",
              registry=registry).set_function(lambda: 1.0 if connected() else 0.0)
        Gauge("citylab_subscriptions_refused", "Topic filters the broker's last SUBACK refused",
              registry=registry).set_function(lambda: float(len(refused())))
        registry.register(_Refusals(refused))
        if feed is not None:
            states = Gauge("citylab_sta_feed", "The SensorThings MQTT feed: published messages, dropped and "
                           "pending readings", ["state"], registry=registry)
            for state in ("published", "dropped", "pending"):
                states.labels(state).set_function(lambda state=state: float(getattr(feed, state)))
        self._server: WSGIServer | None = None
        self.port: int | None = None

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve /metrics on `port` (0: a free one); returns the port."""
        self._server, _ = start_http_server(port, addr=host, registry=self.registry)
        self.port = self._server.server_port
        logger.info("metrics on http://%s:%d/metrics", host, self.port)
        return self.port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
