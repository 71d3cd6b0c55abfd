"""Notifications of NGSI-LD subscriptions, delivered after the commit.

A write of the face that committed calls `Notifier.changed(org, entities)`;
that only puts a job into a bounded queue (a full queue drops the job, logs it
and counts it in `dropped`: a write never waits for a receiver). One worker
thread takes jobs: for each active subscription of the organisation whose
entities, watched attributes and `q` match, and that its throttling lets
through, it renders the entity against the subscription's @context and POSTs
the notification to `notification.endpoint.uri` through the outbound guard
(no private addresses unless allowed, a timeout, a response size limit, no
redirects), retrying with backoff (0.5 s, 1 s, 2 s). Every delivery, good or
failed, is recorded on the subscription (`times_sent`, `last_success`,
`last_failure`, `last_error`).

Several API processes share nothing here but the database: each notifies the
changes its own writes made, and a throttled subscription's slot is claimed
with one atomic UPDATE (`claim_notification`), so that two processes never both
notify within its throttling. A job still in the queue of a process that dies
is lost (the write it follows is committed; its notification is not sent).
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from psycopg_pool import ConnectionPool

from api.ngsild.context import Context, ContextResolver, link_header
from api.ngsild.entities import render
from citylab.outbound import OutboundError, OutboundPolicy, check_url
from api.ngsild.request import Caller
from api.ngsild.selection import Selection, select
from storage.ngsild.subscriptions import (
    StoredSubscription, active_subscriptions, claim_notification, record_delivery,
)
from storage.tenants import Principal

__all__ = ["Notifier"]

logger = logging.getLogger("citylab.api.ngsild.notify")

BACKOFF_S = (0.5, 1.0, 2.0)
QUEUE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class _Job:
    org: str
    org_id: int
    changes: tuple[tuple[str, frozenset[str]], ...]   # (entity id, attribute IRIs changed)


class Notifier:
    def __init__(self, pool: ConnectionPool, resolver: ContextResolver, policy: OutboundPolicy) -> None:
        self._pool = pool
        self._resolver = resolver
        self._policy = policy
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.dropped = 0
        self._stopping = threading.Event()

    def changed(self, org: str, org_id: int, changes: list[tuple[str, set[str]]]) -> None:
        if not changes:
            return
        self._start()
        try:
            self._queue.put_nowait(_Job(org, org_id, tuple((e, frozenset(a)) for e, a in changes)))
        except queue.Full:
            self.dropped += 1
            logger.warning("notification queue full: changes of %d entities of %s not notified (%d dropped)",
                           len(changes), org, self.dropped)

    def close(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ngsild-notifier", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                self._handle(job)
            except Exception:  # a bad job must not stop the notifier
                logger.exception("notification job for %s failed", job.org)

    def _handle(self, job: _Job) -> None:
        with self._pool.connection() as conn:
            subscriptions = active_subscriptions(conn, org=job.org)
            for sub in subscriptions:
                data = self._matching(conn, sub, job)
                if data and (not sub.throttling_s or claim_notification(conn, id=sub.id, at=datetime.now(UTC))):
                    self._deliver(conn, sub, data)

    def _matching(self, conn, sub: StoredSubscription, job: _Job) -> list[dict[str, Any]]:
        spec = sub.subscription
        if sub.throttling_s and sub.last_notification is not None:
            if (datetime.now(UTC) - sub.last_notification).total_seconds() < sub.throttling_s:
                return []
        ctx = Context.of(self._resolver, sub.context[:-1] or None)
        watched = set(spec.get("watchedAttributes") or [])
        caller = Caller(Principal(0, sub.org_id, sub.org, "", "consumer"), sub.tenant)
        out = []
        for entity_id, attributes in job.changes:
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
    check_url(uri, policy)
    try:
        with httpx.Client(timeout=policy.timeout_s, follow_redirects=False) as client, \
                client.stream("POST", uri, content=json.dumps(body).encode(), headers=headers) as response:
            read = 0
            for chunk in response.iter_bytes():
                read += len(chunk)
                if read > policy.max_bytes:
                    break
            if not 200 <= response.status_code < 300:
                raise OutboundError(f"POST {uri} answered {response.status_code}")
    except httpx.HTTPError as exc:
        raise OutboundError(f"POST {uri} failed: {exc}") from None


def _now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")

