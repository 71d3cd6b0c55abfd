"""Which database answers: writes on the primary, reads on the read replica when it has caught up.

    DatabaseRoutes(writer, reader, max_wait_s=...)
        writer                  the primary's pool: every write, and what must be exact at once
                                (authentication, so that a revoked key is refused at once; the
                                audit log and the metering of reads; the keyless rate limit)
        read(writer_conn)       a connection for one request's reads: the replica's once it has
                                replayed every commit made before the request began, waiting at
                                most `max_wait_s`; else `writer_conn` itself (the primary)
        reading(lsn)            the same for a stream that outlives its request (exports): the
                                replica, or a connection of the writer pool
        replica_health(...)     the replica's state for /health (None when there is none)

Read-your-writes holds across API processes without any state of theirs: a request first asks
the primary where its WAL ends (`storage.replica.written_lsn`, one round trip) and reads on the
replica only once its replay has passed that point, so a device onboarded or a product created
a moment ago, through any replica of the API, is seen. A replica that does not answer (or no
longer is one) is left alone for `RETRY_S`; reads go to the primary meanwhile, and /health says so.
The routing state here is a per-process cache of the replica's health, nothing another API
process needs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from citylab.probes import ComponentHealth
from storage.errors import StorageError, map_errors
from storage.replica import replayed, replica_state, written_lsn

__all__ = ["DatabaseRoutes"]

logger = logging.getLogger("citylab.api.routing")

RETRY_S = 5.0            # a replica that failed is tried again after this long
CHECKOUT_TIMEOUT_S = 1.0  # waiting for a replica connection, before reading on the primary
POLL_S = 0.002           # between two looks at the replica's replay position


class DatabaseRoutes:
    def __init__(self, writer: ConnectionPool, reader: ConnectionPool | None, *, max_wait_s: float = 0.2) -> None:
        self.writer = writer
        self.reader = reader
        self.max_wait_s = max_wait_s
        self._lock = threading.Lock()
        self._retry_at = 0.0
        self._down_reason: str | None = None
        self.reads = {"replica": 0, "primary": 0}   # where reads went, this process (for /metrics)

    @property
    def has_replica(self) -> bool:
        return self.reader is not None

    def lsn_for_read(self, writer_conn: psycopg.Connection) -> str | None:
        """Where the primary's WAL ends now; None when there is no replica worth asking."""
        return written_lsn(writer_conn) if self._usable() else None

    @contextmanager
    def read(self, writer_conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
        with self._replica(self.lsn_for_read(writer_conn)) as conn:
            yield conn if conn is not None else writer_conn

    @contextmanager
    def reading(self, lsn: str | None) -> Iterator[psycopg.Connection]:
        with self._replica(lsn) as conn:
            if conn is not None:
                yield conn
                return
        with map_errors("get a database connection"), self.writer.connection() as conn:
            yield conn

    @contextmanager
    def _replica(self, lsn: str | None) -> Iterator[psycopg.Connection | None]:
        """A replica connection that sees every commit up to `lsn`, or None (read on the primary)."""
        with ExitStack() as stack:
            conn = None
            if lsn is not None and self.reader is not None and self._usable():
                try:
                    conn = stack.enter_context(self.reader.connection(timeout=CHECKOUT_TIMEOUT_S))
                    if not self._caught_up(conn, lsn):
                        stack.close()   # back to the pool: this request reads on the primary
                        conn = None
                except (PoolTimeout, psycopg.Error, StorageError) as exc:
                    self._down(f"the replica does not answer: {exc}")
                    conn = None
            with self._lock:
                self.reads["replica" if conn is not None else "primary"] += 1
            try:
                yield conn
            except StorageError:
                if conn is not None and conn.broken:
                    self._down("the replica's connection broke during a read")
                raise

    def _caught_up(self, conn: psycopg.Connection, lsn: str) -> bool:
        deadline = time.monotonic() + self.max_wait_s
        while True:
            done = replayed(conn, lsn)
            if done is None:
                self._down("the replica server is not in recovery (promoted?); reads stay on the primary")
                return False
            if done:
                return True
            if time.monotonic() >= deadline:
                logger.debug("replica behind %s after %.3f s: this read goes to the primary", lsn, self.max_wait_s)
                return False
            time.sleep(POLL_S)

    def _usable(self) -> bool:
        return self.reader is not None and time.monotonic() >= self._retry_at

    def _down(self, reason: str) -> None:
        with self._lock:
            if self._down_reason is None or time.monotonic() >= self._retry_at:
                logger.warning("%s; reads go to the primary for %.0f s", reason, RETRY_S)
            self._down_reason = reason
            self._retry_at = time.monotonic() + RETRY_S

    def replica_health(self, *, timeout: float) -> ComponentHealth | None:
        """up (in recovery and answering) with how far it is behind the primary, or down and why."""
        if self.reader is None:
            return None
        try:
            with map_errors("replica health"), self.writer.connection(timeout=timeout) as primary:
                lsn = written_lsn(primary)
            with map_errors("replica health"), self.reader.connection(timeout=timeout) as conn:
                state = replica_state(conn)
                caught_up = replayed(conn, lsn)
        except (StorageError, PoolTimeout) as exc:
            self._down(f"the replica does not answer: {exc}")
            return ComponentHealth("replica", False, "the read replica does not answer; reads go to the primary")
        if not state.in_recovery:
            return ComponentHealth("replica", False, "the replica server is not in recovery (promoted?); "
                                                     "reads go to the primary")
        lag = 0.0 if caught_up else state.replay_age_s
        with self._lock:
            if self._down_reason is not None and time.monotonic() >= self._retry_at:
                self._down_reason = None
        return ComponentHealth("replica", True, None if caught_up else f"replayed up to {state.replay_lsn}",
                               lag_seconds=lag)
