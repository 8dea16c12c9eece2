"""What a valid feeds.yaml is: pydantic models of every section, the field
validators and their messages, the limits, and the parsing of durations and sizes.

Validators raise `PydanticCustomError`s whose kind `messages` knows; checks
spanning several keys use `_located` to point at one key, list item or
character of the section.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from datetime import time, timedelta
from email.utils import parseaddr
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from monitor.config.settings import DigestLanguage, DigestSettings, Every, PollSettings
from monitor.config.yaml_tree import Tree, _shown
from monitor.errors import ListTermError, QuerySyntaxError
from monitor.query import Node, from_lists, parse_query
from monitor.text import primary_language

MAX_FEEDS = 1_000_000
MAX_WATCHLISTS = 1_000_000
MAX_ALERTS = 100
MAX_ALERT_URLS = 20
MAX_TERMS_PER_LIST = 1000
MAX_TERM_CHARS = 200
MAX_QUERY_CHARS = 10_000
MAX_TAGS = 20
MAX_TAG_CHARS = 50
MIN_BODY_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024**3
MIN_INTERVAL = timedelta(minutes=1)
MAX_INTERVAL = timedelta(days=7)

DEFAULT_DATABASE = "monitor.db"
DEFAULT_OUTBOX = "digests"
DEFAULT_TIMEZONE = "UTC"


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``2h``, ``1d`` or combinations in that order (``1h30m``). ValueError otherwise."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or not any(match.groups()):
        raise ValueError(
            f'bad duration "{text}": use a number and a unit, e.g. 90s, 15m, 2h, 1d, 1h30m'
        )
    days, hours, minutes, seconds = (int(group or 0) for group in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def parse_size(text: str) -> int:
    """``15MiB``, ``512KiB``, ``2MB``, ``1048576`` → bytes. ValueError otherwise."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f'bad size "{text}": use a number of bytes or a unit, e.g. 15MiB, 512KiB, 2MB'
        )
    number, unit = match.groups()
    return int(number) * _SIZE_UNITS[(unit or "b").lower()]


_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_SIZE = re.compile(r"(\d+)\s*(B|[KMG]i?B)?", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}


def _format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def _custom(kind: str, message: str) -> PydanticCustomError:
    # The message goes through ctx so that braces in user text are not format fields.
    return PydanticCustomError(kind, "{detail}", {"detail": message})


def _text(value: str) -> str:
    stripped = value.strip()
    if _CONTROL_CHARACTER.search(stripped) is not None:
        raise _custom(
            "control_character", "control characters (line breaks, tabs) are not allowed here"
        )
    return stripped


_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


def _duration(value: object) -> timedelta:
    if not isinstance(value, str):
        raise _custom(
            "duration",
            f"bad duration {_shown(value)}: use a number and a unit, e.g. 90s, 15m, 2h, 1d, 1h30m",
        )
    try:
        return parse_duration(value)
    except ValueError as error:
        raise _custom("duration", str(error)) from None


def _between(low: timedelta, high: timedelta) -> AfterValidator:
    def check(value: timedelta) -> timedelta:
        if not low <= value <= high:
            raise _custom(
                "duration_range",
                f"{_format_duration(value)} is out of range: use between "
                f"{_format_duration(low)} and {_format_duration(high)}",
            )
        return value

    return AfterValidator(check)


def _size(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str):
        try:
            size = parse_size(value)
        except ValueError as error:
            raise _custom("size", str(error)) from None
    else:
        raise _custom(
            "size", f"bad size {_shown(value)}: use a number of bytes or a unit, e.g. 15MiB"
        )
    if not MIN_BODY_BYTES <= size <= MAX_BODY_BYTES:
        raise _custom("size", f"{_shown(value)} is out of range: use between 64KiB and 1GiB")
    return size


def _feed_url(value: str) -> str:
    url = value.strip()
    if any(character.isspace() for character in url):
        raise _custom("url", f'bad URL "{url}": it contains spaces; percent-encode them as %20')
    if "\\" in url:
        raise _custom("url", f'bad URL "{url}": it contains a backslash; use "/"')
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise _custom(
            "url",
            f'bad URL "{url}": a feed URL must start with https:// or http://',
        )
    if not parts.hostname:
        raise _custom(
            "url", f'bad URL "{url}": no host name; write it in full, e.g. https://example.org/rss'
        )
    if parts.username is not None or parts.password is not None:
        raise _custom(
            "url",
            "bad URL: user:password@ in a feed URL is not supported (it would end up in logs "
            "and the database)",
        )
    try:
        parts.port  # noqa: B018 - urlsplit only checks the port when asked
    except ValueError:
        raise _custom(
            "url", f'bad URL "{url}": the port must be a number from 1 to 65535'
        ) from None
    return url


def _language(value: str) -> str:
    code = value.strip()
    if _LANGUAGE.fullmatch(code) is None:
        raise _custom("language", f'bad language "{code}": use a code such as fr or en')
    primary = primary_language(code)
    assert primary is not None, "a code _LANGUAGE accepts starts with a 2- or 3-letter subtag"
    return primary


_SET_NAME = re.compile(r"^\w[\w-]*$")
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*")


def _timezone(value: str) -> str:
    name = value.strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(name, sorted(available_timezones()), n=1, cutoff=0.6)
        hint = (
            f'did you mean "{close[0]}"?'
            if close
            else "use an IANA name such as Africa/Lome or Europe/Paris"
        )
        raise _custom("timezone", f'unknown time zone "{name}": {hint}') from None
    return name


def _clock_time(value: object) -> time:
    match = _CLOCK_TIME.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise _custom(
            "clock_time",
            f'bad time {_shown(value)}: use 24-hour HH:MM in quotes, e.g. at: "07:00"',
        )
    return time(int(match.group(1)), int(match.group(2)))


_CLOCK_TIME = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


def _tag(value: str) -> str:
    tag = _text(value)
    if "," in tag:
        raise _custom(
            "tag", f'bad tag "{tag}": a tag cannot contain a comma; write each tag as its own item'
        )
    return tag


def _address(value: str) -> str:
    written = _text(value)
    _, address = parseaddr(written)
    if _ADDRESS.fullmatch(address) is None or not (
        "." in address.rsplit("@", 1)[1] or address.endswith("@localhost")
    ):
        raise _custom(
            "address",
            f'"{written}" is not an email address: write it as name@example.org '
            'or "Name <name@example.org>"',
        )
    return written


_ADDRESS = re.compile(r"[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+")


Text = Annotated[str, AfterValidator(_text), StringConstraints(min_length=1, max_length=500)]
Term = Annotated[
    str, AfterValidator(_text), StringConstraints(min_length=1, max_length=MAX_TERM_CHARS)
]
Terms = Annotated[list[Term], Field(min_length=1, max_length=MAX_TERMS_PER_LIST)]
SetName = Annotated[str, StringConstraints(pattern=_SET_NAME.pattern, max_length=100)]
Interval = Annotated[timedelta, BeforeValidator(_duration), _between(MIN_INTERVAL, MAX_INTERVAL)]
Timeout = Annotated[
    timedelta, BeforeValidator(_duration), _between(timedelta(seconds=1), timedelta(minutes=30))
]
FeedDeadline = Annotated[
    timedelta, BeforeValidator(_duration), _between(timedelta(seconds=10), timedelta(hours=2))
]
FeedUrl = Annotated[
    str, AfterValidator(_feed_url), StringConstraints(min_length=1, max_length=2000)
]
Language = Annotated[str, AfterValidator(_language)]
Address = Annotated[str, AfterValidator(_address)]
Tag = Annotated[
    str, AfterValidator(_tag), StringConstraints(min_length=1, max_length=MAX_TAG_CHARS)
]
Tags = Annotated[list[Tag], Field(min_length=1, max_length=MAX_TAGS)]


def _check_set_members(members: list[str]) -> list[str]:
    """Every member must be a usable list term, even in a set no watchlist uses yet."""
    for index, member in enumerate(members):
        if member.startswith("@"):
            raise _located(
                None, f"a set member cannot refer to another set ({member})", index=index
            )
        try:
            from_lists([member], (), (), {})
        except ListTermError as error:
            raise _located(None, error.message, index=index) from None
    return members


def _is_usable_term(term: str) -> bool:
    if term.startswith("@"):
        return False
    try:
        from_lists([term], (), (), {})
    except ListTermError:
        return False
    return True


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _PollModel(_Section):
    interval: Interval = PollSettings.interval
    timeout: Timeout = timedelta(seconds=PollSettings.timeout)
    connect_timeout: Timeout = timedelta(seconds=PollSettings.connect_timeout)
    max_bytes: Annotated[int, BeforeValidator(_size)] = PollSettings.max_bytes
    concurrency: Annotated[int, Field(ge=1, le=128)] = PollSettings.concurrency
    per_host: Annotated[int, Field(ge=1, le=16)] = PollSettings.per_host
    user_agent: Text = PollSettings.user_agent
    max_sitemap_urls: Annotated[int, Field(ge=1, le=10000)] = PollSettings.max_sitemap_urls
    feed_deadline: FeedDeadline = PollSettings.feed_deadline
    workers: Annotated[int, Field(ge=1, le=64)] | None = PollSettings.workers

    @model_validator(mode="after")
    def _consistent(self) -> _PollModel:
        if self.feed_deadline < self.timeout:
            raise _located(
                "feed_deadline",
                f"feed_deadline ({_format_duration(self.feed_deadline)}) cannot be shorter "
                f"than timeout ({_format_duration(self.timeout)}): the feed itself must fit in it",
            )
        if self.per_host > self.concurrency:
            raise _located(
                "per_host",
                f"per_host ({self.per_host}) cannot exceed concurrency ({self.concurrency})",
            )
        if self.connect_timeout > self.timeout:
            raise _located("connect_timeout", "connect_timeout cannot exceed timeout")
        return self


class _FeedModel(_Section):
    url: FeedUrl
    name: Text | None = None
    tags: Tags | None = None
    interval: Interval | None = None
    language: Language | None = None
    type: Literal["feed", "sitemap"] = "feed"


class _WatchlistModel(_Section):
    name: Text
    query: Annotated[str, StringConstraints(min_length=1, max_length=MAX_QUERY_CHARS)] | None = None
    all_terms: Terms | None = Field(default=None, alias="all")
    any_terms: Terms | None = Field(default=None, alias="any")
    none_terms: Terms | None = Field(default=None, alias="none")
    language: Language | None = None
    languages: Annotated[list[Language], Field(min_length=1, max_length=50)] | None = None
    feeds: Annotated[list[Text], Field(min_length=1, max_length=MAX_FEEDS)] | None = None
    tags: Tags | None = None
    topic: Text | None = None
    passing: Literal["list", "hide"] = "list"

    _compiled: Node | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _compile(self, info: ValidationInfo) -> _WatchlistModel:
        # `_compiled` read and written in pydantic's own dictionary of private attributes,
        # without its attribute hooks (in Python: a second of a 100,000-watchlist load).
        private = self._private()
        if private["_compiled"] is not None:
            # A model a reload reuses (`loading._KnownWatchlists`): pydantic does not
            # validate an instance again, but runs its after-validators.
            return self
        has_lists = any(
            terms is not None for terms in (self.all_terms, self.any_terms, self.none_terms)
        )
        if self.query is not None and has_lists:
            raise _located("query", "give either query: or all:/any:/none:, not both")
        if self.query is None and not (self.all_terms or self.any_terms):
            raise _located(
                None,
                f'watchlist "{self.name}" has nothing to look for: add query: or all:/any: terms'
                + (" (none: only excludes)" if self.none_terms else ""),
            )
        sets: Mapping[str, Sequence[str]] = (info.context or {}).get("sets", {})
        try:
            if self.query is not None:
                private["_compiled"] = parse_query(self.query, sets)
            else:
                private["_compiled"] = from_lists(
                    self.all_terms or (), self.any_terms or (), self.none_terms or (), sets
                )
        except QuerySyntaxError as error:
            raise _located("query", f"bad query: {error.message}", offset=error.offset) from None
        except ListTermError as error:
            raise _located(error.list_name, error.message, index=error.index) from None
        return self

    @property
    def compiled(self) -> Node:
        compiled: Node | None = self._private()["_compiled"]
        assert compiled is not None, "only validated watchlists are built"
        return compiled

    def _private(self) -> dict[str, Any]:
        private = self.__pydantic_private__
        assert private is not None, "pydantic makes it for a model with private attributes"
        return private


class _SmtpModel(_Section):
    host: Annotated[Text, StringConstraints(pattern=r"^[A-Za-z0-9.\-\[\]:]+$")]
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: Text | None = None
    password: Annotated[str, StringConstraints(min_length=1)] | None = None
    timeout: Timeout = timedelta(seconds=30)

    @model_validator(mode="after")
    def _consistent(self) -> _SmtpModel:
        if (self.username is None) != (self.password is None):
            missing = "password" if self.password is None else "username"
            raise _located(
                None, f"smtp: give both username and password, or neither ({missing} is missing)"
            )
        if self.security == "none" and self.password is not None:
            raise _located(
                "security",
                "refusing to send a password without encryption: use security: starttls or ssl "
                "(or drop username/password for an unauthenticated local relay)",
            )
        return self


Recipients = Annotated[list[Address], Field(min_length=1, max_length=100)]
ClockTime = Annotated[time, BeforeValidator(_clock_time)]
MaxFull = Annotated[int, Field(ge=0, le=100)]


class _DigestModel(_Section):
    """The single `digest:` block: one digest of every watchlist, with its mail settings."""

    at: ClockTime = DigestSettings.at
    every: Every = "day"
    sender: Address = Field(alias="from")
    to: Recipients
    subject: Text = DigestSettings.subject
    smtp: _SmtpModel | None = None
    outbox: Text = DEFAULT_OUTBOX
    language: DigestLanguage | None = None
    max_full: MaxFull = DigestSettings.max_full


class _MailModel(_Section):
    """`mail:`: how every digest of `digests:` is sent."""

    sender: Address = Field(alias="from")
    smtp: _SmtpModel | None = None
    outbox: Text = DEFAULT_OUTBOX


class _NamedDigestModel(_Section):
    """One entry of `digests:`."""

    name: Annotated[Text, StringConstraints(max_length=100)]
    to: Recipients
    at: ClockTime = DigestSettings.at
    every: Every = "day"
    subject: Text | None = None
    language: DigestLanguage | None = None
    max_full: MaxFull = DigestSettings.max_full
    watchlists: Annotated[list[Text], Field(min_length=1, max_length=MAX_WATCHLISTS)] | None = None


def _alert_url(value: str) -> str:
    url = value.strip()
    # Apprise is loaded only by configurations that have alerts.
    from monitor.destinations import destination_problem

    problem = destination_problem(url)
    if problem is not None:
        raise _custom("alert_url", f"bad alert URL: {problem}")
    return url


AlertUrl = Annotated[
    str, StringConstraints(min_length=1, max_length=2000), AfterValidator(_alert_url)
]


class _AlertModel(_Section):
    name: Text
    watchlists: Annotated[list[Text], Field(min_length=1, max_length=MAX_WATCHLISTS)]
    urls: Annotated[list[AlertUrl], Field(min_length=1, max_length=MAX_ALERT_URLS)]


MIN_TEXT_RETENTION = timedelta(days=1)
MAX_TEXT_RETENTION = timedelta(days=100 * 365)


class _RetentionModel(_Section):
    article_text: (
        Annotated[
            timedelta,
            BeforeValidator(_duration),
            _between(MIN_TEXT_RETENTION, MAX_TEXT_RETENTION),
        ]
        | None
    ) = None


class _ConfigModel(_Section):
    database: Text = DEFAULT_DATABASE
    timezone: Annotated[str, AfterValidator(_timezone)] = DEFAULT_TIMEZONE
    poll: _PollModel = Field(default_factory=_PollModel)
    feeds: Annotated[list[_FeedModel], Field(min_length=1, max_length=MAX_FEEDS)]
    sets: dict[SetName, Annotated[Terms, AfterValidator(_check_set_members)]] = Field(
        default_factory=dict
    )
    watchlists: Annotated[list[_WatchlistModel], Field(min_length=1, max_length=MAX_WATCHLISTS)]
    digest: _DigestModel | None = None
    alerts: Annotated[list[_AlertModel], Field(max_length=MAX_ALERTS)] = []
    mail: _MailModel | None = None
    retention: _RetentionModel = Field(default_factory=_RetentionModel)
    digests: Annotated[list[_NamedDigestModel], Field(min_length=1, max_length=100)] | None = None

    @model_validator(mode="after")
    def _one_way_to_send(self) -> _ConfigModel:
        if self.digest is not None and (self.digests is not None or self.mail is not None):
            raise _located(
                "digest",
                "give either digest: (one digest of every watchlist) or mail: with digests:, "
                "not both: move from:, smtp: and outbox: under mail: and the rest under digests:",
            )
        if self.digests is not None and self.mail is None:
            raise _located(
                "digests",
                "digests: needs a mail: section saying how to send them: "
                "mail: {from: you@example.org, outbox: digests/} or with smtp:",
            )
        if self.mail is not None and self.digests is None:
            raise _located("mail", "mail: is used by digests:, which is missing: add digests:")
        return self  # neither: reported by `_check_references` with the other missing sections


def _located(
    key: str | None, message: str, *, offset: int | None = None, index: int | None = None
) -> PydanticCustomError:
    """An error raised by a model-level check, pointing at `key` of that model (its list
    item `index`, or the character `offset` inside its text) rather than the whole model."""
    context: dict[str, object] = {"detail": message}
    if key is not None:
        context["key"] = key
    if offset is not None:
        context["offset"] = offset
    if index is not None:
        context["index"] = index
    return PydanticCustomError("config", "{detail}", context)


def _sets_for_checking(raw_sets: Tree) -> dict[str, list[str]]:
    """The sets as far as they are usable, so queries can be checked even when a set is
    broken. A broken set's own error fails the load; it is given a stand-in term here so
    that every query using it does not also report it as unknown."""
    if not isinstance(raw_sets, dict):
        return {}
    usable: dict[str, list[str]] = {}
    for name, terms in raw_sets.items():
        if _SET_NAME.fullmatch(name) is None:
            continue
        members = terms if isinstance(terms, list) else []
        usable[name] = [
            term for term in members if isinstance(term, str) and _is_usable_term(term)
        ] or [name]
    return usable
