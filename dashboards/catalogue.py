"""Every citylab dashboard, and the committed JSON files they generate."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from dashboards.alarms import alarms
from dashboards.anomalies import anomalies
from dashboards.city import city_overview
from dashboards.fleet import fleet_health
from dashboards.model import Dashboard
from dashboards.quality import data_quality

__all__ = ["DASHBOARDS", "JSON_DIR", "all_dashboards", "render", "stale_files", "write_json"]

DASHBOARDS: dict[str, Callable[[], Dashboard]] = {
    "city-overview": city_overview,
    "fleet-health": fleet_health,
    "anomalies": anomalies,
    "alarms": alarms,
    "data-quality": data_quality,
}
# Where docker-compose's Grafana reads them (deploy/grafana/dashboards/provider.yaml).
JSON_DIR = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "dashboards" / "json"


def all_dashboards() -> list[Dashboard]:
    return [build() for build in DASHBOARDS.values()]


def render(dashboard: Dashboard) -> str:
    return json.dumps(dashboard.to_json(), indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def _files() -> dict[str, str]:
    return {f"{name}.json": render(build()) for name, build in DASHBOARDS.items()}


def write_json(directory: Path = JSON_DIR) -> list[Path]:
    """Write every dashboard's JSON; return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in _files().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale_files(directory: Path = JSON_DIR) -> list[str]:
    """Names of the committed files that differ from what the Python generates."""
    stale = []
    for name, text in _files().items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    return stale
