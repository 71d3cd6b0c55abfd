"""Outbound requests to addresses users give (NGSI-LD `@context` URLs and
notification endpoints, alarm webhooks and SMTP servers), guarded against
server-side request forgery. One guard for every face and for ingest's
notifications.

A URL is fetched only when it is `http`/`https` and every address its host
resolves to is public: loopback, link-local, private, multicast, reserved and
unspecified addresses are refused unless `OutboundPolicy` allows them (the
embedded lab allows loopback so that local tools and tests work). The request
has a timeout, follows no redirects (a redirect could lead to a refused
address), ignores proxy settings of the environment and stops reading at
`max_bytes`.

The name is resolved once: the connection goes to the addresses that were
checked (`request`, `connect_smtp`), never to a second answer of the resolver,
so a DNS server that answers a public address to the check and 127.0.0.1 or
169.254.169.254 to the connection (DNS rebinding) reaches nothing. The request
still names the host: HTTP's `Host` header, TLS's SNI and the certificate
check are those of the name, not of the address.

Errors::

    OutboundError            refused, unreachable, too slow, too large or not a success
     └── OutboundRefused     the guard refuses the URL or an address it resolves to
"""

from __future__ import annotations

import ipaddress
import smtplib
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

__all__ = ["Answer", "OutboundError", "OutboundPolicy", "OutboundRefused", "Target", "check_address", "check_url",
           "connect_smtp", "fetch", "request"]


class OutboundError(Exception):
    """The URL is refused, unreachable, too slow, too large or not a success."""


class OutboundRefused(OutboundError):
    """The guard refuses the URL or an address its host resolves to."""


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    allow_loopback: bool = False
    allow_private: bool = False
    timeout_s: float = 5.0
    max_bytes: int = 1_000_000


@dataclass(frozen=True, slots=True)
class Target:
    """An http(s) URL whose host was resolved and checked: connect only to `addresses`."""

    url: str
    host: str
    port: int
    addresses: tuple[str, ...]   # every address the host resolved to, in the resolver's order


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes       # at most the policy's max_bytes
    truncated: bool   # the answer was longer than that


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


def check_address(host: str, port: int, policy: OutboundPolicy) -> tuple[str, ...]:
    """The addresses `host` resolves to, to connect to; OutboundRefused unless every one is allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError, UnicodeError) as exc:
        raise OutboundRefused(f"cannot resolve {host!r}: {exc}") from None
    addresses: list[str] = []
    for info in infos:
        text = info[4][0]
        address = ipaddress.ip_address(text.split("%")[0])
        reason = _refusal(address, policy)
        if reason is not None:
            raise OutboundRefused(f"{host!r} resolves to {address}, {reason}: refused")
        if text not in addresses:
            addresses.append(text)
    if not addresses:
        raise OutboundRefused(f"{host!r} resolves to no address")
    return tuple(addresses)


def check_url(url: str, policy: OutboundPolicy) -> Target:
    """`url` with the checked addresses of its host; OutboundRefused unless it is http(s) to allowed ones."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OutboundRefused(f"{url!r} is not an http or https URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise OutboundRefused(f"{url!r}: {exc}") from None
    return Target(url, parts.hostname, port, check_address(parts.hostname, port, policy))


def request(method: str, url: str, policy: OutboundPolicy, *, content: bytes | None = None,
            headers: dict[str, str] | None = None) -> Answer:
    """`method` `url` under the policy, connecting only to the addresses checked (the first that
    accepts the connection), with the name as Host, SNI and certificate name."""
    target = check_url(url, policy)
    try:
        original = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise OutboundRefused(f"{url!r}: {exc}") from None
    sent = {"Host": original.netloc.decode("ascii"), **(headers or {})}
    failure: Exception | None = None
    with httpx.Client(timeout=policy.timeout_s, follow_redirects=False, trust_env=False) as client:
        for address in target.addresses:
            pinned = original.copy_with(host=address.split("%")[0])
            try:
                with client.stream(method, pinned, content=content, headers=sent,
                                   extensions={"sni_hostname": target.host}) as response:
                    body = bytearray()
                    for chunk in response.iter_bytes():
                        body += chunk
                        if len(body) > policy.max_bytes:
                            return Answer(response.status_code, bytes(body[:policy.max_bytes]), True)
                    return Answer(response.status_code, bytes(body), False)
            except httpx.ConnectError as exc:   # nothing was sent: the next address may answer
                failure = exc
            except httpx.HTTPError as exc:
                raise OutboundError(f"{method} {url} failed: {exc}") from None
    raise OutboundError(f"{method} {url} failed: {failure}")


def fetch(url: str, policy: OutboundPolicy, *, accept: str = "application/ld+json, application/json") -> bytes:
    """GET `url` under the policy; the body, at most `policy.max_bytes`."""
    answer = request("GET", url, policy, headers={"Accept": accept})
    if answer.status != 200:
        raise OutboundError(f"GET {url} answered {answer.status}")
    if answer.truncated:
        raise OutboundError(f"GET {url}: the response exceeds {policy.max_bytes} bytes")
    return answer.body


class _PinnedSMTP(smtplib.SMTP):
    """An SMTP client that connects to checked addresses while it keeps the server's name
    (for STARTTLS's server_hostname)."""

    def __init__(self, addresses: tuple[str, ...], *, timeout: float) -> None:
        self._addresses = addresses
        super().__init__(timeout=timeout)

    def _get_socket(self, host, port, timeout):  # smtplib's seam: the name is not resolved again
        failure: OSError | None = None
        for address in self._addresses:
            try:
                return socket.create_connection((address, port), timeout)
            except OSError as exc:
                failure = exc
        raise failure or OSError(f"no address to connect to for {host!r}")


def connect_smtp(host: str, port: int, policy: OutboundPolicy) -> smtplib.SMTP:
    """An SMTP session with `host` under the policy, connected to the addresses checked."""
    smtp = _PinnedSMTP(check_address(host, port, policy), timeout=policy.timeout_s)
    try:
        smtp.connect(host, port)
    except BaseException:
        smtp.close()
        raise
    return smtp
