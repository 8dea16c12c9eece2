"""URL and host helpers, and the SSRF address policy: which addresses a request may reach.

Trust. A feed URL comes from the user's configuration, so its site (host and
port) may resolve to a private or loopback address: a user may run a local
feed. Anything else (article links found in feed content, and any redirect
that leaves the feed's site) may only reach globally routable unicast
addresses, unless the host is listed in the `Fetcher`'s `allow_private_hosts`
argument. An article link on the very site of the feed that listed it is
trusted like the feed.

The policy is applied to every resolved address at connect time (see
`monitor.fetch.transport.GuardedBackend`) and to IP-literal hosts before
connecting (`Fetcher`).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Collection, Sequence

import httpx

__all__ = [
    "AddressPolicy",
    "IPAddress",
    "Resolver",
    "host_of",
    "non_global_reason",
    "site_of",
    "system_resolver",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]
"""Maps (host, port) to IP address strings; raises `socket.gaierror` when the name is unknown."""


# --------------------------------------------------------------------------- URLs


def _parse(url: str | httpx.URL) -> httpx.URL:
    return url if isinstance(url, httpx.URL) else httpx.URL(url.strip())


def host_of(url: str | httpx.URL) -> str:
    """The URL's host as compared and rate-limited here: lower case, IDNA-encoded, no trailing dot.

    IPv6 literals come without brackets. Raises `httpx.InvalidURL` for an unparsable URL.
    """
    return _parse(url).raw_host.decode("ascii").lower().rstrip(".")


def site_of(url: str | httpx.URL) -> tuple[str, int | None]:
    """(host, port) identifying the server a URL points to; None stands for the default web ports.

    80 and 443 count as the same site, so that an http → https upgrade of a
    local feed stays on its site, while another port of the same host (another
    service) does not.
    """
    parsed = _parse(url)
    port = parsed.port
    return host_of(parsed), None if port in (None, 80, 443) else port


def _normalise_host_name(name: str) -> str:
    try:
        return host_of(f"http://{name.strip()}/")
    except httpx.InvalidURL as error:
        raise ValueError(f"allow_private_hosts: {name!r} is not a host name ({error})") from None


# --------------------------------------------------------------------------- addresses

_SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")  # RFC 6598 carrier-grade NAT
_NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052, embeds an IPv4 address
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated ::a.b.c.d


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    if address.ipv4_mapped is not None:
        return "IPv4-mapped", address.ipv4_mapped
    if address.sixtofour is not None:
        return "6to4", address.sixtofour
    if address.teredo is not None:
        return "Teredo", address.teredo[1]
    if address in _NAT64_PREFIX:
        return "NAT64", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _IPV4_COMPATIBLE and int(address) > 1:
        return "IPv4-compatible", ipaddress.IPv4Address(int(address))
    return None


def non_global_reason(address: IPAddress) -> str | None:
    """Why `address` is not a globally routable unicast address, or None when it is.

    IPv6 forms that carry an IPv4 address (mapped, 6to4, Teredo, NAT64,
    compatible) are judged by that IPv4 address too: ``ipaddress`` calls
    ``2002:7f00:1::`` (6to4 of 127.0.0.1) global and ``::ffff:127.0.0.1`` not loopback.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            form, ipv4 = embedded
            inner = non_global_reason(ipv4)
            if inner is not None:
                return f"{form} {inner} ({ipv4})"
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED_ADDRESS_SPACE:
        return "shared carrier-grade NAT"
    if address.is_multicast:
        return "multicast"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "non-global"
    return None


class AddressPolicy:
    """Decides which resolved addresses an untrusted request may connect to.

    By default only globally routable unicast addresses; `allowed_hosts`
    (host names, compared like `host_of`) may resolve anywhere, and addresses
    inside `allowed_networks` (e.g. ``"10.1.0.0/16"``) are accepted for any host.
    """

    def __init__(
        self, *, allowed_hosts: Collection[str] = (), allowed_networks: Collection[str] = ()
    ) -> None:
        if isinstance(allowed_hosts, str) or isinstance(allowed_networks, str):
            raise TypeError("AddressPolicy: pass collections of strings, not a single string")
        self.allowed_hosts = frozenset(_normalise_host_name(name) for name in allowed_hosts)
        self.allowed_networks = tuple(ipaddress.ip_network(net) for net in allowed_networks)

    def refusal(self, host: str, address: IPAddress) -> str | None:
        """None when `host` may be reached at `address`, else why not (e.g. ``"loopback"``)."""
        if host.lower().rstrip(".") in self.allowed_hosts:
            return None
        if any(address in network for network in self.allowed_networks):
            return None
        return non_global_reason(address)


def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's resolver (``getaddrinfo``): IP strings, first-preferred first."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))
