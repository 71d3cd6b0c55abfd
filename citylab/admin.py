"""`citylab admin ...`: what an operator does without the API.

    citylab admin create-org --name N --kind K [--slug S] [--role R] [--json]
        a new organisation and its first API key ({"org_id": ..., "api_key": ...})
    citylab admin create-key --org SLUG --role R [--json]
        another key of an existing organisation
    citylab admin list-orgs [--json]
    citylab admin broker-init --out FILE --username U --password P
        the dynamic-security plugin's file with its admin client (for docker-compose)
    citylab admin broker-bind
        bind every device's broker login to its client id (logins made before
        logins were bound; each device then connects with its username as client id)

Keys with role `operator` (the lab's staff: lab-wide status and audit log) are
made here only (`create-key --role operator`), never through the API.

The database is the running lab's (as `citylab status` finds it) or
CITYLAB_DATABASE_URL. Keys are printed once and stored hashed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

__all__ = ["register"]

if TYPE_CHECKING:
    from citylab.broker_security import DynSec


def _database_url() -> str:
    from citylab.cli import _resolve_urls, _settings

    return _resolve_urls(_settings())[0]


def cmd_create_org(args: argparse.Namespace) -> int:
    from storage import connect, migrate
    from storage.audit import record_change
    from storage.tenants import create_key, create_org

    with connect(_database_url()) as conn:
        migrate(conn)
        conn.autocommit = False
        org = create_org(conn, name=args.name, kind=args.kind, slug=args.slug)
        key, secret = create_key(conn, org_id=org.id, role=args.role, label="created by citylab admin")
        record_change(conn, actor="cli", action="org.create", org_id=None, key_id=None, owner_org=org.id,
                      detail={"slug": org.slug, "kind": org.kind, "key_id": key.id, "role": key.role})
        conn.commit()
    if args.json:
        print(json.dumps({"org_id": org.id, "slug": org.slug, "kind": org.kind, "role": key.role,
                          "api_key": secret}))
    else:
        print(f"organisation {org.name!r} ({org.kind}) created: id {org.id}, slug {org.slug!r} "
              f"(devices publish under lab/{org.slug}/<device>/)")
        print(f"API key ({key.role}), shown once: {secret}")
    return 0


def cmd_create_key(args: argparse.Namespace) -> int:
    from citylab.lab import LabError
    from storage import connect
    from storage.audit import record_change
    from storage.tenants import create_key, list_orgs

    with connect(_database_url()) as conn:
        org = next((o for o in list_orgs(conn) if o.slug == args.org), None)
        if org is None:
            raise LabError(f"no organisation with slug {args.org!r} (see `citylab admin list-orgs`)")
        key, secret = create_key(conn, org_id=org.id, role=args.role, label="created by citylab admin")
        record_change(conn, actor="cli", action="key.create", org_id=None, key_id=None, owner_org=org.id,
                      detail={"key_id": key.id, "role": key.role})
        conn.commit()
    print(json.dumps({"org_id": org.id, "api_key": secret}) if args.json else f"API key ({key.role}): {secret}")
    return 0


def cmd_list_orgs(args: argparse.Namespace) -> int:
    from storage import connect
    from storage.tenants import list_orgs

    with connect(_database_url()) as conn:
        orgs = list_orgs(conn)
    if args.json:
        print(json.dumps([{"org_id": o.id, "slug": o.slug, "name": o.name, "kind": o.kind} for o in orgs]))
    else:
        for o in orgs:
            print(f"{o.id:6}  {o.slug:24} {o.kind:10} {o.name}")
    return 0


def cmd_broker_init(args: argparse.Namespace) -> int:
    from citylab.broker_security import write_initial_config

    write_initial_config(Path(args.out), admin_username=args.username, admin_password=args.password)
    print(f"wrote {args.out}")
    return 0


def broker_admin(command: str) -> tuple[str, DynSec]:
    """The running lab's database URL and its broker's dynamic-security admin client."""
    from citylab.broker_security import DynSec
    from citylab.cli import _resolve_urls, _settings
    from citylab.lab import LabError

    settings = _settings()
    database_url, mqtt_url = _resolve_urls(settings)
    admin = (settings.dynsec_username, settings.dynsec_password) if settings.dynsec_password else None
    secret = settings.home / "broker-admin.json"
    if admin is None and secret.exists():
        data = json.loads(secret.read_text())
        admin = (data["username"], data["password"])
    if admin is None or not mqtt_url:
        raise LabError(f"{command} needs the broker's admin: CITYLAB_DYNSEC_PASSWORD (or a running `citylab up`)")
    return database_url, DynSec(mqtt_url, username=admin[0], password=admin[1])


def cmd_broker_bind(args: argparse.Namespace) -> int:
    from citylab.broker_security import device_client_id
    from storage import connect
    from storage.tenants import device_logins

    database_url, dynsec = broker_admin("broker-bind")
    with connect(database_url) as conn:
        logins = device_logins(conn)
    dynsec.bind_client_ids(
        {username: device_client_id(org, device) for org, device, username in logins})
    print(f"bound {len(logins)} device logins to their client ids")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from storage.tenants import KINDS, ROLES

    admin = sub.add_parser("admin", help="organisations, API keys and broker security without the API")
    commands = admin.add_subparsers(dest="admin_command", required=True)

    org = commands.add_parser("create-org", help="a new organisation and its first API key")
    org.add_argument("--name", required=True)
    org.add_argument("--kind", required=True, choices=KINDS)
    org.add_argument("--slug", default=None, help="topic-safe name (default: from --name)")
    org.add_argument("--role", default="admin", choices=ROLES, help="role of the first key (default admin)")
    org.add_argument("--json", action="store_true")
    org.set_defaults(func=cmd_create_org)

    key = commands.add_parser("create-key", help="another API key of an organisation")
    key.add_argument("--org", required=True, help="the organisation's slug")
    key.add_argument("--role", required=True, choices=ROLES)
    key.add_argument("--json", action="store_true")
    key.set_defaults(func=cmd_create_key)

    orgs = commands.add_parser("list-orgs", help="the organisations")
    orgs.add_argument("--json", action="store_true")
    orgs.set_defaults(func=cmd_list_orgs)

    init = commands.add_parser("broker-init", help="the dynamic-security file with its admin client")
    init.add_argument("--out", required=True)
    init.add_argument("--username", default="citylab-admin")
    init.add_argument("--password", required=True)
    init.set_defaults(func=cmd_broker_init)

    bind = commands.add_parser("broker-bind", help="bind every device's broker login to its client id")
    bind.set_defaults(func=cmd_broker_bind)
