"""Where a streaming read replica stands against its primary (PostgreSQL's WAL positions).

    written_lsn(primary)          the end of the WAL the primary has written into, so far: every
                                  transaction committed before this call ends at or before it
    replayed(replica, lsn)        the replica has replayed up to `lsn` (it sees those commits); None: no replica
    replica_state(replica)        in recovery, replay position, seconds since its last replayed commit
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from storage.errors import map_errors

__all__ = ["ReplicaState", "replayed", "replica_state", "written_lsn"]


def written_lsn(conn: psycopg.Connection) -> str:
    """The primary's WAL insert position (`pg_lsn` as text). The insert position, not the
    flushed one: with `synchronous_commit = off` a commit may be visible before it is flushed."""
    with map_errors("primary WAL position"):
        return conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0]


def replayed(conn: psycopg.Connection, lsn: str) -> bool | None:
    """Has the replica replayed the primary's WAL up to `lsn`? None when the server is no replica."""
    with map_errors("replica replay position"):
        row = conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()
    return row[0]


@dataclass(frozen=True, slots=True)
class ReplicaState:
    in_recovery: bool            # False: this server is a primary (promoted, or misconfigured)
    replay_lsn: str | None
    replay_age_s: float | None   # since the last replayed commit (grows while the primary is idle)


def replica_state(conn: psycopg.Connection) -> ReplicaState:
    with map_errors("replica state"):
        row = conn.execute(
            "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text,"
            " extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8").fetchone()
    return ReplicaState(bool(row[0]), row[1], None if row[2] is None else round(max(row[2], 0.0), 3))
