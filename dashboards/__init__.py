"""Grafana dashboards as code (filled by a later issue)."""
