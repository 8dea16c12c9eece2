"""The only HTTP code in monitor: feeds and article pages, fetched defensively.

Every network or server problem comes back as a `FetchFailed` value whose
message names the URL, says what happened and what to do; exceptions are
raised only for programming errors. One `Fetcher` is shared by all polling
threads::

    fetch_feed(url, validators) / fetch_page(url, feed_url=...)
      └─ _fetch: wait for a per-host slot, then a global slot; start the deadline
           └─ one hop per redirect (followed here, never by httpx), each hop:
                vet scheme and literal IP ─► send ─► 3xx: next hop │ 304 │ 4xx/5xx │ 2xx: body
                └─ body: iter_raw() ─► _BoundedDecoder (gzip/deflate, output capped)
    connect time (httpcore network backend, every hop, every new connection):
      resolver(host) ─► every address vetted by AddressPolicy ─► connect to exactly that IP
      ─► a stream whose every read/write is bounded by the request's deadline

Trust. A feed URL comes from the user's configuration, so its site (host and
port) may resolve to a private or loopback address: a user may run a local
feed. Anything else (article links found in feed content, and any redirect
that leaves the feed's site) may only reach globally routable unicast
addresses, unless the host is listed in `allow_private_hosts`. An article
link on the very site of the feed that listed it is trusted like the feed.
Requests to the trusted site and to everything else go through two separate
connection pools, so a kept-alive connection to a private host can never be
reused by an untrusted request.

Limits. `FetchLimits.timeout` covers the whole request (slot wait excluded):
connect, TLS, headers, every body read and every redirect hop; httpx itself
only has per-read timeouts, so a 1 byte/s drip would otherwise never end.
The body cap counts *decoded* bytes and the decompressor output is bounded
per step, so a gzip bomb stops at the cap with bounded memory.

Content-Encoding: gzip and deflate only. `br` is never advertised: bounded
brotli decoding needs the optional `brotli` package (1.2 or later, for
`output_buffer_limit`), which is not a dependency; a server that sends `br`
(or any other coding) anyway gets a DECODING failure.

Cache validators: ETag and Last-Modified are ignored when the response says
`Cache-Control: no-store` or `Expires: 0`. Servers that forbid caching are
the ones seen answering 304 forever while the content changes (a stuck
feed); an unconditional GET only costs bandwidth.
"""

from __future__ import annotations

import concurrent.futures
import email.utils
import ipaddress
import logging
import re
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.cookiejar import CookieJar, DefaultCookiePolicy
from types import TracebackType
from typing import Any, Self

import httpcore
import httpx

from monitor import DEFAULT_USER_AGENT
from monitor.models import (
    Fetched,
    FetchErrorKind,
    FetchFailed,
    FetchLimits,
    FetchResult,
    NotModified,
    Validators,
)

__all__ = [
    "DEFAULT_USER_AGENT",
    "MAX_RETRY_AFTER",
    "AddressPolicy",
    "FetchLimits",
    "Fetcher",
    "Resolver",
    "host_of",
    "non_global_reason",
    "parse_retry_after",
    "site_of",
    "system_resolver",
]

logger = logging.getLogger(__name__)

MAX_RETRY_AFTER = timedelta(hours=24)

FEED_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, "
    "application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, */*;q=0.5"
)
PAGE_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"
ACCEPT_ENCODING = "gzip, deflate"

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_MIB = 1024 * 1024
# Decompressor output per step: bounds memory whatever the compression ratio.
_DECODE_STEP = 64 * 1024
# A stored validator is sent back verbatim in a header: keep only short, printable ASCII.
_VALIDATOR_PATTERN = re.compile(r"[\x20-\x7e]{1,1024}")

_NO_VALIDATORS = Validators()
_DEFAULT_LIMITS = FetchLimits()

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


# --------------------------------------------------------------------------- deadline

# The monotonic deadline of the request running in this thread. Connections are
# pooled and shared, so the deadline is looked up at each read, not stored on the stream.
_request_deadline: ContextVar[float | None] = ContextVar("monitor_fetch_deadline", default=None)


def _bounded_timeout(timeout: float | None, on_expiry: type[Exception]) -> float | None:
    deadline = _request_deadline.get()
    if deadline is None:
        return timeout
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise on_expiry("the request deadline has passed")
    return remaining if timeout is None else min(timeout, remaining)


class _DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every operation also ends at the current request's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded_timeout(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bounded_timeout(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded_timeout(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


# --------------------------------------------------------------------------- connect-time guard


class _AddressBlocked(Exception):
    """Raised inside httpcore's connect; passes through httpx unchanged (not an httpcore error)."""

    def __init__(self, host: str, address: IPAddress, reason: str) -> None:
        super().__init__(f"{host} resolves to {address}, a {reason} address")
        self.host = host
        self.address = address
        self.reason = reason


class _GuardedBackend(httpcore.SyncBackend):
    """Resolves with the injected resolver, vets every address, connects to exactly that IP.

    Connecting to the vetted IP (rather than letting the socket layer resolve
    the name again) closes the DNS-rebinding window. TLS still uses the host
    name for SNI and certificate checks: httpcore passes it to start_tls.
    `policy=None` is the trusted pool: any address.
    """

    def __init__(
        self,
        resolver: Resolver,
        policy: AddressPolicy | None,
        lookups: concurrent.futures.ThreadPoolExecutor,
    ) -> None:
        self._resolver = resolver
        self._policy = policy
        self._lookups = lookups

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        budget = _bounded_timeout(timeout, httpcore.ConnectTimeout)
        started = time.monotonic()
        addresses = self._resolve(host, port, budget)
        if self._policy is not None:
            for address in addresses:
                reason = self._policy.refusal(host, address)
                if reason is not None:
                    raise _AddressBlocked(host, address, reason)
        options = list(socket_options or ())
        last_error: Exception = httpcore.ConnectError(f"{host} has no address")
        for address in addresses:
            remaining = None if budget is None else budget - (time.monotonic() - started)
            if remaining is not None and remaining <= 0:
                raise httpcore.ConnectTimeout(f"could not connect to {host} in time")
            try:
                stream = super().connect_tcp(str(address), port, remaining, local_address, options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                last_error = error
                continue
            return _DeadlineStream(stream)
        raise last_error

    def _resolve(self, host: str, port: int, budget: float | None) -> list[IPAddress]:
        # getaddrinfo has no timeout of its own: run it aside and stop waiting at the budget.
        lookup = self._lookups.submit(self._resolver, host, port)
        try:
            answers = lookup.result(timeout=budget)
        except concurrent.futures.TimeoutError:
            lookup.cancel()
            raise httpcore.ConnectTimeout(
                f"the DNS lookup of {host} did not answer in time"
            ) from None
        except (socket.gaierror, UnicodeError) as error:
            raise httpcore.ConnectError(f"DNS lookup failed: {error}") from None
        addresses = [ipaddress.ip_address(answer) for answer in answers]
        if not addresses:
            raise httpcore.ConnectError("DNS lookup failed: no address")
        return addresses


class _PooledTransport(httpx.HTTPTransport):
    """httpx's transport with its connection pool rebuilt around our network backend.

    httpx 0.28 does not expose httpcore's `network_backend`; everything else
    (request/response conversion, exception mapping) is httpx's own code.
    """

    def __init__(
        self, backend: httpcore.NetworkBackend, limits: FetchLimits, ssl_context: ssl.SSLContext
    ) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.concurrency,
            max_keepalive_connections=limits.concurrency,
            keepalive_expiry=30.0,
            network_backend=backend,
        )


_TRUSTED_HOP = "monitor.trusted_hop"


class _RoutingTransport(httpx.BaseTransport):
    """Sends hops on the feed's own site through the trusted pool, all others through the guarded one."""

    def __init__(self, guarded: httpx.BaseTransport, trusted: httpx.BaseTransport) -> None:
        self._guarded = guarded
        self._trusted = trusted

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        trusted = request.extensions.pop(_TRUSTED_HOP, False) is True
        return (self._trusted if trusted else self._guarded).handle_request(request)

    def close(self) -> None:
        self._guarded.close()
        self._trusted.close()


# --------------------------------------------------------------------------- slots


class _HostSlots:
    """Per-host semaphores, created on demand and dropped when nobody holds or waits for them."""

    def __init__(self, per_host: int) -> None:
        self._per_host = per_host
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[threading.Semaphore, list[int]]] = {}

    def acquire(self, host: str, timeout: float | None) -> bool:
        with self._lock:
            semaphore, users = self._entries.setdefault(
                host, (threading.Semaphore(self._per_host), [0])
            )
            users[0] += 1
        acquired = semaphore.acquire(timeout=None if timeout is None else max(0.0, timeout))
        if not acquired:
            self._leave(host)
        return acquired

    def release(self, host: str) -> None:
        with self._lock:
            semaphore = self._entries[host][0]
        semaphore.release()
        self._leave(host)

    def _leave(self, host: str) -> None:
        with self._lock:
            users = self._entries[host][1]
            users[0] -= 1
            if users[0] == 0:
                del self._entries[host]


class _HeldHostSlot:
    """The per-host slot a request holds; moves when a redirect changes host."""

    def __init__(self, slots: _HostSlots, host: str) -> None:
        self._slots = slots
        self.host: str | None = None
        slots.acquire(host, None)
        self.host = host

    def move_to(self, host: str, timeout: float) -> bool:
        if host == self.host:
            return True
        self.release()
        if not self._slots.acquire(host, timeout):
            return False
        self.host = host
        return True

    def release(self) -> None:
        if self.host is not None:
            self._slots.release(self.host)
            self.host = None


# --------------------------------------------------------------------------- body decoding


class _TooLarge(Exception):
    pass


class _Corrupt(Exception):
    pass


class _ZlibLayer:
    """One gzip or deflate layer, decoded in bounded steps."""

    def __init__(self, coding: str) -> None:
        self._gzip = coding in ("gzip", "x-gzip")
        # "deflate" should be zlib-wrapped, but servers also send raw deflate. Until the
        # zlib attempt produces output, keep its input to replay it as raw deflate.
        self._undecided: bytearray | None = None if self._gzip else bytearray()
        self._decompressor = self._new()
        self._fed = False

    def _new(self) -> Any:
        if self._gzip:
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        return zlib.decompressobj(zlib.MAX_WBITS)

    def decode(self, data: bytes) -> Iterator[bytes]:
        if self._undecided is not None:
            self._undecided += data
        pending = data
        while pending:
            if self._decompressor.eof:
                if not self._gzip:
                    return  # bytes after the end of a deflate stream: ignored, as browsers do
                self._decompressor = self._new()  # a further gzip member follows
            self._fed = True
            try:
                piece = self._decompressor.decompress(pending, _DECODE_STEP)
            except zlib.error as error:
                if self._undecided is None:
                    raise _Corrupt(str(error)) from None
                pending, self._undecided = bytes(self._undecided), None
                self._decompressor = zlib.decompressobj(-zlib.MAX_WBITS)
                continue
            pending = self._decompressor.unconsumed_tail or self._decompressor.unused_data
            if piece:
                self._undecided = None
                yield piece

    def check_complete(self) -> None:
        if self._fed and not self._decompressor.eof:
            raise _Corrupt("the compressed stream is cut short")


class _BoundedDecoder:
    """Undoes Content-Encoding layers; more than `limit` decoded bytes raises _TooLarge."""

    def __init__(self, codings: Sequence[str], limit: int) -> None:
        self._layers = [_ZlibLayer(coding) for coding in reversed(codings)]
        self._limit = limit
        self._decoded = bytearray()

    def feed(self, data: bytes) -> None:
        self._push(0, data)

    def _push(self, depth: int, data: bytes) -> None:
        if depth == len(self._layers):
            if len(self._decoded) + len(data) > self._limit:
                raise _TooLarge
            self._decoded += data
            return
        for piece in self._layers[depth].decode(data):
            self._push(depth + 1, piece)

    def finish(self) -> bytes:
        for layer in self._layers:
            layer.check_complete()
        return bytes(self._decoded)


def _content_codings(header: str | None) -> list[str]:
    """The codings applied to the body, in order; identity dropped; unknown ones raise _Corrupt."""
    codings = [part.strip().lower() for part in (header or "").split(",")]
    codings = [coding for coding in codings if coding and coding != "identity"]
    unsupported = [c for c in codings if c not in ("gzip", "x-gzip", "deflate")]
    if unsupported:
        raise _Corrupt(
            f"the server used Content-Encoding {', '.join(unsupported)}, which we did not ask for"
        )
    return codings


# --------------------------------------------------------------------------- response details


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """Retry-After (delay in seconds or HTTP date) as a delay clamped to [0, 24 h]; None if unusable.

    `now` must be timezone-aware. Clamping happens on plain numbers before any
    datetime arithmetic: ``now + timedelta(seconds=10**12)`` would overflow.
    """
    if value is None:
        return None
    text = value.strip()
    limit = MAX_RETRY_AFTER.total_seconds()
    if re.fullmatch(r"[+-]?\d{1,40}", text):
        return timedelta(seconds=min(max(int(text), 0), int(limit)))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" or no zone: HTTP dates are always GMT
        when = when.replace(tzinfo=UTC)
    seconds = (when - now).total_seconds()
    return timedelta(seconds=min(max(seconds, 0.0), limit))


def _usable_validator(value: str | None) -> str | None:
    return value if value is not None and _VALIDATOR_PATTERN.fullmatch(value) else None


def _validators_from(headers: httpx.Headers) -> Validators:
    cache_control = headers.get("cache-control", "").lower()
    if "no-store" in cache_control or headers.get("expires", "").strip() == "0":
        return Validators()
    return Validators(
        etag=_usable_validator(headers.get("etag")),
        last_modified=_usable_validator(headers.get("last-modified")),
    )


def _status_text(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _status_advice(status: int) -> str:
    if status in (404, 410):
        return "the address does not exist (any more); check the URL"
    if status in (401, 403):
        return "access is refused; the site may require a login or block automated clients"
    if status == 429:
        return "the server is rate-limiting us; we will wait before asking again"
    if 500 <= status < 600:
        return "the server has a problem, usually temporary; it will be retried at the next poll"
    if 300 <= status < 400:
        return "the redirect has no usable Location header; check the URL"
    return "check the URL"


def _seconds(value: float) -> str:
    return f"{value:g} s"


# --------------------------------------------------------------------------- the fetcher


class _Failure(Exception):
    """Internal: ends a fetch; turned into a FetchFailed for the URL that was asked for."""

    def __init__(
        self,
        kind: FetchErrorKind,
        detail: str,
        *,
        status: int | None = None,
        retry_after: timedelta | None = None,
    ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.status = status
        self.retry_after = retry_after


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Fetcher:
    """Fetches feeds and article pages within `FetchLimits`, guarding against SSRF.

    Thread-safe; one instance is shared by all polling threads. A call blocks
    while waiting for a per-host slot, then a global slot; the deadline starts
    once both are held. Use as a context manager or call `close()`.

    `allow_private_hosts` / `allow_private_networks`: hosts and networks that
    links found in feeds may reach although they are not public (an intranet).
    `transport` replaces the network transport (tests, a proxy); the
    connect-time address guard is then the transport's business, although
    scheme checks, literal-IP checks, redirects, deadline and caps still apply.
    `resolver` maps host names to addresses (tests map fake names to 127.0.0.1).
    `wall_clock` gives the aware current time, used only for Retry-After dates.
    `ssl_context` replaces the default TLS settings (certifi's CA bundle,
    verification on), e.g. to trust a private CA; environment variables such
    as SSL_CERT_FILE are deliberately not read.
    """

    def __init__(
        self,
        limits: FetchLimits = _DEFAULT_LIMITS,
        *,
        allow_private_hosts: Collection[str] = (),
        allow_private_networks: Collection[str] = (),
        transport: httpx.BaseTransport | None = None,
        resolver: Resolver = system_resolver,
        wall_clock: Callable[[], datetime] = _utc_now,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.limits = limits
        self.policy = AddressPolicy(
            allowed_hosts=allow_private_hosts, allowed_networks=allow_private_networks
        )
        self._wall_clock = wall_clock
        self._lookups = concurrent.futures.ThreadPoolExecutor(
            max_workers=limits.concurrency, thread_name_prefix="monitor-dns"
        )
        if transport is None:
            if ssl_context is None:
                ssl_context = httpx.create_ssl_context(trust_env=False)
            transport = _RoutingTransport(
                guarded=_PooledTransport(
                    _GuardedBackend(resolver, self.policy, self._lookups), limits, ssl_context
                ),
                trusted=_PooledTransport(
                    _GuardedBackend(resolver, None, self._lookups), limits, ssl_context
                ),
            )
        self._client = httpx.Client(
            transport=transport,
            trust_env=False,  # no proxies or .netrc credentials from the environment
            follow_redirects=False,  # followed by _fetch, re-vetting each hop
            # A jar shared by every feed would grow forever and carry state between polls.
            cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
            headers={"User-Agent": limits.user_agent, "Accept-Encoding": ACCEPT_ENCODING},
        )
        self._host_slots = _HostSlots(limits.per_host)
        self._global_slots = threading.BoundedSemaphore(limits.concurrency)

    # ----------------------------------------------------------------- public API

    def fetch_feed(self, url: str, validators: Validators = _NO_VALIDATORS) -> FetchResult:
        """GET a configured feed, conditionally when `validators` are given (304 → NotModified).

        The feed's own site may be private or loopback (the user configured it);
        a redirect to another site is vetted like an article link.
        """
        headers = {"Accept": FEED_ACCEPT}
        etag = _usable_validator(validators.etag)
        last_modified = _usable_validator(validators.last_modified)
        if etag is not None:
            headers["If-None-Match"] = etag
        if last_modified is not None:
            headers["If-Modified-Since"] = last_modified
        sent = Validators(etag=etag, last_modified=last_modified)
        return self._fetch(url, trusted_site_url=url, headers=headers, sent_validators=sent)

    def fetch_page(self, url: str, *, feed_url: str) -> FetchResult:
        """GET an article page linked from the feed configured at `feed_url`.

        Untrusted: http/https only, and every hop must resolve to a public
        address unless it is on the site of `feed_url` (see `site_of`) or an
        allowed private host. `feed_url` is the configured URL, not the final
        one after redirects.
        """
        try:
            site_of(feed_url)
        except httpx.InvalidURL as error:
            raise ValueError(f"fetch_page: feed_url {feed_url!r} is not a URL ({error})") from None
        headers = {"Accept": PAGE_ACCEPT}
        return self._fetch(url, trusted_site_url=feed_url, headers=headers, sent_validators=None)

    def close(self) -> None:
        """Close pooled connections; in-flight DNS lookups are abandoned."""
        self._client.close()
        self._lookups.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ----------------------------------------------------------------- internals

    def _fetch(
        self,
        url: str,
        *,
        trusted_site_url: str,
        headers: dict[str, str],
        sent_validators: Validators | None,
    ) -> FetchResult:
        try:
            target = self._parse_target(url)
        except _Failure as failure:
            return FetchFailed(url=url, kind=failure.kind, message=f"{url}: {failure.detail}")
        try:
            trusted_site: tuple[str, int | None] | None = site_of(trusted_site_url)
        except httpx.InvalidURL:
            trusted_site = None
        host_slot = _HeldHostSlot(self._host_slots, host_of(target))
        try:
            with self._global_slots:
                started = time.monotonic()
                deadline = started + self.limits.timeout
                token = _request_deadline.set(deadline)
                try:
                    return self._follow(
                        target, trusted_site, headers, sent_validators, deadline, host_slot
                    )
                except _Failure as failure:
                    return FetchFailed(
                        url=url,
                        kind=failure.kind,
                        message=f"{url}: {failure.detail}",
                        status=failure.status,
                        retry_after=failure.retry_after,
                        elapsed=time.monotonic() - started,
                    )
                finally:
                    _request_deadline.reset(token)
        finally:
            host_slot.release()

    def _parse_target(self, url: str) -> httpx.URL:
        if not isinstance(url, str):
            raise TypeError(f"expected a URL string, got {type(url).__name__}")
        try:
            parsed = httpx.URL(url.strip())
        except httpx.InvalidURL as error:
            raise _Failure(FetchErrorKind.INVALID_URL, f"not a valid URL ({error})") from None
        self._check_scheme_and_host(parsed)
        return parsed

    @staticmethod
    def _check_scheme_and_host(parsed: httpx.URL) -> None:
        if parsed.scheme not in ("http", "https"):
            scheme = f"a {parsed.scheme}: URL" if parsed.scheme else "a URL without a scheme"
            raise _Failure(
                FetchErrorKind.BLOCKED,
                f"only http and https URLs are fetched, and this is {scheme}",
            )
        if not parsed.raw_host:
            raise _Failure(FetchErrorKind.INVALID_URL, "the URL has no host")
        if b"%" in parsed.raw_host:
            raise _Failure(FetchErrorKind.INVALID_URL, "the host name contains invalid characters")
        if parsed.port is not None and not 0 < parsed.port < 65536:
            raise _Failure(FetchErrorKind.INVALID_URL, f"port {parsed.port} does not exist")
        if b"%5c" in parsed.userinfo.lower():
            # http://127.0.0.1\@example.com/: browsers read host 127.0.0.1, httpx example.com.
            raise _Failure(
                FetchErrorKind.INVALID_URL,
                "a backslash before the host makes the URL ambiguous (clients disagree on its host)",
            )

    def _vet_literal_address(self, url: httpx.URL) -> None:
        """Refuse an IP-literal host before connecting; other spellings are caught at connect time."""
        host = host_of(url)
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return
        reason = self.policy.refusal(host, address)
        if reason is not None:
            raise _Failure(FetchErrorKind.BLOCKED, _blocked_detail(url, host, address, reason))

    def _follow(
        self,
        target: httpx.URL,
        trusted_site: tuple[str, int | None] | None,
        headers: dict[str, str],
        sent_validators: Validators | None,
        deadline: float,
        host_slot: _HeldHostSlot,
    ) -> FetchResult:
        started = time.monotonic()
        current = target
        visited = {str(target)}
        for _ in range(self.limits.max_redirects + 1):
            # A redirect to another host swaps the per-host slot (released first: no deadlock).
            if not host_slot.move_to(host_of(current), deadline - time.monotonic()):
                raise self._deadline_failure()
            trusted = trusted_site is not None and site_of(current) == trusted_site
            if not trusted:
                self._vet_literal_address(current)
            response = self._send(current, headers, trusted, deadline)
            try:
                status = response.status_code
                if status in _REDIRECT_STATUSES and "location" in response.headers:
                    following = self._redirect_target(current, response.headers["location"])
                    try:
                        self._check_scheme_and_host(following)
                    except _Failure as refused:
                        refused.detail = f"redirected to {following}, but {refused.detail}"
                        raise
                    if str(following) in visited:
                        raise _Failure(
                            FetchErrorKind.TOO_MANY_REDIRECTS,
                            f"redirect loop: {current} redirects back to {following}; "
                            "the site is misconfigured — check the URL in a browser",
                        )
                    logger.debug("%s: %d redirect to %s", current, status, following)
                    visited.add(str(following))
                    current = following
                    continue
                if (
                    status == 304
                    and sent_validators is not None
                    and sent_validators != _NO_VALIDATORS
                ):
                    fresh = _validators_from(response.headers)
                    return NotModified(
                        url=str(current),
                        validators=fresh if fresh != _NO_VALIDATORS else sent_validators,
                        elapsed=time.monotonic() - started,
                    )
                if not 200 <= status < 300:
                    raise self._status_failure(target, current, response)
                content = self._read_body(response, deadline)
                return Fetched(
                    url=str(current),
                    status=status,
                    headers=_describe_content(response.headers),
                    content=content,
                    validators=_validators_from(response.headers),
                    elapsed=time.monotonic() - started,
                )
            finally:
                response.close()
        raise _Failure(
            FetchErrorKind.TOO_MANY_REDIRECTS,
            f"more than {self.limits.max_redirects} redirects (last to {current}); "
            "use the final address in the configuration, or check the URL in a browser",
        )

    def _redirect_target(self, current: httpx.URL, location: str) -> httpx.URL:
        try:
            return current.join(location.strip())
        except httpx.InvalidURL as error:
            raise _Failure(
                FetchErrorKind.INVALID_URL,
                f"{current} redirects to {location!r}, which is not a valid URL ({error})",
            ) from None

    def _send(
        self, url: httpx.URL, headers: dict[str, str], trusted: bool, deadline: float
    ) -> httpx.Response:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._deadline_failure()
        timeout = httpx.Timeout(remaining, connect=min(self.limits.connect_timeout, remaining))
        request = self._client.build_request(
            "GET", url, headers=headers, timeout=timeout, extensions={_TRUSTED_HOP: trusted}
        )
        host = host_of(url)
        try:
            return self._client.send(request, stream=True)
        except _AddressBlocked as blocked:
            detail = _blocked_detail(url, host, blocked.address, blocked.reason)
            raise _Failure(FetchErrorKind.BLOCKED, detail) from None
        except httpx.ConnectTimeout as error:
            if time.monotonic() >= deadline:
                raise self._deadline_failure() from None
            raise _Failure(
                FetchErrorKind.TIMEOUT,
                f"could not connect to {host} within {_seconds(self.limits.connect_timeout)} "
                f"({error}); the server may be down or unreachable — it will be retried",
            ) from None
        except httpx.TimeoutException:
            raise self._deadline_failure() from None
        except httpx.ConnectError as error:
            raise _Failure(
                FetchErrorKind.CONNECTION,
                f"cannot connect to {host} ({error}); check the URL and whether the server is up",
            ) from None
        except httpx.RemoteProtocolError as error:
            raise _Failure(
                FetchErrorKind.CONNECTION,
                f"{host} did not send a valid HTTP response ({error}); "
                "the server may be overloaded or not an HTTP server",
            ) from None
        except httpx.NetworkError as error:
            raise _Failure(
                FetchErrorKind.CONNECTION,
                f"the connection to {host} failed ({error}); it will be retried",
            ) from None
        except (httpx.LocalProtocolError, httpx.UnsupportedProtocol, httpx.InvalidURL) as error:
            raise _Failure(
                FetchErrorKind.INVALID_URL, f"cannot request {url} ({error}); check the URL"
            ) from None

    def _status_failure(
        self, target: httpx.URL, url: httpx.URL, response: httpx.Response
    ) -> _Failure:
        status = response.status_code
        retry_after = None
        if status in (429, 503):
            retry_after = parse_retry_after(response.headers.get("retry-after"), self._wall_clock())
        where = "" if url == target else f" at {url}"
        detail = f"the server answered {_status_text(status)}{where}; {_status_advice(status)}"
        if retry_after is not None:
            detail += f" (Retry-After: {int(retry_after.total_seconds())} s)"
        return _Failure(FetchErrorKind.HTTP_STATUS, detail, status=status, retry_after=retry_after)

    def _read_body(self, response: httpx.Response, deadline: float) -> bytes:
        limits = self.limits
        cap = f"{limits.max_bytes / _MIB:g} MiB"
        too_large = _Failure(
            FetchErrorKind.TOO_LARGE,
            f"the body exceeds the {cap} limit (decoded); the server may be sending something "
            "other than a feed or article — check the URL",
        )
        try:
            codings = _content_codings(response.headers.get("content-encoding"))
        except _Corrupt as error:
            raise _Failure(FetchErrorKind.DECODING, f"{error}; the body cannot be read") from None
        declared = _declared_length(response.headers.get("content-length"))
        raw_cap = limits.max_raw_bytes if codings else limits.max_bytes
        if declared is not None and declared > raw_cap:
            raise too_large
        decoder = _BoundedDecoder(codings, limits.max_bytes)
        received = 0
        try:
            for chunk in response.iter_raw():
                received += len(chunk)
                if received > raw_cap:
                    raise too_large
                decoder.feed(chunk)
                if time.monotonic() >= deadline:
                    raise self._deadline_failure()
            return decoder.finish()
        except _TooLarge:
            raise too_large from None
        except _Corrupt as error:
            raise _Failure(
                FetchErrorKind.DECODING,
                f"the compressed body is corrupt ({error}); nothing was kept — it will be retried",
            ) from None
        except httpx.TimeoutException:
            raise self._deadline_failure() from None
        except httpx.RemoteProtocolError as error:
            raise _Failure(
                FetchErrorKind.DECODING,
                f"the body was cut short after {received} bytes ({error}); "
                "nothing was kept — it will be retried",
            ) from None
        except httpx.NetworkError as error:
            raise _Failure(
                FetchErrorKind.CONNECTION,
                f"the connection broke while reading the body ({error}); it will be retried",
            ) from None

    def _deadline_failure(self) -> _Failure:
        return _Failure(
            FetchErrorKind.TIMEOUT,
            f"no complete response within {_seconds(self.limits.timeout)} (the limit for the whole "
            "request, redirects included); the server is too slow or stalled — it will be retried",
        )


def _blocked_detail(url: httpx.URL, host: str, address: IPAddress, reason: str) -> str:
    where = host if host == str(address) else f"{host} ({address})"
    return (
        f"refused to connect to {where}, a {reason} address, for {url}; only the configured "
        "feed's own site may be private — add the host to allow_private_hosts if it is yours"
    )


def _declared_length(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


def _describe_content(headers: httpx.Headers) -> dict[str, str]:
    """Response headers, lower-cased; those describing the wire encoding are dropped (the body is decoded)."""
    return {
        name: value
        for name, value in headers.items()
        if name not in ("content-encoding", "content-length", "transfer-encoding")
    }
