"""The plans PostgreSQL chose for the statements a piece of code ran (auto_explain)."""

from __future__ import annotations

from collections.abc import Callable

import psycopg


def plans_of(conn: psycopg.Connection, run: Callable[[], object]) -> str:
    """Run `run()` on `conn` with sequential scans priced out and return the plan of every
    statement it executed, nested ones included."""
    conn.execute("SET enable_seqscan = off")
    conn.execute("LOAD 'auto_explain'")
    conn.execute("SET auto_explain.log_min_duration = 0")
    conn.execute("SET auto_explain.log_nested_statements = on")
    conn.execute("SET client_min_messages = log")
    conn.execute("SET auto_explain.log_level = notice")
    plans: list[str] = []
    conn.add_notice_handler(lambda diag: plans.append(diag.message_primary or ""))
    run()
    conn.execute("SELECT 1")  # the last statement's plan arrives with the next round trip
    return "\n".join(plans)
