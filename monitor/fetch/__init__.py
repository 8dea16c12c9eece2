"""The only HTTP code in monitor: feeds and article pages, fetched defensively.

Every network or server problem comes back as a `FetchFailed` value whose
message names the URL, says what happened and what to do; exceptions are
raised only for programming errors. One `Fetcher` is shared by all polling
threads::

    fetch_feed(url, validators) / fetch_page(url, feed_url=...)
      └─ _fetch: wait for a per-host slot, then a global slot; start the deadline
           └─ one hop per redirect (followed here, never by httpx), each hop:
                vet scheme and literal IP ─► send ─► 3xx: next hop │ 304 │ 4xx/5xx │ 2xx: body
                └─ body: iter_raw() ─► BoundedDecoder (gzip/deflate/br/zstd, output capped)
                         ─► gunzip_file (a body that is itself a .gz file, same cap)
    connect time (httpcore network backend, every hop, every new connection):
      resolver(host) ─► every address vetted by AddressPolicy ─► connect to exactly that IP
      ─► a stream whose every read/write is bounded by the request's deadline

Modules, each explaining its part of the design:

- `addresses`: URL/host helpers and the SSRF policy (which addresses may be reached);
- `transport`: the whole-request deadline, the connect-time guard, the two connection pools;
- `slots`: per-host request slots;
- `decoding`: bounded Content-Encoding decoding and the decoded-size cap;
- `responses`: Retry-After, cache validators and other response details;
- `fetcher`: the `Fetcher` itself (redirects, vetting, failure messages).
"""

from monitor import DEFAULT_USER_AGENT
from monitor.fetch.addresses import (
    AddressPolicy,
    Resolver,
    host_of,
    non_global_reason,
    site_of,
    system_resolver,
)
from monitor.fetch.fetcher import Fetcher
from monitor.fetch.responses import parse_retry_after
from monitor.fetch.transport import fetch_cutoff
from monitor.models import FetchLimits
from monitor.schedule import MAX_RETRY_AFTER

__all__ = [
    "DEFAULT_USER_AGENT",
    "MAX_RETRY_AFTER",
    "AddressPolicy",
    "FetchLimits",
    "Fetcher",
    "Resolver",
    "fetch_cutoff",
    "host_of",
    "non_global_reason",
    "parse_retry_after",
    "site_of",
    "system_resolver",
]
