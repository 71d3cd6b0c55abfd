"""Provisioning into a running Grafana over its HTTP API (grafana-client).

`push(url, token, database_url=...)` creates or updates the `citylab` PostgreSQL
data source (uid `citylab`, the uid every panel names), the `citylab` folder and
every dashboard, overwriting earlier versions. docker-compose provisions the same
dashboards from files instead (deploy/grafana/).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from dashboards.catalogue import all_dashboards
from dashboards.model import DATASOURCE

__all__ = ["DashboardsError", "PushReport", "datasource_model", "push"]

logger = logging.getLogger("citylab.dashboards")

FOLDER_UID = "citylab"


class DashboardsError(RuntimeError):
    """Grafana refused or could not be reached; carries the step that failed."""

    def __init__(self, message: str, *, step: str) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step


@dataclass(frozen=True, slots=True)
class PushReport:
    datasource: str              # "created" | "updated"
    folder: str                  # "created" | "exists"
    dashboards: tuple[str, ...]  # uids pushed


def datasource_model(database_url: str) -> dict[str, object]:
    """The Grafana data source for a PostgreSQL URL (password in secureJsonData)."""
    parts = urlsplit(database_url)
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
        raise DashboardsError(f"not a postgresql:// URL with a host: {parts.scheme}://...", step="datasource")
    return {
        "name": "citylab",
        "uid": DATASOURCE["uid"],
        "type": DATASOURCE["type"],
        "access": "proxy",
        "url": f"{parts.hostname}:{parts.port or 5432}",
        "user": unquote(parts.username or ""),
        "isDefault": True,
        "jsonData": {"database": parts.path.lstrip("/") or "citylab", "sslmode": "disable",
                     "postgresVersion": 1500, "timescaledb": True, "timeInterval": "1m"},
        "secureJsonData": {"password": unquote(parts.password or "")},
    }


def push(url: str, token: str, *, database_url: str | None, timeout_s: float = 10.0) -> PushReport:
    """Data source (when `database_url` is given), folder and dashboards into Grafana at `url`."""
    from grafana_client import GrafanaApi
    from grafana_client.client import GrafanaClientError, GrafanaException

    api = GrafanaApi.from_url(url, credential=token, timeout=timeout_s)
    step = "connect"
    try:
        ds_state = "unchanged"
        if database_url:
            step = "datasource"
            model = datasource_model(database_url)
            try:
                api.datasource.get_datasource_by_uid(DATASOURCE["uid"])
            except GrafanaClientError as exc:
                if exc.status_code != 404:
                    raise
                api.datasource.create_datasource(model)
                ds_state = "created"
            else:
                api.datasource.update_datasource_by_uid(DATASOURCE["uid"], model)
                ds_state = "updated"
        step = "folder"
        try:
            api.folder.get_folder(FOLDER_UID)
            folder_state = "exists"
        except GrafanaClientError as exc:
            if exc.status_code != 404:
                raise
            api.folder.create_folder("citylab", uid=FOLDER_UID)
            folder_state = "created"
        pushed = []
        for dashboard in all_dashboards():
            step = f"dashboard {dashboard.uid}"
            api.dashboard.update_dashboard({"dashboard": dashboard.to_json(), "folderUid": FOLDER_UID,
                                            "overwrite": True, "message": "citylab dashboards push"})
            pushed.append(dashboard.uid)
            logger.info("pushed dashboard %s", dashboard.uid)
    except GrafanaException as exc:
        raise DashboardsError(str(exc), step=step) from exc
    except OSError as exc:
        raise DashboardsError(f"cannot reach Grafana at {url}: {exc}", step=step) from exc
    return PushReport(ds_state, folder_state, tuple(pushed))
