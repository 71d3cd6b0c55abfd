"""`citylab dashboards generate | check | push`: registered by citylab.cli."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["register"]


def cmd_generate(args: argparse.Namespace) -> int:
    from dashboards.catalogue import write_json

    for path in write_json(Path(args.out)):
        print(f"wrote {path}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from dashboards.catalogue import stale_files

    stale = stale_files(Path(args.out))
    if stale:
        print("out of date (run `citylab dashboards generate`): " + ", ".join(stale))
        return 1
    print("dashboards up to date")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from citylab.cli import _resolve_urls, _settings
    from dashboards.provision import DashboardsError, push

    database_url = args.database_url
    if database_url is None and not args.no_datasource:
        database_url, _ = _resolve_urls(_settings())
    try:
        report = push(args.url, args.token, database_url=None if args.no_datasource else database_url)
    except DashboardsError as exc:
        print(f"citylab dashboards push: {exc}")
        return 1
    print(json.dumps({"datasource": report.datasource, "folder": report.folder,
                      "dashboards": list(report.dashboards)}))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from dashboards.catalogue import JSON_DIR

    parser = sub.add_parser("dashboards", help="Grafana dashboards as code")
    dsub = parser.add_subparsers(dest="dashboards_command", required=True)

    gen = dsub.add_parser("generate", help="write the dashboard JSON files")
    gen.add_argument("--out", default=str(JSON_DIR), help=f"directory (default {JSON_DIR})")
    gen.set_defaults(func=cmd_generate)

    check = dsub.add_parser("check", help="exit 1 when the committed JSON differs from the Python")
    check.add_argument("--out", default=str(JSON_DIR))
    check.set_defaults(func=cmd_check)

    push = dsub.add_parser("push", help="provision the data source, folder and dashboards into a running Grafana")
    push.add_argument("--url", required=True, help="Grafana base URL, e.g. http://localhost:3000")
    push.add_argument("--token", required=True, help="a service account token with the Editor or Admin role")
    push.add_argument("--database-url", default=None,
                      help="the citylab database as Grafana reaches it (default: CITYLAB_DATABASE_URL or the running lab)")
    push.add_argument("--no-datasource", action="store_true", help="leave the data source alone")
    push.set_defaults(func=cmd_push)
