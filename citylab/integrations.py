"""Connecting a LoRaWAN network server: the integration row and its broker login, together.

Used by `POST /v1/integrations` and by `citylab integration create`. The login
(`integration-{id}`) is bound to that client id and may publish on the
integration's uplink topics only (`storage.integrations.integration_filter`).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

import psycopg

from citylab.broker_security import BrokerSecurityError, DynSec, new_password
from storage.integrations import (
    Integration,
    create_integration,
    delete_integration,
    integration_filter,
    integration_filters,
    set_integration_username,
)

__all__ = ["ConnectedIntegration", "connect_integration", "register"]


@dataclass(frozen=True, slots=True)
class ConnectedIntegration:
    integration: Integration
    topic: str
    username: str
    password: str   # shown once
    client_id: str


def connect_integration(conn: psycopg.Connection, dynsec: DynSec, *, org: str, kind: str, application_id: str,
                        tenant_id: str = "") -> ConnectedIntegration:
    """Raises storage.integrations.IntegrationConflict, ValueError (a ChirpStack tenant), BrokerSecurityError."""
    if kind == "chirpstack" and tenant_id:
        raise ValueError("a ChirpStack integration has no tenant id")
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


def cmd_integration_create(args: argparse.Namespace) -> int:
    from citylab.admin import broker_admin
    from citylab.cli import _settings
    from storage import connect

    settings = _settings()
    database_url, dynsec = broker_admin("integration create")
    with connect(database_url, autocommit=True) as conn:
        made = connect_integration(conn, dynsec, org=args.org,
                                   kind=args.kind, application_id=args.application_id, tenant_id=args.tenant_id)
    out = {"id": made.integration.id, "org": args.org, "kind": args.kind, "topic": made.topic,
           "mqtt": {"url": settings.mqtt_public_url or f"mqtt://{dynsec.host}:{dynsec.port}", "username": made.username,
                    "password": made.password, "client_id": made.client_id}}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"integration {out['id']} of {args.org}: the network server publishes on {made.topic}")
        print(f"  broker login {made.username} / {made.password} (client id {made.client_id}; shown once)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("integration", help="LoRaWAN network-server integrations")
    commands = parser.add_subparsers(dest="integration_command", required=True)
    create = commands.add_parser("create", help="connect a network server's MQTT integration: a broker login")
    create.add_argument("--org", required=True, help="the organisation's slug")
    create.add_argument("--kind", required=True, choices=["tts", "chirpstack"])
    create.add_argument("--application-id", required=True)
    create.add_argument("--tenant-id", default="", help="The Things Stack tenant id ('' on The Things Network)")
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=cmd_integration_create)
