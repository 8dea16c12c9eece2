"""Apprise adapter: check, mask and key an alert destination URL, and send one alert.

The only module that imports Apprise. One URL is one destination (``ntfy://``,
``slack://``, ``mailto://``, ``json://``...; Apprise's syntax, see
https://appriseit.com/services/). Decides nothing: what to send comes from
`monitor.alerts`, when and whether again from `service.send_alerts`.

Secrets: a destination URL often holds a token or a password. What leaves this
module to be stored, logged or shown is the URL as Apprise masks it
(``url(privacy=True)``), or a key derived from that masked form, never the URL.

Apprise's own log lines may quote a whole URL ("Unparseable URL ..."), so its
logger does not propagate to ours: every outcome is reported by the caller,
masked, and Apprise's messages for a send are taken from the send's result.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import apprise

from monitor.alerts import AlertMessage

# Apprise may log URLs with their secrets; we report every outcome ourselves, masked.
logging.getLogger(apprise.LOGGER_NAME).propagate = False

# The longest one alert may take, whatever the destination's own timeouts (Apprise's
# cto/rto URL arguments, 4 s each by default; 15 s to connect for e-mail).
SEND_TIMEOUT_SECONDS = 30.0

_JSON_SCHEMES = ("json", "jsons")


@dataclass(frozen=True)
class SendOutcome:
    """What became of one alert: sent, or why not (an Apprise sentence, no secrets)."""

    sent: bool
    error: str | None = None
    uncertain: bool = False  # cut by the timeout: the destination may have received it


def destination_problem(url: str) -> str | None:
    """Why Apprise cannot use `url`, in words naming no secret; None when it can."""
    scheme = _scheme(url)
    if scheme is None:
        return (
            "not a notification URL: write it as Apprise does, e.g. "
            "ntfy://ntfy.example.org/topic or json://hooks.example.org/path"
        )
    manager: Any = apprise.NotificationManager  # untyped: one process-wide instance
    schemes: list[str] = sorted(manager().schemas())
    if scheme not in schemes:
        close = difflib.get_close_matches(scheme, schemes, n=1, cutoff=0.6)
        hint = f' (did you mean "{close[0]}://"?)' if close else ""
        return (
            f'"{scheme}://" is not a destination Apprise knows{hint}: see '
            "https://appriseit.com/services/ for the supported services"
        )
    plugin: Any = apprise.Apprise.instantiate(url)
    if plugin is None:
        kind = manager()[scheme]
        return (
            f"this {kind.service_name} URL ({scheme}://…) is incomplete or malformed: "
            f"see {kind.setup_url} for its form"
        )
    if getattr(plugin, "secure_mode", None) == "insecure" and getattr(plugin, "password", None):
        # The digest's SMTP settings refuse this too.
        return (
            f"refusing to send a password without encryption to {masked_destination(url)}: "
            "write mailtos:// (or add ?mode=starttls), or drop user:password@ for an "
            "unauthenticated local relay"
        )
    return None


def masked_destination(url: str) -> str:
    """The URL with its secrets masked by Apprise, without its default arguments; only
    the scheme when Apprise cannot read it."""
    plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        return f"{_scheme(url) or '?'}://…"
    masked = _private_url(plugin)
    # Drop the query: Apprise lists every default there (long, and version-dependent).
    parts = urlsplit(masked)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def destination_key(url: str) -> str:
    """A stable identity of the destination that holds no secret: a hash of the URL as
    Apprise masks it, less the HTTP headers it adds (``+Name=value``), which Apprise
    does not mask and which often carry a token."""
    plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        return hashlib.sha256(f"{_scheme(url)}://".encode()).hexdigest()[:16]
    parts = urlsplit(_private_url(plugin))
    kept = [
        pair for pair in parts.query.split("&") if pair and not pair.startswith(("+", "%2B", "%2b"))
    ]
    masked = urlunsplit((parts.scheme, parts.netloc, parts.path, "&".join(kept), ""))
    return hashlib.sha256(masked.encode()).hexdigest()[:16]


def send_alert(
    url: str, message: AlertMessage, *, timeout: float = SEND_TIMEOUT_SECONDS
) -> SendOutcome:
    """Send `message` to the one destination `url`, in the form it renders best.

    A ``json://`` webhook also receives the message's structured fields as JSON
    members (through Apprise's ``:name=value`` payload arguments).
    """
    if _scheme(url) in _JSON_SCHEMES:
        url = _with_payload(url, message.fields)
    plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        return SendOutcome(False, destination_problem(url) or "Apprise cannot use this URL")
    body_format = plugin.resolve_format(None)  # the service's own (or the URL's ?format=)
    body = {
        apprise.NotifyFormat.HTML: message.html,
        apprise.NotifyFormat.MARKDOWN: message.markdown,
    }.get(body_format, message.text)
    notifier = apprise.Apprise()
    notifier.add(plugin)
    result = notifier.notify(body, title=message.title, body_format=body_format, timeout=timeout)
    if result:
        return SendOutcome(True)
    words = "; ".join(entry.message for entry in result.logs() if entry.level in _PROBLEM_LEVELS)
    if result.status == apprise.AppriseResultStatus.TIMEOUT:
        return SendOutcome(
            False,
            f"no answer within {timeout:g} s (it may have arrived; it will be sent again)"
            + (f": {words}" if words else ""),
            uncertain=True,
        )
    return SendOutcome(False, words or f"{plugin.service_name} refused the alert")


_PROBLEM_LEVELS = frozenset({"WARNING", "ERROR", "CRITICAL"})


def _private_url(plugin: Any) -> str:
    """The plugin's URL with its secrets masked (Apprise's `url` is untyped)."""
    return str(plugin.url(privacy=True))


def _scheme(url: str) -> str | None:
    head, separator, _ = url.strip().partition("://")
    if not separator or not head or not head.replace("+", "").replace("-", "").isalnum():
        return None
    return head.lower()


def _with_payload(url: str, fields: dict[str, str]) -> str:
    """`url` with each field as a ``:name=value`` argument, unless the URL sets it already."""
    parts = urlsplit(url)
    given = {pair.split("=", 1)[0] for pair in parts.query.split("&") if pair}
    extra = {f":{name}": value for name, value in fields.items() if f":{name}" not in given}
    query = "&".join(filter(None, (parts.query, urlencode(extra, quote_via=quote))))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
