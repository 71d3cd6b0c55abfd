"""Outbound HTTP to addresses users give (`@context` URLs), guarded against
server-side request forgery.

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

__all__ = ["OutboundError", "OutboundPolicy", "fetch", "check_url"]


class OutboundError(Exception):
    """The URL is refused, unreachable, too slow, too large or not a success."""


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    allow_loopback: bool = False
    allow_private: bool = False
    timeout_s: float = 5.0
    max_bytes: int = 1_000_000


def _allowed(address: ipaddress.IPv4Address | ipaddress.IPv6Address, policy: OutboundPolicy) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return policy.allow_loopback
    if address.is_link_local or address.is_multicast or address.is_unspecified or address.is_reserved:
        return False
    if address.is_private:
        return policy.allow_private
    return address.is_global


def check_url(url: str, policy: OutboundPolicy) -> None:
    """Raise OutboundError unless `url` is http(s) to an allowed address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OutboundError(f"{url!r} is not an http or https URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError) as exc:
        raise OutboundError(f"cannot resolve {parts.hostname!r}: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not _allowed(address, policy):
            raise OutboundError(f"{parts.hostname!r} resolves to {address}, an address this server does not call")


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
