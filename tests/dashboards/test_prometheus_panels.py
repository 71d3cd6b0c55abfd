"""The Fleet health dashboard's PromQL, run on a real Prometheus scraping a real lab.

Prometheus (the Debian package) scrapes the demo lab's API (/metrics) and its
ingest worker (the metrics port `citylab up` keeps in ports.json) every second;
every Prometheus panel's query must then evaluate, and each query on a metric the
lab exports must return series.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from demo_lab import DemoLab
from prometheus_client.parser import text_string_to_metric_families

from citylab.embedded import free_port
from citylab.supervisor import _own_group_and_death_signal
from dashboards import PromQuery, all_dashboards
from dashboards.fleet import API_METRICS, INGEST_METRICS
from lab_probes import wait

pytestmark = pytest.mark.slow

PROM_PANELS = [(panel.title, i, query) for d in all_dashboards() for panel in d.panels
               for i, query in enumerate(panel.queries) if isinstance(query, PromQuery)]


def _families(url: str) -> set[str]:
    return {f.name for f in text_string_to_metric_families(httpx.get(url, timeout=10).text)}


@pytest.fixture(scope="module")
def scraped(filled_lab: DemoLab, tmp_path_factory) -> Iterator[tuple[str, set[str]]]:
    """(Prometheus's URL, the metric families the lab exports) once Prometheus has two scrapes of each."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed: run `make setup` (scripts/setup-system.sh installs it)")
    ports = json.loads((filled_lab.home / "ports.json").read_text())
    api = urlsplit(filled_lab.api_url).netloc
    ingest = f"127.0.0.1:{ports['ingest-metrics']}"
    root = tmp_path_factory.mktemp("prometheus")
    (root / "prometheus.yml").write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{"job_name": "citylab-api", "static_configs": [{"targets": [api]}]},
                           {"job_name": "citylab-ingest", "static_configs": [{"targets": [ingest]}]}],
    }))
    port = free_port()
    log = (root / "prometheus.log").open("wb")
    proc = subprocess.Popen([binary, f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=_own_group_and_death_signal)
    url = f"http://127.0.0.1:{port}"
    try:
        httpx.get(f"{filled_lab.api_url}/health", timeout=15)  # a request for the request counters

        def two_scrapes_of_each() -> bool:
            try:
                samples = httpx.get(f"{url}/api/v1/query", params={"query": "count_over_time(up[1m]) >= 2 and up == 1"},
                                    timeout=5).json()["data"]["result"]
            except (httpx.HTTPError, KeyError, ValueError):
                samples = []
            return {s["metric"]["job"] for s in samples} == {"citylab-api", "citylab-ingest"}

        wait(lambda: proc.poll() is not None or two_scrapes_of_each(), 60, "two scrapes of each job",
             detail=lambda: (root / "prometheus.log").read_text()[-2000:])
        assert proc.poll() is None, (root / "prometheus.log").read_text()[-2000:]
        exported = _families(f"{filled_lab.api_url}/metrics") | _families(f"http://{ingest}/metrics")
        yield url, exported
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()


def test_the_api_exports_what_the_panels_read(scraped) -> None:
    _, exported = scraped
    assert set(API_METRICS) <= exported


@pytest.mark.parametrize(("title", "index", "query"), PROM_PANELS, ids=[f"{t}:{i}" for t, i, _ in PROM_PANELS])
def test_prometheus_panel_query_evaluates(scraped, title: str, index: int, query: PromQuery) -> None:
    url, exported = scraped
    assert set(query.metrics) <= set(API_METRICS) | set(INGEST_METRICS), query.metrics
    for family in query.metrics:
        assert family in query.expr, (family, query.expr)
    answer = httpx.get(f"{url}/api/v1/query", params={"query": query.expr}, timeout=10).json()
    assert answer["status"] == "success", answer
    if set(query.metrics) <= exported:
        assert answer["data"]["result"], f"{title}: no series for {query.expr}"
