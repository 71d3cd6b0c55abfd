"""How a device that cannot speak MQTT authenticates its HTTP ingest: a device token, or its
own broker login.

A token is shown once when it is issued; only its SHA-256 is stored. It names one
(org, device) and works while that device is enabled and the token not revoked.

A broker login (`<org>.<device>` and its password) works over HTTP Basic as well:
the broker's plugin keeps its own salted hash and hands out none, so citylab
keeps `devices.mqtt_password_sha256`, written whenever it creates or rotates the
login. The password is 192 random bits, so a fast hash is enough. A login made
before that column (NULL) authenticates on MQTT only until it is rotated.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import psycopg

from storage.errors import map_errors

__all__ = ["TOKEN_PREFIX", "device_of_login", "device_of_token", "issue_device_token", "password_verifier",
           "revoke_device_tokens"]

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


def password_verifier(password: str) -> bytes:
    """What `devices.mqtt_password_sha256` holds for a broker password."""
    return _hash(password)


def device_of_login(conn: psycopg.Connection, username: str, password: str) -> tuple[str, str] | None:
    """(org, device) of an enabled device whose broker login this is, else None."""
    if not username or len(username) > 200 or len(password) > 200:
        return None
    with map_errors("check a device login"):
        row = conn.execute("SELECT org, device, mqtt_password_sha256 FROM devices"
                           " WHERE mqtt_username = %s AND enabled", (username,)).fetchone()
    if row is None or row[2] is None or not hmac.compare_digest(bytes(row[2]), _hash(password)):
        return None
    return row[0], row[1]
