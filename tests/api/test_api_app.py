"""The app as a whole: health, OpenAPI, problem details, configuration, a dead
database, and a real uvicorn server."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from seeded_lab import Lab

from api import ConfigurationError, create_app
from citylab.settings import Settings

PROBLEM = "application/problem+json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_health(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "components": {"database": {"up": True}}}


def test_openapi_lists_every_path(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["info"]["title"] == "citylab" and spec["info"]["description"]
    paths = {p for p in spec["paths"] if p == "/health" or p.startswith("/v1/")}
    assert paths >= {
        "/health",
        "/v1/series",
        "/v1/series/{series_id}/readings",
        "/v1/series/{series_id}/aggregates",
        "/v1/latest",
        "/v1/anomalies",
        "/v1/status",
        "/v1/orgs/me",
        "/v1/keys",
        "/v1/devices",
        "/v1/devices/{device}/disable",
        "/v1/devices/{device}/credentials",
        "/v1/exports/readings",
        "/v1/products",
        "/v1/products/{product_id}/quality",
        "/v1/products/{product_id}/requests",
        "/v1/grants",
        "/v1/grants/{grant_id}/approve",
        "/v1/audit",
    }
    for path in paths:
        for method, operation in spec["paths"][path].items():
            assert operation["operationId"] and (operation.get("description") or operation.get("summary")), path
            assert {"200", "201"} & set(operation["responses"]), (method, path)
    readings = spec["paths"]["/v1/series/{series_id}/readings"]["get"]
    assert PROBLEM in readings["responses"]["404"]["content"]


def test_unknown_path_and_method_are_problems(client: TestClient) -> None:
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404 and response.headers["content-type"] == PROBLEM
    assert response.json()["title"] == "Not Found"
    response = client.post("/v1/series")
    assert response.status_code == 405 and response.headers["content-type"] == PROBLEM


def test_database_url_is_required() -> None:
    with pytest.raises(ConfigurationError, match="CITYLAB_DATABASE_URL"):
        create_app(Settings(database_url=None))


def test_database_down_is_503() -> None:
    url = f"postgresql://citylab@127.0.0.1:{_free_port()}/citylab?connect_timeout=1"
    app = create_app(Settings(database_url=url), pool_timeout_s=0.5)
    with TestClient(app) as client:
        response = client.get("/health")
        assert response.status_code == 503
        assert response.json() == {"status": "degraded", "database": "unavailable", "components": {
            "database": {"up": False, "detail": "the database does not answer"}}}
        for path in ("/v1/series", "/v1/status", "/v1/series/1/readings", "/v1/anomalies"):
            response = client.get(path)
            assert response.status_code == 503, path
            assert response.headers["content-type"] == PROBLEM
            assert response.headers["retry-after"] == "5"
            body = response.json()
            assert body["status"] == 503 and "unavailable" in body["detail"]
            assert "127.0.0.1" not in body["detail"]  # connection details stay in the log


@pytest.mark.slow
def test_real_uvicorn_server(lab: Lab, lab_tenant) -> None:
    port = _free_port()
    config = uvicorn.Config(create_app(Settings(database_url=lab.url)), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
        assert response.status_code == 200
        assert response.json()["status"] == "ok" and response.json()["database"] == "ok"
        # without a key: only open products' series (none here), and no device list at all
        assert httpx.get(f"http://127.0.0.1:{port}/v1/series", timeout=5).json() == []
        assert httpx.get(f"http://127.0.0.1:{port}/v1/devices", timeout=5).status_code == 401
        series = httpx.get(f"http://127.0.0.1:{port}/v1/series", headers=lab_tenant.headers, timeout=5).json()
        assert series[0]["quantity"] == "pm2_5"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
    assert not thread.is_alive()
