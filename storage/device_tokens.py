"""Device tokens: how a device that cannot speak MQTT authenticates its HTTP ingest.

A token is shown once when it is issued; only its SHA-256 is stored. It names one
(org, device) and works while that device is enabled and the token not revoked.
"""

from __future__ import annotations

import hashlib
import secrets

import psycopg

from storage.errors import map_errors

__all__ = ["TOKEN_PREFIX", "device_of_token", "issue_device_token", "revoke_device_tokens"]

TOKEN_PREFIX = "cld_"


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def issue_device_token(conn: psycopg.Connection, *, org: str, device: str) -> str:
    """A new token for `org`'s device (which must exist); the token itself is returned, never stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with map_errors(f"issue a token for {org}/{device}"):
        conn.execute("INSERT INTO device_tokens (org, device, token_hash) VALUES (%s, %s, %s)",
                     (org, device, _hash(token)))
    return token


def revoke_device_tokens(conn: psycopg.Connection, *, org: str, device: str) -> int:
    with map_errors(f"revoke the tokens of {org}/{device}"):
        return conn.execute("UPDATE device_tokens SET revoked_at = now()"
                            " WHERE org = %s AND device = %s AND revoked_at IS NULL", (org, device)).rowcount


def device_of_token(conn: psycopg.Connection, token: str) -> tuple[str, str] | None:
    """(org, device) of a valid token of an enabled device, else None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    with map_errors("check a device token"):
        row = conn.execute(
            "SELECT t.org, t.device FROM device_tokens t JOIN devices d ON d.org = t.org AND d.device = t.device"
            " WHERE t.token_hash = %s AND t.revoked_at IS NULL AND d.enabled", (_hash(token),)).fetchone()
    return None if row is None else (row[0], row[1])
