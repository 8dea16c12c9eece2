"""The `Fetcher`: feeds and article pages fetched defensively, every problem a `FetchFailed`.

One hop per redirect (followed here, never by httpx), each hop: wait for the
target host's slot ─► vet scheme and literal IP ─► send ─► 3xx: next hop │
304 │ 4xx/5xx │ 2xx: body. The wording of every failure message is here: it
names the URL, says what happened and what to do.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import logging
import ssl
import threading
import time
from collections.abc import Collection
from datetime import timedelta
from http.cookiejar import CookieJar, DefaultCookiePolicy
from types import TracebackType
from typing import Self

import httpx

from monitor.fetch.addresses import (
    AddressPolicy,
    IPAddress,
    Resolver,
    host_of,
    site_of,
    system_resolver,
)
from monitor.fetch.decoding import (
    ACCEPT_ENCODING,
    BodyTooLarge,
    BoundedDecoder,
    UndecodableBody,
    content_codings,
    gunzip_file,
)
from monitor.fetch.responses import (
    declared_length,
    describe_content,
    parse_retry_after,
    status_advice,
    status_text,
    usable_validator,
    validators_from,
)
from monitor.fetch.slots import HeldHostSlot, HostSlots
from monitor.fetch.transport import (
    TRUSTED_HOP,
    AddressBlocked,
    GuardedBackend,
    PooledTransport,
    RoutingTransport,
    fetch_cutoff,
    request_deadline,
)
from monitor.models import (
    Clock,
    Fetched,
    FetchErrorKind,
    FetchFailed,
    FetchLimits,
    FetchResult,
    NotModified,
    Validators,
    utc_now,
)
from monitor.text import human_size

__all__ = ["FEED_ACCEPT", "PAGE_ACCEPT", "Fetcher"]

logger = logging.getLogger(__name__)

FEED_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, "
    "application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, */*;q=0.5"
)
PAGE_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_PERMANENT_REDIRECTS = frozenset({301, 308})

_NO_VALIDATORS = Validators()
_DEFAULT_LIMITS = FetchLimits()


def _seconds(value: float) -> str:
    return f"{value:g} s"


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
        self.moved_to: str | None = None


class _PermanentRedirects:
    """Where the permanent redirects (301, 308) at the start of a chain lead: the address a
    client should use from now on. A temporary redirect ends it, since what follows
    may change any time: 301 A→B, 302 B→C means the feed moved to B."""

    def __init__(self) -> None:
        self.moved_to: str | None = None
        self._unbroken = True

    def hop(self, status: int, following: httpx.URL) -> None:
        if status in _PERMANENT_REDIRECTS and self._unbroken:
            self.moved_to = str(following)
        else:
            self._unbroken = False


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
        wall_clock: Clock = utc_now,
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
            transport = RoutingTransport(
                guarded=PooledTransport(
                    GuardedBackend(resolver, self.policy, self._lookups), limits, ssl_context
                ),
                trusted=PooledTransport(
                    GuardedBackend(resolver, None, self._lookups), limits, ssl_context
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
        self._host_slots = HostSlots(limits.per_host)
        self._global_slots = threading.BoundedSemaphore(limits.concurrency)

    # ----------------------------------------------------------------- public API

    def fetch_feed(self, url: str, validators: Validators = _NO_VALIDATORS) -> FetchResult:
        """GET a configured feed, conditionally when `validators` are given (304 → NotModified).

        The feed's own site may be private or loopback (the user configured it);
        a redirect to another site is vetted like an article link.
        """
        headers = {"Accept": FEED_ACCEPT}
        etag = usable_validator(validators.etag)
        last_modified = usable_validator(validators.last_modified)
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
        host_slot = HeldHostSlot(self._host_slots, host_of(target))
        try:
            with self._global_slots:
                started = time.monotonic()
                deadline = started + self.limits.timeout
                cutoff = fetch_cutoff.get()
                if cutoff is not None:
                    deadline = min(deadline, cutoff)
                token = request_deadline.set(deadline)
                try:
                    return self._follow(
                        target, trusted_site, headers, sent_validators, deadline, host_slot
                    )
                except _Failure as failure:
                    detail = failure.detail
                    if failure.kind is FetchErrorKind.TIMEOUT and deadline == cutoff:
                        detail = (
                            f"no complete response before its feed's poll.feed_deadline ran out "
                            f"({_seconds(round(time.monotonic() - started, 1))} into the request); "
                            "it will be retried at the next poll"
                        )
                    return FetchFailed(
                        url=url,
                        kind=failure.kind,
                        message=f"{url}: {detail}",
                        status=failure.status,
                        retry_after=failure.retry_after,
                        elapsed=time.monotonic() - started,
                        moved_to=failure.moved_to,
                    )
                finally:
                    request_deadline.reset(token)
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
        host_slot: HeldHostSlot,
    ) -> FetchResult:
        redirects = _PermanentRedirects()
        try:
            return self._follow_hops(
                target, trusted_site, headers, sent_validators, deadline, host_slot, redirects
            )
        except _Failure as failure:
            failure.moved_to = redirects.moved_to
            raise

    def _follow_hops(
        self,
        target: httpx.URL,
        trusted_site: tuple[str, int | None] | None,
        headers: dict[str, str],
        sent_validators: Validators | None,
        deadline: float,
        host_slot: HeldHostSlot,
        redirects: _PermanentRedirects,
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
                    redirects.hop(status, following)
                    visited.add(str(following))
                    current = following
                    continue
                if (
                    status == 304
                    and sent_validators is not None
                    and sent_validators != _NO_VALIDATORS
                ):
                    # A 304 has no body: reading its end hands the connection back to the
                    # pool. Closed unread, httpcore drops it, and the next poll of the host
                    # pays a new connection (and TLS handshake).
                    response.read()
                    fresh = validators_from(response.headers)
                    return NotModified(
                        url=str(current),
                        validators=fresh if fresh != _NO_VALIDATORS else sent_validators,
                        elapsed=time.monotonic() - started,
                        moved_to=redirects.moved_to,
                    )
                if not 200 <= status < 300:
                    raise self._status_failure(target, current, response)
                content = self._read_body(response, deadline)
                return Fetched(
                    url=str(current),
                    status=status,
                    headers=describe_content(response.headers),
                    content=content,
                    validators=validators_from(response.headers),
                    elapsed=time.monotonic() - started,
                    moved_to=redirects.moved_to,
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
            "GET", url, headers=headers, timeout=timeout, extensions={TRUSTED_HOP: trusted}
        )
        host = host_of(url)
        try:
            return self._client.send(request, stream=True)
        except AddressBlocked as blocked:
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
        detail = f"the server answered {status_text(status)}{where}; {status_advice(status)}"
        if retry_after is not None:
            detail += f" (Retry-After: {int(retry_after.total_seconds())} s)"
        return _Failure(FetchErrorKind.HTTP_STATUS, detail, status=status, retry_after=retry_after)

    def _read_body(self, response: httpx.Response, deadline: float) -> bytes:
        limits = self.limits
        cap = human_size(limits.max_bytes)
        too_large = _Failure(
            FetchErrorKind.TOO_LARGE,
            f"the body exceeds the {cap} limit (decoded); the server may be sending something "
            "other than a feed or article — check the URL",
        )
        try:
            codings = content_codings(response.headers.get("content-encoding"))
        except UndecodableBody as error:
            raise _Failure(FetchErrorKind.DECODING, f"{error}; the body cannot be read") from None
        declared = declared_length(response.headers.get("content-length"))
        raw_cap = limits.max_raw_bytes if codings else limits.max_bytes
        if declared is not None and declared > raw_cap:
            raise too_large
        decoder = BoundedDecoder(codings, limits.max_bytes)
        received = 0
        try:
            for chunk in response.iter_raw():
                received += len(chunk)
                if received > raw_cap:
                    raise too_large
                decoder.feed(chunk)
                if time.monotonic() >= deadline:
                    raise self._deadline_failure()
            return gunzip_file(decoder.finish(), limits.max_bytes)
        except BodyTooLarge:
            raise too_large from None
        except UndecodableBody as error:
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
        f"refused to connect to {where}, a {reason} address, for {url}; a private or local "
        "address is fetched only on the same site (host and port) as the configured feed that "
        "led here — links and redirects to other hosts must lead to public addresses"
    )
