"""`citylab gdpr report --org ORG`: a DPIA starter from the data.

Writes `<out>/gdpr-<org>.md` and `<out>/gdpr-<org>.json`: the organisation's
personal and pseudonymous series with their DPV legal basis, purpose, controller
and retention, who has access under which grant and purpose (with the grant's
minimisation), the read statistics from the audit log, the erasures and what
retention deleted. The database is the running lab's or CITYLAB_DATABASE_URL.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["register", "render_markdown"]


def render_markdown(report: dict[str, Any]) -> str:
    org = report["organisation"]
    lines = [f"# Data protection facts: {org['name']} ({org['slug']})", "",
             "Facts for a data protection impact assessment, read from the lab's data. Terms are W3C DPV "
             "(https://w3id.org/dpv#).", "", "## Personal and pseudonymous series", ""]
    if report["series"]:
        lines += ["| series | device | quantity | category | legal basis | purpose | controller | retention (days) "
                  "| readings |", "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {s['id']} | {s['device']} | {s['quantity']} | {s['personal_data']} | {s['legal_basis'] or '—'} "
                  f"| {s['purpose'] or '—'} | {s['controller'] or '—'} | {s['retention_days'] or 'lab default'} "
                  f"| {s['readings']} |" for s in report["series"]]
    else:
        lines.append("None: no series of this organisation is classified personal or pseudonymous.")
    lines += ["", "## Who has access", ""]
    if report["grants"]:
        lines += ["| grant | consumer | status | purpose | expires | location precision | k-anonymity | requests "
                  "| rows served | series |", "|---|---|---|---|---|---|---|---|---|---|"]
        for g in report["grants"]:
            precision = (f"H3 res {g['location_h3_res']}" if g["location_h3_res"] is not None else
                         f"{g['location_grid_m']:g} m grid" if g["location_grid_m"] is not None else "exact")
            lines.append(f"| {g['id']} | {g['consumer']} | {g['status']} | {g['purpose'] or '—'} "
                         f"| {g['expires_at'] or 'until revoked'} | {precision} | {g['k_anonymity'] or '—'} "
                         f"| {g['requests']} | {g['rows_served']} | {', '.join(map(str, g['series_ids']))} |")
    else:
        lines.append("No grant to another organisation covers these series.")
    lines += ["", "## Reads (audit log)", ""]
    if report["reads"]:
        lines += ["| series | reader | action | requests | rows | last |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['series_id']} | {r['reader']} | {r['action']} | {r['requests']} | {r['rows']} "
                  f"| {r['last']} |" for r in report["reads"]]
    else:
        lines.append("No reads logged.")
    lines += ["", "## Erasure and retention", "", f"Erasures carried out: {report['erasures']}.",
              f"Retention runs that deleted rows: {len(report['retention_runs'])}.", ""]
    return "\n".join(lines)


def cmd_report(args: argparse.Namespace) -> int:
    from citylab.cli import _resolve_urls, _settings
    from citylab.lab import LabError
    from storage import connect
    from storage.gdpr import org_report

    with connect(_resolve_urls(_settings())[0], autocommit=True) as conn:
        try:
            report = org_report(conn, org=args.org)
        except ValueError as exc:
            raise LabError(str(exc)) from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / f"gdpr-{args.org}.md", out / f"gdpr-{args.org}.json"
    md.write_text(render_markdown(report))
    js.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {md} and {js}: {len(report['series'])} personal series, {len(report['grants'])} grants")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    gdpr = sub.add_parser("gdpr", help="GDPR: a DPIA starter from the data")
    gdpr_sub = gdpr.add_subparsers(dest="gdpr_command", required=True)
    report = gdpr_sub.add_parser("report", help="write Markdown and JSON facts of an organisation's personal data")
    report.add_argument("--org", required=True, help="the organisation's slug")
    report.add_argument("--out", default=".", help="directory to write gdpr-ORG.md and gdpr-ORG.json into")
    report.set_defaults(func=cmd_report)
