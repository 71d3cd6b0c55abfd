"""dashboards: Grafana dashboards as code and their provisioning.

Each dashboard is a Python function returning a `Dashboard` of panels whose SQL
runs on the citylab database (`city`, `fleet`, `anomalies`, `quality`); Fleet
health adds panels whose PromQL reads the Prometheus that scrapes ingest and the API.
`citylab dashboards generate` writes them to deploy/grafana/dashboards/json/ (the
files docker-compose's Grafana provisions), `citylab dashboards push` sends them
to a running Grafana with grafana-client, and `expand_macros` turns Grafana's
time macros into plain SQL so that the tests can run every panel's query.
"""

from __future__ import annotations

from dashboards.catalogue import DASHBOARDS, JSON_DIR, all_dashboards, render, stale_files, write_json
from dashboards.macros import MacroError, expand_macros
from dashboards.model import DATASOURCE, GENERATED, PROMETHEUS, Dashboard, Panel, PromQuery, Query, Row
from dashboards.provision import DashboardsError, PushReport, datasource_model, push

__all__ = [
    "DASHBOARDS",
    "DATASOURCE",
    "GENERATED",
    "JSON_DIR",
    "Dashboard",
    "DashboardsError",
    "MacroError",
    "PROMETHEUS",
    "Panel",
    "PromQuery",
    "PushReport",
    "Query",
    "Row",
    "all_dashboards",
    "datasource_model",
    "expand_macros",
    "push",
    "render",
    "stale_files",
    "write_json",
]
