"""feeds.yaml → a validated, immutable `Config`.

Touches no network and no database. Every problem in the file is reported at
once as ``feeds.yaml:LINE:COL: message`` so the user can fix them in one go;
nothing runs on a half-valid configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from monitor.match import Watchlist
from monitor.models import FeedSpec

DEFAULT_USER_AGENT = "monitor/0.1 (+https://github.com/monitor-news/monitor; news watchlist digest)"


@dataclass(frozen=True)
class PollSettings:
    interval: timedelta = timedelta(minutes=15)  # default per feed
    timeout: float = 60.0  # seconds for a whole request, headers and body included
    connect_timeout: float = 10.0
    max_bytes: int = 15 * 1024 * 1024  # decoded body cap for feeds and pages
    concurrency: int = 8  # requests in flight across all hosts
    per_host: int = 2  # requests in flight to one host
    user_agent: str = DEFAULT_USER_AGENT


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
class Config:
    path: Path  # the feeds.yaml this came from (absolute)
    database: Path  # absolute
    timezone: ZoneInfo
    poll: PollSettings
    feeds: tuple[FeedSpec, ...]
    watchlists: tuple[Watchlist, ...]
    digest: DigestSettings
    sets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


class ConfigError(Exception):
    """The file cannot be used. `problems` holds one ``file:line:col: message`` per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))
