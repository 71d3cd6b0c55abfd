"""GET /health and GET /metrics against real components: the test database, the test
broker, and an ingest metrics endpoint that is there or is not."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from api.app import create_app
from citylab.embedded import free_port
from citylab.settings import Settings


def _ingest_metrics(lag: float, connected: float) -> tuple[ThreadingHTTPServer, str]:
    """A real HTTP endpoint serving ingest's gauges as prometheus-client renders them."""
    registry = CollectorRegistry()
    Gauge("citylab_ingest_lag_seconds", "lag", registry=registry).set(lag)
    Gauge("citylab_broker_connected", "connected", registry=registry).set(connected)
    body = generate_latest(registry)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/metrics"


def test_every_component_up(database: str, mqtt_broker) -> None:
    server, url = _ingest_metrics(0.25, 1)
    try:
        app = create_app(Settings(database_url=database, mqtt_url=mqtt_broker.url, ingest_metrics_url=url))
        with TestClient(app) as client:
            response = client.get("/health")
            assert response.status_code == 200, response.text
            assert response.json() == {"status": "ok", "database": "ok", "components": {
                "database": {"up": True}, "broker": {"up": True},
                "ingest": {"up": True, "lag_seconds": 0.25, "broker_connected": True}}}
            metrics = client.get("/metrics")
            assert metrics.headers["content-type"].startswith("text/plain")
            text = metrics.text
            for component in ("database", "broker", "ingest"):
                assert f'citylab_component_up{{component="{component}"}} 1.0' in text
            assert 'citylab_http_requests_total{method="GET",route="/health",status="200"} 1.0' in text
            assert 'citylab_http_request_seconds_count{method="GET",route="/health"} 1.0' in text
    finally:
        server.shutdown()


def test_a_component_down_is_503_and_named(database: str) -> None:
    dead = free_port()
    server, url = _ingest_metrics(3.0, 0)  # ingest runs, but has lost the broker
    try:
        app = create_app(Settings(database_url=database, mqtt_url=f"mqtt://127.0.0.1:{dead}", ingest_metrics_url=url))
        with TestClient(app) as client:
            response = client.get("/health")
            assert response.status_code == 503 and response.headers["retry-after"] == "5"
            body = response.json()
            assert body["status"] == "degraded" and body["database"] == "ok"
            assert body["components"]["database"] == {"up": True}
            assert body["components"]["broker"]["up"] is False and str(dead) in body["components"]["broker"]["detail"]
            assert body["components"]["ingest"] == {"up": False, "lag_seconds": 3.0, "broker_connected": False,
                                                    "detail": "ingest runs but is not connected to the broker"}
            text = client.get("/metrics").text
            assert 'citylab_component_up{component="broker"} 0.0' in text
            assert 'citylab_component_up{component="ingest"} 0.0' in text
    finally:
        server.shutdown()
    app = create_app(Settings(database_url=database, ingest_metrics_url=f"http://127.0.0.1:{free_port()}/metrics"))
    with TestClient(app) as client:
        ingest = client.get("/health").json()["components"]["ingest"]
        assert ingest["up"] is False and "do not answer" in ingest["detail"]
