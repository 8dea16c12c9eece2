"""The configuration a loaded feeds.yaml becomes: frozen dataclasses, no validation.

Everything here is already checked and resolved (absolute paths, compiled
queries); the rest of monitor only ever sees these types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time, timedelta
from pathlib import Path
from typing import Literal, get_args
from zoneinfo import ZoneInfo

from monitor.models import FeedSpec, FetchLimits, Watchlist


@dataclass(frozen=True)
class PollSettings(FetchLimits):
    """The `poll:` section: the fetcher's limits (one set of defaults, in `FetchLimits`)
    and the default interval between polls of a feed."""

    interval: timedelta = timedelta(minutes=15)  # default per feed
    max_sitemap_urls: int = 200  # pages read from sitemaps per feed and poll; the rest wait
    # A whole feed's poll (fetch, parse, pages); pages not read by then wait for the next poll.
    feed_deadline: timedelta = timedelta(minutes=5)
    # Extraction worker processes; None: one per core but one (at least one).
    workers: int | None = None


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 587
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0


Every = Literal[
    "day", "weekdays", "hour",
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
]  # fmt: skip
EVERY: tuple[str, ...] = get_args(Every)
DigestLanguage = Literal["en", "fr"]
DIGEST_LANGUAGES: tuple[str, ...] = get_args(DigestLanguage)
DEFAULT_DIGEST_NAME = "digest"  # the one digest of a `digest:` block


@dataclass(frozen=True)
class DigestSettings:
    """One digest: who gets it, when, in which language, of which watchlists. The mail
    settings (`sender`, `smtp`, `outbox`) are the shared `mail:` section's."""

    name: str = DEFAULT_DIGEST_NAME
    at: time = time(7, 0)  # local time in Config.timezone
    every: Every = "day"
    sender: str = "monitor@localhost"
    recipients: tuple[str, ...] = ()
    smtp: SmtpSettings | None = None  # None: write .eml files to `outbox`
    outbox: Path = Path("digests")  # absolute after loading
    subject: str = "monitor digest"
    language: DigestLanguage = "en"
    max_full: int = 10  # stories in full per watchlist; the rest one line each
    watchlists: tuple[str, ...] = ()  # () = every watchlist

    @property
    def label(self) -> str:
        """How messages name it: "digest" for the one of a `digest:` block, else "digest NAME"."""
        return "digest" if self.name == DEFAULT_DIGEST_NAME else f"digest {self.name}"

    @property
    def schedule_words(self) -> str:
        """``every day at 07:00``, ``every friday at 18:00``, ``every hour at :15``."""
        if self.every == "hour":
            return f"every hour at :{self.at.minute:02d}"
        return f"every {self.every} at {self.at:%H:%M}"


@dataclass(frozen=True)
class AlertDestination:
    """One Apprise URL of an alert. `url` may hold secrets (tokens, passwords): it is
    used to send and never shown; `key` and `shown` are derived from the masked URL."""

    url: str = field(repr=False)
    key: str  # stable identity without secrets: what the database files deliveries under
    shown: str  # the URL with its secrets masked, for messages and `monitor status`


@dataclass(frozen=True)
class AlertSettings:
    """One entry of `alerts:`: announce each new hit of `watchlists` to every destination."""

    name: str
    watchlists: tuple[str, ...]
    destinations: tuple[AlertDestination, ...]


@dataclass(frozen=True)
class RetentionSettings:
    """The `retention:` section: how long stored article text is kept (None: forever)."""

    article_text: timedelta | None = None


@dataclass(frozen=True)
class Config:
    path: Path  # the feeds.yaml this came from (absolute)
    database: Path  # absolute
    timezone: ZoneInfo
    poll: PollSettings
    feeds: tuple[FeedSpec, ...]
    watchlists: tuple[Watchlist, ...]
    digests: tuple[DigestSettings, ...]
    sets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    retention: RetentionSettings = RetentionSettings()
    alerts: tuple[AlertSettings, ...] = ()

    @property
    def digest(self) -> DigestSettings:
        """The first digest: the only one of a `digest:` block."""
        return self.digests[0]

    def digest_named(self, name: str) -> DigestSettings | None:
        return next((digest for digest in self.digests if digest.name == name), None)
