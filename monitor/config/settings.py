"""The configuration a loaded feeds.yaml becomes: frozen dataclasses, no validation.

Everything here is already checked and resolved (absolute paths, compiled
queries); the rest of monitor only ever sees these types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from monitor.models import FeedSpec, FetchLimits, Watchlist


@dataclass(frozen=True)
class PollSettings(FetchLimits):
    """The `poll:` section: the fetcher's limits (one set of defaults, in `FetchLimits`)
    and the default interval between polls of a feed."""

    interval: timedelta = timedelta(minutes=15)  # default per feed


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 587
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0


@dataclass(frozen=True)
class DigestSettings:
    at: time = time(7, 0)  # local time in Config.timezone
    sender: str = "monitor@localhost"
    recipients: tuple[str, ...] = ()
    smtp: SmtpSettings | None = None  # None: write .eml files to `outbox`
    outbox: Path = Path("digests")  # absolute after loading
    subject: str = "monitor digest"


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
    digest: DigestSettings
    sets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    retention: RetentionSettings = RetentionSettings()
