"""Notifications of NGSI-LD subscriptions, delivered after the commit.

What changed is written to the database's outbox (`storage.ngsild.changes`) in
the transaction that commits it: ingest records the devices and quantities of
every committed batch, whatever door the readings came through (MQTT, HTTP,
this face's writes), and this face records the context entities it wrote
(`Notifier.changed`). Nothing waits in memory, so the ingest process and any
number of API processes need no shared state, and a change committed while
no API runs is notified when one starts.

One worker thread per API process takes due changes under a lease (polling
every `POLL_S`, woken at once by a write of its own process): a device's
quantities become the entities of the models that measure them and those
models' attribute IRIs. For each active subscription of the organisation
whose entities, watched attributes and `q` match, and that its throttling lets
through, it renders the entity against the subscription's @context and POSTs
the notification to `notification.endpoint.uri` through the outbound guard
(no private addresses unless allowed, a timeout, a response size limit, no
redirects), retrying with backoff (0.5 s, 1 s, 2 s). Every delivery, good or
failed, is recorded on the subscription (`times_sent`, `last_success`,
`last_failure`, `last_error`); the changes are removed once handled. Two
processes may hold changes of one subscription at once: a throttled one's next
notification is claimed with one atomic UPDATE (`claim_notification`), so that
they never both notify within its throttling.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from psycopg_pool import ConnectionPool

from api.ngsild.context import Context, ContextResolver, link_header
from api.ngsild.entities import render
from api.ngsild.request import Caller
from api.ngsild.selection import Selection, select
from api.ngsild.vocabulary import MODELS
from citylab.outbound import OutboundError, OutboundPolicy, request
from storage.errors import StorageError
from storage.ngsild.changes import Change, claim_changes, finish_changes, record_entity_changes
from storage.ngsild.subscriptions import (
    StoredSubscription, active_subscriptions, claim_notification, record_delivery,
)
from storage.tenants import Principal

__all__ = ["Notifier", "entity_changes"]

logger = logging.getLogger("citylab.api.ngsild.notify")

BACKOFF_S = (0.5, 1.0, 2.0)
POLL_S = 0.25        # how often a worker looks for changes other processes committed
BATCH = 500          # changes taken at once
LEASE_S = 120.0      # a worker holding changes longer (it died) leaves them to another


def entity_changes(changes: list[Change]) -> dict[str, dict[str, set[str]]]:
    """org -> entity id -> attribute IRIs changed, merged over the changes: a device's
    quantities are the attributes of the entities of each model measuring them."""
    out: dict[str, dict[str, set[str]]] = {}
    for change in changes:
        entities = out.setdefault(change.org, {})
        if change.entity_id is not None:
            entities.setdefault(change.entity_id, set()).update(change.attributes)
            continue
        quantities = set(change.quantities)
        for model in MODELS.values():
            iris = {a.iri for a in model.attributes if a.quantity in quantities}
            if iris:
                entities.setdefault(f"urn:ngsi-ld:{model.name}:{change.org}:{change.device}", set()).update(iris)
    return out


class Notifier:
    def __init__(self, pool: ConnectionPool, resolver: ContextResolver, policy: OutboundPolicy) -> None:
        self._pool = pool
        self._resolver = resolver
        self._policy = policy
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()

    def changed(self, conn, org: str, changes: list[tuple[str, set[str]]]) -> None:
        """Record the context entities a write of this face committed (entity id, attribute IRIs)."""
        if changes and record_entity_changes(conn, org=org, changes=changes):
            self.start()
            self._wake.set()

    def start(self) -> None:
        with self._lock:
            if self._thread is None and not self._stopping.is_set():
                self._thread = threading.Thread(target=self._run, name="ngsild-notifier", daemon=True)
                self._thread.start()

    def close(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                busy = self._drain()
            except Exception:  # a bad change or a lost database must not stop the notifier
                logger.exception("NGSI-LD notifications failed; retrying")
                busy = False
            if not busy:
                self._wake.wait(POLL_S)
                self._wake.clear()

    def _drain(self) -> bool:
        """Handle one batch of due changes; whether there was any."""
        with self._pool.connection() as conn:
            changes = claim_changes(conn, limit=BATCH, lease_s=LEASE_S)
            if not changes:
                return False
            for org, entities in entity_changes(changes).items():
                self._handle(conn, org, entities)
            finish_changes(conn, [c.id for c in changes])
        return True

    def _handle(self, conn, org: str, entities: dict[str, set[str]]) -> None:
        for sub in active_subscriptions(conn, org=org):
            try:
                data = self._matching(conn, sub, entities)
                if data and (not sub.throttling_s or claim_notification(conn, id=sub.id, at=datetime.now(UTC))):
                    self._deliver(conn, sub, data)
            except StorageError:
                raise            # the database: the changes stay, leased, for the next try
            except Exception:    # one subscription that cannot be matched or rendered must not hold the rest
                logger.exception("NGSI-LD subscription %s: the changes of %s were not notified", sub.id, org)

    def _matching(self, conn, sub: StoredSubscription, entities: dict[str, set[str]]) -> list[dict[str, Any]]:
        spec = sub.subscription
        if sub.throttling_s and sub.last_notification is not None:
            if (datetime.now(UTC) - sub.last_notification).total_seconds() < sub.throttling_s:
                return []
        ctx = Context.of(self._resolver, sub.context[:-1] or None)
        watched = set(spec.get("watchedAttributes") or [])
        caller = Caller(Principal(0, sub.org_id, sub.org, "", "consumer"), sub.tenant)
        out = []
        for entity_id, attributes in sorted(entities.items()):
            if watched and not (watched & attributes):
                continue
            if not _entity_matches(spec.get("entities"), entity_id):
                continue
            selection = Selection.parse(ctx, id=entity_id, q=spec.get("q"), require=False)
            rows, _ = select(conn, caller, selection, offset=0, limit=1)
            if not rows:
                continue
            types = {e.get("type") for e in spec.get("entities") or [] if e.get("type")}
            if types and rows[0].native.type not in types:
                continue
            notification = spec.get("notification", {})
            picked = set(notification.get("attributes") or []) or None
            fmt = {"keyValues": "keyValues", "concise": "concise"}.get(notification.get("format"), "normalized")
            out.append(render(rows[0].native, ctx, fmt=fmt, pick=picked | {"id", "type"} if picked else None))
        return out

    def _deliver(self, conn, sub: StoredSubscription, data: list[dict[str, Any]]) -> None:
        endpoint = sub.subscription["notification"]["endpoint"]
        ctx_link = next((c for c in sub.context if isinstance(c, str)), None)
        body = {"id": f"urn:ngsi-ld:Notification:{uuid.uuid4()}", "type": "Notification",
                "subscriptionId": sub.id, "notifiedAt": _now_text(), "data": data}
        headers = {"Content-Type": "application/json"}
        if endpoint.get("accept") == "application/ld+json":
            headers["Content-Type"] = "application/ld+json"
            body["@context"] = sub.context
        elif ctx_link is not None:
            headers["Link"] = link_header(ctx_link)
        error = None
        for attempt, pause in enumerate((0.0, *BACKOFF_S)):
            if pause and self._stopping.wait(pause):
                break
            try:
                _post(endpoint["uri"], body, headers, self._policy)
                error = None
                break
            except OutboundError as exc:
                error = str(exc)
                logger.info("notification %s to %s, attempt %d: %s", sub.id, endpoint["uri"], attempt + 1, exc)
        record_delivery(conn, id=sub.id, at=datetime.now(UTC), ok=error is None, error=error)


def _entity_matches(selectors: list[dict[str, Any]] | None, entity_id: str) -> bool:
    if not selectors:
        return True
    for selector in selectors:
        if "id" in selector and selector["id"] != entity_id:
            continue
        if "idPattern" in selector and not re.search(selector["idPattern"], entity_id):
            continue
        return True
    return False


def _post(uri: str, body: dict[str, Any], headers: dict[str, str], policy: OutboundPolicy) -> None:
    answer = request("POST", uri, policy, content=json.dumps(body).encode(), headers=headers)
    if not 200 <= answer.status < 300:
        raise OutboundError(f"POST {uri} answered {answer.status}")


def _now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")

