"""Who is asking, as an address: the peer, or — when the peer is a trusted reverse proxy — the
client that proxy names in `X-Forwarded-For`.

Anyone can send `X-Forwarded-For`; only a proxy we trust appends truthfully to it. Read from the
right, each trusted hop vouches for the hop before it, and the first hop that is not trusted is
the client: whatever stands further left is that client's own claim. From a peer that is not a
trusted proxy the header is ignored. Rate limits count per `rate_key`: the address, or for IPv6
its /64 (one host usually holds the whole /64, and could otherwise count afresh per address).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

from litestar.types import Scope

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_HOPS = 64  # a longer header is read from the right this far, no further
UNKNOWN = "?"


@functools.lru_cache(maxsize=32)
def trusted_networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    """`EVENTSCOPE_TRUSTED_PROXIES` parsed: addresses and CIDR networks (ValueError if not)."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)


def parse_address(text: str) -> Address | None:
    """An IP address as a header or the ASGI scope writes it (`[::1]:443`, `1.2.3.4:80` and
    IPv4-mapped IPv6 included), or None."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else text
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]  # IPv4 with a port
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, networks: Iterable[Network]) -> bool:
    return any(address in network for network in networks)


def _forwarded(scope: Scope) -> list[str]:
    """The hops of every X-Forwarded-For header, in order, at most MAX_HOPS from the right."""
    hops: list[str] = []
    for name, value in scope.get("headers", []):
        if name.lower() == b"x-forwarded-for":
            hops.extend(value.decode("latin-1").split(","))
    return hops[-MAX_HOPS:]


def client_address(scope: Scope, trusted: tuple[Network, ...]) -> str:
    """The client's address: see the module docstring."""
    peer = scope.get("client")
    host = str(peer[0]) if peer else UNKNOWN
    if not trusted:
        return host
    address = parse_address(host)
    if address is None or not _trusted(address, trusted):
        return host
    client = str(address)
    for hop in reversed(_forwarded(scope)):
        parsed = parse_address(hop)
        if parsed is None:
            return hop.strip()[:100] or client  # what the trusted proxy wrote, as it wrote it
        client = str(parsed)
        if not _trusted(parsed, trusted):
            return client
    return client  # every hop is a trusted proxy: the left-most is the client


def rate_key(client: str) -> str:
    """What a rate limit counts by: the IPv4 address, or the IPv6 /64."""
    address = parse_address(client)
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return client
