"""`citylab dashboards push` over HTTP with grafana-client.

No Grafana can be installed here, so the test answers the handful of Grafana HTTP
API calls the push makes with a small recording HTTP server (a real socket and the
real client): it checks the bearer token, the data source pointing at the citylab
database, the folder and every dashboard, and a second push updating instead of
creating.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from citylab.cli import main
from dashboards import DASHBOARDS, DashboardsError, push


class FakeGrafana(ThreadingHTTPServer):
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict | None, str | None]] = []
        self.datasources: dict[str, dict] = {}
        self.folders: dict[str, dict] = {}
        self.dashboards: dict[str, dict] = {}
        super().__init__(("127.0.0.1", 0), Handler)


class Handler(BaseHTTPRequestHandler):
    server: FakeGrafana

    def log_message(self, *args) -> None:
        pass

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.server.calls.append((method, self.path, body, self.headers.get("Authorization")))
        if self.headers.get("Authorization") != "Bearer glsa_test":
            return self._answer(401, {"message": "Unauthorized"})
        s = self.server
        if method == "GET" and self.path.startswith("/api/datasources/uid/"):
            uid = self.path.rsplit("/", 1)[1]
            return self._answer(200, s.datasources[uid]) if uid in s.datasources else self._answer(404, {"message": "Data source not found"})
        if method == "POST" and self.path == "/api/datasources":
            s.datasources[body["uid"]] = body
            return self._answer(200, {"message": "Datasource added", "id": 1})
        if method == "PUT" and self.path.startswith("/api/datasources/uid/"):
            s.datasources[self.path.rsplit("/", 1)[1]] = body
            return self._answer(200, {"message": "Datasource updated"})
        if method == "GET" and self.path.startswith("/api/folders/"):
            uid = self.path.rsplit("/", 1)[1]
            return self._answer(200, s.folders[uid]) if uid in s.folders else self._answer(404, {"message": "folder not found"})
        if method == "POST" and self.path == "/api/folders":
            s.folders[body["uid"]] = body
            return self._answer(200, {"uid": body["uid"], "title": body["title"]})
        if method == "POST" and self.path == "/api/dashboards/db":
            s.dashboards[body["dashboard"]["uid"]] = body
            return self._answer(200, {"status": "success", "uid": body["dashboard"]["uid"]})
        return self._answer(404, {"message": f"no route {method} {self.path}"})

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")


@pytest.fixture
def grafana():
    server = FakeGrafana()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_push_provisions_datasource_folder_and_dashboards(grafana: FakeGrafana, capsys) -> None:
    url = f"http://127.0.0.1:{grafana.server_address[1]}"
    database = "postgresql://citylab:s3cret@db.example:5433/citylab"
    assert main(["dashboards", "push", "--url", url, "--token", "glsa_test", "--database-url", database]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["datasource"] == "created" and report["folder"] == "created"
    assert len(report["dashboards"]) == len(DASHBOARDS)

    source = grafana.datasources["citylab"]
    assert source["type"] == "grafana-postgresql-datasource" and source["url"] == "db.example:5433"
    assert source["user"] == "citylab" and source["jsonData"]["database"] == "citylab"
    assert source["secureJsonData"] == {"password": "s3cret"}
    assert set(grafana.folders) == {"citylab"}
    assert {b["folderUid"] for b in grafana.dashboards.values()} == {"citylab"}
    assert all(b["overwrite"] for b in grafana.dashboards.values())
    assert set(grafana.dashboards) == {"citylab-city-overview", "citylab-fleet-health", "citylab-anomalies",
                                      "citylab-data-quality", "citylab-alarms"}

    again = push(url, "glsa_test", database_url=database)
    assert (again.datasource, again.folder) == ("updated", "exists")


def test_push_with_a_bad_token_says_which_step_failed(grafana: FakeGrafana) -> None:
    url = f"http://127.0.0.1:{grafana.server_address[1]}"
    with pytest.raises(DashboardsError) as caught:
        push(url, "wrong", database_url="postgresql://citylab@db:5432/citylab")
    assert caught.value.step == "datasource"


def test_push_to_nothing_listening_is_a_dashboards_error() -> None:
    with pytest.raises(DashboardsError):
        push("http://127.0.0.1:9", "t", database_url=None, timeout_s=2)
