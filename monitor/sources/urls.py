"""One spelling per feed address: the canonical form used to refuse duplicates.

Two URLs are the same feed when they differ only by scheme (http or https), the
case of the host, a default port, a trailing slash, a fragment, the order of
the query parameters, or tracking parameters (``utm_*``, ``fbclid``...).
`courlan` (the trafilatura project's URL library) does the normalisation and
knows the tracking parameters; the scheme and trailing slash are folded here.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import courlan

__all__ = ["canonical_url"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def canonical_url(url: str) -> str:
    """A key equal for every spelling of the same feed address (not a URL to fetch).

    ``HTTPS://Example.org:443/feed/?utm_source=x`` and ``http://example.org/feed``
    give the same key. Never raises: a URL courlan cannot read is keyed on its
    lower-cased, stripped text.
    """
    written = url.strip()
    try:
        parts = urlsplit(written)
        port = parts.port
    except ValueError:
        return written.lower()
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return written.lower()
    host = parts.hostname.lower().rstrip(".")
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    netloc = host if port is None or port in _DEFAULT_PORTS.values() else f"{host}:{port}"
    rebuilt = urlunsplit(("https", netloc, parts.path or "/", parts.query, ""))
    try:
        normalised = courlan.normalize_url(rebuilt)
    except Exception:  # courlan has no exception contract; the URL keeps its own spelling
        normalised = rebuilt
    cleaned = urlsplit(normalised)
    path = cleaned.path.rstrip("/") or "/"
    return urlunsplit(("", cleaned.netloc.lower(), path, cleaned.query, ""))[2:]
