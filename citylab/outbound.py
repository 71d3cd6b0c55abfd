"""Outbound requests to addresses users give (NGSI-LD `@context` URLs and
notification endpoints, alarm webhooks and SMTP servers), guarded against
server-side request forgery. One guard for every face and for ingest's
notifications.

A URL is fetched only when it is `http`/`https` and every address its host
resolves to is public: loopback, link-local, private, multicast, reserved and
unspecified addresses are refused unless `OutboundPolicy` allows them (the
embedded lab allows loopback so that local tools and tests work). The request
has a timeout, follows no redirects (a redirect could lead to a refused
address) and stops reading at `max_bytes`.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

__all__ = ["OutboundError", "OutboundPolicy", "check_address", "check_url", "fetch"]


class OutboundError(Exception):
    """The URL is refused, unreachable, too slow, too large or not a success."""


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    allow_loopback: bool = False
    allow_private: bool = False
    timeout_s: float = 5.0
    max_bytes: int = 1_000_000


def _refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address, policy: OutboundPolicy) -> str | None:
    """Why `address` may not be called under `policy`; None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped   # ::ffff:10.0.0.1 is 10.0.0.1
    if address.is_loopback:
        return None if policy.allow_loopback else "a loopback address"
    if address.is_link_local or address.is_multicast or address.is_unspecified or address.is_reserved:
        return "not a routable unicast address"
    if address.is_private or not address.is_global:
        return None if policy.allow_private else "a private address"
    return None


def check_address(host: str, port: int, policy: OutboundPolicy) -> None:
    """Raise OutboundError unless every address `host` resolves to is allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError, UnicodeError) as exc:
        raise OutboundError(f"cannot resolve {host!r}: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        reason = _refusal(address, policy)
        if reason is not None:
            raise OutboundError(f"{host!r} resolves to {address}, {reason}: refused")


def check_url(url: str, policy: OutboundPolicy) -> None:
    """Raise OutboundError unless `url` is http(s) to an allowed address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OutboundError(f"{url!r} is not an http or https URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise OutboundError(f"{url!r}: {exc}") from None
    check_address(parts.hostname, port, policy)


def fetch(url: str, policy: OutboundPolicy, *, accept: str = "application/ld+json, application/json") -> bytes:
    """GET `url` under the policy; the body, at most `policy.max_bytes`."""
    check_url(url, policy)
    try:
        with httpx.Client(timeout=policy.timeout_s, follow_redirects=False) as client, \
                client.stream("GET", url, headers={"Accept": accept}) as response:
            if response.status_code != 200:
                raise OutboundError(f"GET {url} answered {response.status_code}")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > policy.max_bytes:
                    raise OutboundError(f"GET {url}: the response exceeds {policy.max_bytes} bytes")
            return bytes(body)
    except httpx.HTTPError as exc:
        raise OutboundError(f"GET {url} failed: {exc}") from None
