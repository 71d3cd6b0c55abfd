"""`citylab catalog ...`: harvesting other catalogues into this lab's.

    citylab catalog harvest URL [--json]   read a DCAT-AP catalogue (another lab's /catalog, a
                                           portal's export) and list its datasets in ours as
                                           external datasets; harvesting the same URL again
                                           replaces what it gave before
    citylab catalog external [--json]      the external datasets, with their sources

The database is the running lab's (as `citylab status` finds it) or CITYLAB_DATABASE_URL.
"""

from __future__ import annotations

import argparse
import json

__all__ = ["register"]


def _database_url() -> str:
    from citylab.cli import _resolve_urls, _settings

    return _resolve_urls(_settings())[0]


def cmd_harvest(args: argparse.Namespace) -> int:
    from api.catalog.harvest import HarvestError, fetch_catalog, harvested
    from citylab.lab import LabError
    from storage import connect, migrate
    from storage.audit import record_change
    from storage.catalog import save_harvest

    try:
        harvest = harvested(fetch_catalog(args.url, timeout_s=args.timeout), args.url)
    except HarvestError as exc:
        raise LabError(f"harvest failed: {exc}") from None
    with connect(_database_url()) as conn:
        migrate(conn)
        conn.autocommit = False
        source = save_harvest(
            conn, url=harvest.url, catalog_iri=harvest.catalog_iri, title=harvest.title,
            description=harvest.catalog_turtle,
            datasets=[(d.iri, d.title, d.publisher, d.landing_page, d.turtle) for d in harvest.datasets],
        )
        record_change(conn, actor="cli", action="catalog.harvest", org_id=None, key_id=None, owner_org=None,
                      detail={"url": harvest.url, "catalog": harvest.catalog_iri, "datasets": len(harvest.datasets)})
        conn.commit()
    if args.json:
        print(json.dumps({"source": source.url, "catalog": source.catalog_iri, "title": source.title,
                          "datasets": [{"iri": d.iri, "title": d.title, "publisher": d.publisher}
                                       for d in harvest.datasets]}))
    else:
        print(f"harvested {len(harvest.datasets)} datasets of {harvest.title!r} ({harvest.catalog_iri}) "
              f"from {harvest.url}:")
        for d in harvest.datasets:
            print(f"  {d.title}  [{d.publisher or 'no publisher'}]  {d.iri}")
    return 0


def cmd_external(args: argparse.Namespace) -> int:
    from storage import connect
    from storage.catalog import external_datasets

    with connect(_database_url()) as conn:
        rows = external_datasets(conn)
    if args.json:
        print(json.dumps([{"iri": r.iri, "title": r.title, "publisher": r.publisher, "landing_page": r.landing_page,
                           "source": r.source_url, "harvested_at": r.harvested_at.isoformat(), "external": True}
                          for r in rows]))
    else:
        for r in rows:
            print(f"external  {r.title}  [{r.publisher or 'no publisher'}]  {r.iri}  (from {r.source_url})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    catalog = sub.add_parser("catalog", help="the DCAT-AP catalogue: harvest other catalogues")
    commands = catalog.add_subparsers(dest="catalog_command", required=True)
    harvest = commands.add_parser("harvest", help="list another catalogue's datasets in ours as external datasets")
    harvest.add_argument("url", help="the catalogue's URL, e.g. https://data.example.no/catalog")
    harvest.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the source")
    harvest.add_argument("--json", action="store_true", help="one JSON object")
    harvest.set_defaults(func=cmd_harvest)
    external = commands.add_parser("external", help="the external datasets and their sources")
    external.add_argument("--json", action="store_true", help="a JSON list")
    external.set_defaults(func=cmd_external)
