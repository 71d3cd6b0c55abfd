"""Connecting a LoRaWAN network server: the integration row and its broker login, together.

Used by `POST /v1/integrations` and by `citylab integration create`. The login
(`integration-{id}`) is bound to that client id and may publish on the
integration's uplink topics only (`storage.integrations.integration_filter`).

A The Things Stack integration created with its MQTT server's address, username
and API key (`subscribe_to`) gets no broker login: ingest connects to that server
(`ingest.tts_client`). Disabling an integration disables its broker login too.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import psycopg

from citylab.broker_security import BrokerSecurityError, DynSec, new_password
from storage.integrations import (
    Integration,
    create_integration,
    delete_integration,
    integration_filter,
    integration_filters,
    set_integration_enabled,
    set_integration_username,
)

__all__ = ["ConnectedIntegration", "ServerAddress", "connect_integration", "enable_integration", "register"]


@dataclass(frozen=True, slots=True)
class ConnectedIntegration:
    integration: Integration
    topic: str
    username: str | None     # None: a subscribe-mode integration (no broker login)
    password: str | None     # shown once
    client_id: str | None


@dataclass(frozen=True, slots=True)
class ServerAddress:
    """The Things Stack MQTT server citylab subscribes to: `mqtts://eu1.cloud.thethings.network:8883`,
    the username `{app}@{tenant}` and an API key with the right to read application traffic."""

    url: str
    username: str
    api_key: str = field(repr=False)


def connect_integration(conn: psycopg.Connection, dynsec: DynSec | None, *, org: str, kind: str,
                        application_id: str, tenant_id: str = "",
                        subscribe_to: ServerAddress | None = None) -> ConnectedIntegration:
    """Raises storage.integrations.IntegrationConflict, ValueError (a ChirpStack tenant, a server for
    ChirpStack, a bad server URL), BrokerSecurityError."""
    if kind == "chirpstack" and tenant_id:
        raise ValueError("a ChirpStack integration has no tenant id")
    if subscribe_to is not None:
        if kind != "tts":
            raise ValueError("only a The Things Stack integration is subscribed to; ChirpStack publishes")
        parts = urlsplit(subscribe_to.url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname or parts.username or parts.path not in ("", "/"):
            raise ValueError("the MQTT server is mqtt://host:port or mqtts://host:port, without credentials")
        found = create_integration(conn, org=org, kind=kind, application_id=application_id, tenant_id=tenant_id,
                                   server_url=subscribe_to.url, server_username=subscribe_to.username,
                                   api_key=subscribe_to.api_key)
        return ConnectedIntegration(found, integration_filter(kind, application_id, tenant_id), None, None, None)
    if dynsec is None:
        raise BrokerSecurityError("the broker's dynamic security is not configured: no login can be made")
    found = create_integration(conn, org=org, kind=kind, application_id=application_id, tenant_id=tenant_id)
    username = client_id = f"integration-{found.id}"
    password = new_password()
    topic = integration_filter(found.kind, found.application_id, found.tenant_id)
    try:
        acls = [{"acltype": "publishClientSend", "topic": t, "allow": True}
                for t in integration_filters(found.kind, found.application_id, found.tenant_id)]
        dynsec.create_service(username, password, acls=acls,
                              role=f"citylab-integration:{found.id}", client_id=client_id)
    except BrokerSecurityError:
        delete_integration(conn, found.id)
        raise
    set_integration_username(conn, found.id, username)
    return ConnectedIntegration(found, topic, username, password, client_id)


def enable_integration(conn: psycopg.Connection, dynsec: DynSec | None, integration_id: int, *, org: str,
                       enabled: bool) -> Integration | None:
    """Enable or disable an integration of `org` and its broker login; None when `org` has no such one.

    Ingest stops taking a disabled integration's uplinks at its next registry check (2 s)
    and drops its connection to a subscribed server at its next poll."""
    found = set_integration_enabled(conn, integration_id, org=org, enabled=enabled)
    if found is not None and found.mqtt_username and dynsec is not None:
        if enabled:
            dynsec.enable_client(found.mqtt_username)
        else:
            dynsec.disable_client(found.mqtt_username)
    return found


def cmd_integration_create(args: argparse.Namespace) -> int:
    from citylab.cli import _resolve_urls, _settings
    from storage import connect

    settings = _settings()
    server = None
    if args.server_url:
        if not (args.server_username and args.api_key_file):
            raise SystemExit("--server-url needs --server-username and --api-key-file")
        source = sys.stdin if args.api_key_file == "-" else open(args.api_key_file)  # noqa: SIM115
        with source:
            server = ServerAddress(args.server_url, args.server_username, source.read().strip())
        database_url, dynsec = _resolve_urls(settings)[0], None
    else:
        from citylab.admin import broker_admin

        database_url, dynsec = broker_admin("integration create")
    with connect(database_url, autocommit=True) as conn:
        made = connect_integration(conn, dynsec, org=args.org, kind=args.kind, application_id=args.application_id,
                                   tenant_id=args.tenant_id, subscribe_to=server)
    out: dict = {"id": made.integration.id, "org": args.org, "kind": args.kind, "topic": made.topic,
                 "mode": made.integration.mode}
    if dynsec is not None:
        out["mqtt"] = {"url": settings.mqtt_public_url or f"mqtt://{dynsec.host}:{dynsec.port}",
                       "username": made.username, "password": made.password, "client_id": made.client_id}
    if args.json:
        print(json.dumps(out))
    elif server is not None:
        print(f"integration {out['id']} of {args.org}: ingest subscribes to {made.topic} on {server.url}")
    else:
        print(f"integration {out['id']} of {args.org}: the network server publishes on {made.topic}")
        print(f"  broker login {made.username} / {made.password} (client id {made.client_id}; shown once)")
    return 0


def cmd_integration_enable(args: argparse.Namespace) -> int:
    from citylab.admin import broker_admin
    from storage import connect

    database_url, dynsec = broker_admin(f"integration {args.integration_command}")
    with connect(database_url, autocommit=True) as conn:
        found = enable_integration(conn, dynsec, args.id, org=args.org, enabled=args.integration_command == "enable")
    if found is None:
        raise SystemExit(f"organisation {args.org!r} has no integration {args.id}")
    print(f"integration {found.id} of {found.org}: {'enabled' if found.enabled else 'disabled'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("integration", help="LoRaWAN network-server integrations")
    commands = parser.add_subparsers(dest="integration_command", required=True)
    create = commands.add_parser("create", help="connect a network server's MQTT integration: a broker login, or "
                                                "(The Things Stack, --server-url) ingest subscribes to its MQTT server")
    create.add_argument("--org", required=True, help="the organisation's slug")
    create.add_argument("--kind", required=True, choices=["tts", "chirpstack"])
    create.add_argument("--application-id", required=True)
    create.add_argument("--tenant-id", default="", help="The Things Stack tenant id ('' on The Things Network)")
    create.add_argument("--server-url",
                        help="The Things Stack MQTT server, e.g. mqtts://eu1.cloud.thethings.network:8883")
    create.add_argument("--server-username", help="its username, {application id}@{tenant id}")
    create.add_argument("--api-key-file", help="a file holding the API key ('-': standard input)")
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=cmd_integration_create)
    for verb in ("enable", "disable"):
        command = commands.add_parser(verb, help=f"{verb} an integration (and its broker login)")
        command.add_argument("--org", required=True)
        command.add_argument("--id", type=int, required=True)
        command.set_defaults(func=cmd_integration_enable)
