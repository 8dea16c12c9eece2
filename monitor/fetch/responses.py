"""What a response's headers say: Retry-After, cache validators, content description, status wording.

Cache validators: ETag and Last-Modified are ignored when the response says
`Cache-Control: no-store` or `Expires: 0`. Servers that forbid caching are
the ones seen answering 304 forever while the content changes (a stuck
feed); an unconditional GET only costs bandwidth.
"""

from __future__ import annotations

import email.utils
import re
from datetime import UTC, datetime, timedelta
from http import HTTPStatus

import httpx

from monitor.models import Validators
from monitor.schedule import MAX_RETRY_AFTER

__all__ = [
    "declared_length",
    "describe_content",
    "parse_retry_after",
    "status_advice",
    "status_text",
    "usable_validator",
    "validators_from",
]

# A stored validator is sent back verbatim in a header: keep only short, printable ASCII.
_VALIDATOR_PATTERN = re.compile(r"[\x20-\x7e]{1,1024}")


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


def usable_validator(value: str | None) -> str | None:
    """`value` when it is safe to send back verbatim in a request header, else None."""
    return value if value is not None and _VALIDATOR_PATTERN.fullmatch(value) else None


def validators_from(headers: httpx.Headers) -> Validators:
    """The validators to remember from a response; none when it forbids caching."""
    cache_control = headers.get("cache-control", "").lower()
    if "no-store" in cache_control or headers.get("expires", "").strip() == "0":
        return Validators()
    return Validators(
        etag=usable_validator(headers.get("etag")),
        last_modified=usable_validator(headers.get("last-modified")),
    )


def status_text(status: int) -> str:
    """``"404 Not Found"``; the bare number for a status without a standard phrase."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def status_advice(status: int) -> str:
    """What a failed status means for the user, and what to do about it."""
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


def declared_length(value: str | None) -> int | None:
    """The Content-Length value, or None when it is absent or not a plain number."""
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


def describe_content(headers: httpx.Headers) -> dict[str, str]:
    """Response headers, lower-cased; those describing the wire encoding are dropped (the body is decoded)."""
    return {
        name: value
        for name, value in headers.items()
        if name not in ("content-encoding", "content-length", "transfer-encoding")
    }
