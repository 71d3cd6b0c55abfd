"""The ingest workers `citylab up` runs: one, or N on one shared subscription.

    CITYLAB_INGEST_WORKERS=1   component `ingest`, login `citylab-ingest`, topics lab/#
    CITYLAB_INGEST_WORKERS=N   components ingest-1 ... ingest-N, logins citylab-ingest-1 ...,
                               topics $share/ingest/lab/# (the broker hands each message
                               to one worker of the group)

Each worker has a broker login of its own, bound to the client id it takes
(`broker_security.share_client_id`), and a persistent session under that id. The
logins' passwords are kept in the lab home (`ingest-logins.json`, 0600), so that a
worker's client id, and with it its session, is the same at every start of the lab.

A worker that is no longer run (the lab restarted with fewer workers) would keep its
session and its place in the share group, and the broker would go on queueing its share
of the messages for it: its session is ended (a clean start with session expiry 0) and
its login deleted before the new workers start.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from citylab.embedded import write_private
from citylab.settings import Settings

if TYPE_CHECKING:
    from citylab.broker_security import DynSec
    from citylab.lab import Ports

__all__ = ["LOGINS_FILE", "IngestWorker", "plan_workers"]

logger = logging.getLogger("citylab.lab")

LOGINS_FILE = "ingest-logins.json"
SHARE_GROUP = "ingest"  # unless CITYLAB_INGEST_SHARE_GROUP names another


@dataclass(frozen=True, slots=True)
class IngestWorker:
    name: str             # the supervisor's component: ingest, or ingest-1 ... ingest-N
    env: dict[str, str]   # on top of the lab's children's environment
    metrics_url: str


@dataclass(frozen=True, slots=True)
class _Login:
    username: str
    password: str
    shared: bool          # on the share group: the client id has the host name appended

    def client_id(self, *, bound: bool) -> str:
        from citylab.broker_security import ingest_client_id, share_client_id

        client_id = ingest_client_id(self.username, self.password) if bound else self.username
        return share_client_id(client_id) if self.shared else client_id


def plan_workers(settings: Settings, home: Path, ports: Ports, mqtt_url: str,
                 dynsec: DynSec | None) -> list[IngestWorker]:
    """Make each worker's login (with `dynsec`), end the sessions of retired workers, and
    say how to start each worker."""
    from citylab.broker_security import new_password, url_with_credentials
    from ingest.mqtt import end_session

    count = settings.ingest_workers
    if count > 1 and dynsec is None and urlsplit(mqtt_url).username:
        from citylab.lab import LabError

        raise LabError("--ingest-workers above 1 needs a login per worker: give citylab the broker's "
                       "dynamic-security admin (CITYLAB_DYNSEC_PASSWORD) or a broker without logins")
    shared = count > 1 or settings.ingest_share_group is not None
    base = settings.ingest_client_id
    names = ["ingest"] if count == 1 else [f"ingest-{k}" for k in range(1, count + 1)]
    usernames = [base] if count == 1 else [f"{base}-{k}" for k in range(1, count + 1)]
    path = home / LOGINS_FILE
    kept = _read_logins(path)
    for username, login in list(kept.items()):
        if username in usernames and login.shared == shared:
            continue
        # retired (or moved in or out of the share group): its session goes, or the broker
        # would keep queueing messages for it
        url = mqtt_url
        if dynsec is not None:
            dynsec.create_ingest(username, login.password, share_group=login.shared)
            url = url_with_credentials(mqtt_url, username, login.password)
        client_id = login.client_id(bound=dynsec is not None)
        if end_session(url, client_id):
            logger.info("ended the broker session of the retired ingest worker %s", client_id)
        if dynsec is not None:
            dynsec.run([{"command": "deleteClient", "username": username}], ignore_errors=True)
        del kept[username]
    workers = []
    for name, username in zip(names, usernames):
        login = kept.get(username) or _Login(username, new_password(), shared)
        kept[username] = login
        env = {"CITYLAB_INGEST_CLIENT_ID": username, "CITYLAB_OUTBOUND_ALLOW_LOOPBACK": "true"}
        if dynsec is not None:
            dynsec.create_ingest(username, login.password, share_group=shared)
            env["CITYLAB_MQTT_URL"] = url_with_credentials(mqtt_url, username, login.password)
        if shared:
            env["CITYLAB_INGEST_SHARE_GROUP"] = settings.ingest_share_group or SHARE_GROUP
        port = (settings.ingest_metrics_port if count == 1 else None) or ports.get(
            "ingest-metrics" if count == 1 else f"{name}-metrics")
        env["CITYLAB_INGEST_METRICS_PORT"] = str(port)
        workers.append(IngestWorker(name, env, f"http://127.0.0.1:{port}/metrics"))
    write_private(path, json.dumps({u: {"password": x.password, "shared": x.shared} for u, x in kept.items()},
                                   indent=2))
    return workers


def _read_logins(path: Path) -> dict[str, _Login]:
    try:
        data = json.loads(path.read_text())
        return {u: _Login(u, str(v["password"]), bool(v["shared"])) for u, v in data.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}
