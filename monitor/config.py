"""feeds.yaml → a validated, immutable `Config`.

Touches no network and no database. Every problem in the file is reported at
once as ``feeds.yaml:LINE:COL: message`` so the user can fix them in one go;
nothing runs on a half-valid configuration.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from email.utils import parseaddr
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal, cast, get_args
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    Event,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)
from ruamel.yaml.reader import ReaderError

from monitor.errors import ConfigError, ListTermError, QuerySyntaxError
from monitor.models import FeedSpec, FetchLimits, Watchlist
from monitor.query import Node, from_lists, parse_query


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
class Config:
    path: Path  # the feeds.yaml this came from (absolute)
    database: Path  # absolute
    timezone: ZoneInfo
    poll: PollSettings
    feeds: tuple[FeedSpec, ...]
    watchlists: tuple[Watchlist, ...]
    digest: DigestSettings
    sets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


# =========================================================================== loading

MAX_CONFIG_BYTES = 1024 * 1024
MAX_REPORTED_PROBLEMS = 50
MAX_NESTING = 16  # feeds.yaml needs 4 levels; a deeper file is a mistake or an attack
MAX_FEEDS = 2000
MAX_WATCHLISTS = 1000
MAX_TERMS_PER_LIST = 1000
MAX_TERM_CHARS = 200
MAX_QUERY_CHARS = 10_000
MIN_BODY_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024**3
MIN_INTERVAL = timedelta(minutes=1)
MAX_INTERVAL = timedelta(days=7)

DEFAULT_DATABASE = "monitor.db"
DEFAULT_OUTBOX = "digests"
DEFAULT_TIMEZONE = "UTC"

Loc = tuple[str | int, ...]


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate `path`. Raises ConfigError listing every problem.

    `environ` supplies ``${VAR}`` values (default: ``os.environ``).
    """
    try:
        data = read_config_bytes(path)
    except OSError as error:
        raise ConfigError(
            [f"{path}: cannot read the configuration: {error.strerror or error}"]
        ) from error
    text = decode_config_bytes(data, path=path)
    return parse_config(text, path=path, environ=os.environ if environ is None else environ)


def read_config_bytes(path: Path) -> bytes:
    """The file's bytes, refusing files over MAX_CONFIG_BYTES without reading them whole."""
    with path.open("rb") as handle:
        data = handle.read(MAX_CONFIG_BYTES + 1)
    check_config_size(data, path=path)
    return data


def check_config_size(data: bytes, *, path: Path) -> None:
    """ConfigError if `data` (read with a cap of MAX_CONFIG_BYTES + 1) is too large."""
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            [
                f"{path}: the file is larger than {MAX_CONFIG_BYTES // 1024} KiB: "
                "is it really feeds.yaml?"
            ]
        )


def decode_config_bytes(data: bytes, *, path: Path) -> str:
    """UTF-8 (an optional BOM is accepted) or a ConfigError pointing at the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        before = data[: error.start]
        line = before.count(b"\n") + 1
        column = len(before) - (before.rfind(b"\n") + 1) + 1
        raise ConfigError(
            [
                f"{path}:{line}:{column}: byte 0x{data[error.start]:02x} is not valid UTF-8: "
                "save the file as UTF-8"
            ]
        ) from None


def parse_config(text: str, *, path: Path, environ: Mapping[str, str]) -> Config:
    """Validate the YAML `text` of `path` into a Config. Raises ConfigError listing every problem.

    `path` is shown in messages as given and locates relative ``database``/``outbox``.
    """
    problems = _Problems(path)
    document = _read_yaml(text, problems)
    if document is None:
        raise problems.error()
    tree, positions = document
    if tree is None:
        problems.add(
            (0, 0),
            "the file has no settings: it needs at least feeds:, watchlists: and digest: "
            "(see the bundled feeds.yaml)",
        )
        raise problems.error()
    _substitute_environment(tree, positions, environ, problems)
    model = _validate(tree, positions, problems)
    _check_references(tree, positions, problems)
    if problems or model is None:
        raise problems.error()
    return _build_config(model, path)


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


# --------------------------------------------------------------------------- problems


class _Problems:
    """Problems found so far, each at a 0-based (line, column) of the file."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._found: list[tuple[int, int, str]] = []

    def add(self, position: tuple[int, int], message: str) -> None:
        line, column = position
        entry = (line, column, message)
        if entry not in self._found:
            self._found.append(entry)

    def __bool__(self) -> bool:
        return bool(self._found)

    def error(self) -> ConfigError:
        ordered = sorted(self._found, key=lambda found: (found[0], found[1]))
        shown = [
            f"{self._path}:{line + 1}:{column + 1}: {message}"
            for line, column, message in ordered[:MAX_REPORTED_PROBLEMS]
        ]
        if len(ordered) > MAX_REPORTED_PROBLEMS:
            hidden = len(ordered) - MAX_REPORTED_PROBLEMS
            shown.append(f"{self._path}: {hidden} more problems not shown; fix these first")
        return ConfigError(shown)


# --------------------------------------------------------------------------- YAML → plain tree

Position = tuple[int, int]
Tree = dict[str, "Tree"] | list["Tree"] | str | int | float | bool | None


@dataclass
class _Positions:
    """Where each value (and each mapping key) of the plain tree was written."""

    source_lines: list[str]
    values: dict[Loc, Position] = field(default_factory=dict)
    keys: dict[Loc, Position] = field(default_factory=dict)
    # loc → (text as written, text after ${VAR} substitution)
    substituted: dict[Loc, tuple[str, str]] = field(default_factory=dict)

    def of_value(self, loc: Loc) -> Position:
        """The value at `loc`, else the deepest written ancestor (for a missing key: its parent)."""
        if loc in self.values:
            return self.values[loc]
        for depth in range(len(loc) - 1, 0, -1):
            parent = loc[:depth]
            if parent in self.keys:
                return self.keys[parent]
            if parent in self.values:
                return self.values[parent]
        return (0, 0)

    def of_key(self, loc: Loc) -> Position:
        return self.keys.get(loc) or self.of_value(loc)


def _read_yaml(text: str, problems: _Problems) -> tuple[Tree, _Positions] | None:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        # The safe parser yields the same events as the round-trip one, twice as fast
        # (it does not collect comments).
        _check_events(YAML(typ="safe", pure=True), text, problems)
        if problems:
            return None
        loaded = yaml.load(text)
    except MarkedYAMLError as error:
        problems.add(_mark_position(error), _syntax_message(error))
        return None
    except ReaderError as error:
        problems.add(
            _offset_position_in(text, error.position),
            f"character U+{error.character:04X} is not allowed in YAML: remove it",
        )
        return None
    except YAMLError as error:
        problems.add((0, 0), f"YAML error: {error}")
        return None
    positions = _Positions(source_lines=text.splitlines())
    return _plain(loaded, (), positions), positions


def _check_events(yaml: YAML, text: str, problems: _Problems) -> None:
    """Refuse what the strict loader should never construct: anchors, aliases, tags,
    duplicate or non-scalar keys, several documents, deep nesting. One linear pass
    over the events, before any object is built (so an alias bomb costs nothing)."""
    open_collections: list[_OpenMapping | None] = []  # None for a sequence
    documents = 0
    for event in yaml.parse(text):
        position = (event.start_mark.line, event.start_mark.column)
        if isinstance(event, DocumentStartEvent):
            documents += 1
            if documents == 2:
                problems.add(
                    position, "a second YAML document (---): keep everything in one document"
                )
            continue
        if isinstance(event, SequenceEndEvent | MappingEndEvent):
            open_collections.pop()
            continue
        if not isinstance(event, ScalarEvent | SequenceStartEvent | MappingStartEvent | AliasEvent):
            continue
        if isinstance(event, AliasEvent):
            problems.add(
                position, f"alias *{event.anchor} is not supported: write the value out in full"
            )
        else:
            if event.anchor is not None:
                problems.add(
                    position,
                    f"anchor &{event.anchor} is not supported: write each value out in full",
                )
            if event.tag is not None:
                problems.add(
                    position,
                    "YAML tags (!!str, !name, ...) are not supported: remove the tag "
                    "(quote the value to make it text)",
                )
        parent = open_collections[-1] if open_collections else None
        if parent is not None:
            parent.node(event, position, problems)
        if isinstance(event, SequenceStartEvent):
            open_collections.append(None)
        elif isinstance(event, MappingStartEvent):
            open_collections.append(_OpenMapping())
        if len(open_collections) > MAX_NESTING:
            problems.add(
                position, f"nested more than {MAX_NESTING} levels deep: feeds.yaml needs 4"
            )
            return


class _OpenMapping:
    """A mapping being read from the event stream: its nodes alternate key, value."""

    def __init__(self) -> None:
        self.keys: dict[str, Position] = {}
        self.expecting_key = True

    def node(self, event: Event, position: Position, problems: _Problems) -> None:
        if self.expecting_key:
            if not isinstance(event, ScalarEvent):
                problems.add(position, "a key must be plain text, not a list or a mapping")
            elif event.value in self.keys:
                first_line = self.keys[event.value][0] + 1
                problems.add(
                    position,
                    f'duplicate key "{event.value}" (first written at line {first_line}): '
                    "remove one of them or merge them",
                )
            else:
                self.keys[event.value] = position
        self.expecting_key = not self.expecting_key


def _plain(node: Any, loc: Loc, positions: _Positions) -> Tree:
    """ruamel's round-trip objects → plain dict/list/scalars, recording positions."""
    if isinstance(node, CommentedMap):
        mapping: dict[str, Tree] = {}
        for key in node:
            child = (*loc, str(key))
            positions.keys[child] = node.lc.key(key)
            positions.values[child] = node.lc.key(key) if node[key] is None else node.lc.value(key)
            mapping[str(key)] = _plain(node[key], child, positions)
        return mapping
    if isinstance(node, CommentedSeq):
        items: list[Tree] = []
        for index, item in enumerate(node):
            child = (*loc, index)
            positions.keys[child] = positions.values[child] = node.lc.item(index)
            items.append(_plain(item, child, positions))
        return items
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    # Dates and timestamps: kept as-is so validation can say "put it in quotes".
    return cast(Tree, node)


def _mark_position(error: MarkedYAMLError) -> Position:
    mark = error.problem_mark or error.context_mark
    return (mark.line, mark.column) if mark is not None else (0, 0)


def _syntax_message(error: MarkedYAMLError) -> str:
    problem = error.problem or "invalid YAML"
    message = f"YAML syntax error: {problem}"
    if error.context and error.problem_mark is not None:
        message += f" ({error.context})"
    if "'\\t'" in problem:
        message += ": indent with spaces, not tabs"
    elif "mapping values are not allowed" in problem:
        message += ': a value containing ": " must be quoted, e.g. "Togo: défense"'
    elif "found unexpected end of stream" in problem or "found unexpected ':'" in problem:
        message += ": check the quotes and brackets on this line"
    return message


def _offset_position_in(text: str, offset: int) -> Position:
    before = text[:offset]
    return (before.count("\n"), offset - (before.rfind("\n") + 1))


# --------------------------------------------------------------------------- ${VAR}

_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_REFERENCE_BODY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)


def _substitute_environment(
    tree: Tree, positions: _Positions, environ: Mapping[str, str], problems: _Problems
) -> None:
    """Replace ``${VAR}`` in every text value (never in keys) after parsing, so line
    numbers stay those of the file. ``${VAR:-default}`` uses `default` when VAR is
    unset or empty; ``$${`` is a literal ``${``. A missing variable is an error that
    names it; its value is never shown."""

    def visit(node: Tree, loc: Loc) -> Tree:
        if isinstance(node, dict):
            for key, child in node.items():
                node[key] = visit(child, (*loc, key))
            return node
        if isinstance(node, list):
            for index, child in enumerate(node):
                node[index] = visit(child, (*loc, index))
            return node
        if isinstance(node, str) and "$" in node:
            replaced = _substitute_text(node, loc)
            if replaced != node:
                positions.substituted[loc] = (node, replaced)
            return replaced
        return node

    def _substitute_text(text: str, loc: Loc) -> str:
        def replace(reference: re.Match[str]) -> str:
            whole = reference.group(0)
            if whole == "$${":
                return "${"
            body = reference.group(1)
            if body is None:
                problems.add(
                    positions.of_value(loc),
                    '"${" without a closing "}": write ${NAME}, or $${ for a literal "${"',
                )
                return whole
            parsed = _REFERENCE_BODY.fullmatch(body)
            if parsed is None:
                problems.add(
                    positions.of_value(loc),
                    f'bad reference "{whole}": write ${{NAME}} or ${{NAME:-default}} with a '
                    "variable name made of letters, digits and _",
                )
                return whole
            name, default = parsed.groups()
            value = environ.get(name)
            if default is not None and not value:
                return default
            if value is None:
                problems.add(
                    positions.of_value(loc),
                    f"environment variable {name} is not set: export {name} before starting "
                    f"monitor, or write ${{{name}:-default}}",
                )
                return whole
            return value

        return _REFERENCE.sub(replace, text)

    visit(tree, ())


# --------------------------------------------------------------------------- schema


def _custom(kind: str, message: str) -> PydanticCustomError:
    # The message goes through ctx so that braces in user text are not format fields.
    return PydanticCustomError(kind, "{detail}", {"detail": message})


def _text(value: str) -> str:
    stripped = value.strip()
    if any(ord(character) < 32 or ord(character) == 127 for character in stripped):
        raise _custom(
            "control_character", "control characters (line breaks, tabs) are not allowed here"
        )
    return stripped


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
    return code.split("-")[0].split("_")[0].lower()


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
FeedUrl = Annotated[
    str, AfterValidator(_feed_url), StringConstraints(min_length=1, max_length=2000)
]
Language = Annotated[str, AfterValidator(_language)]
Address = Annotated[str, AfterValidator(_address)]


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
    concurrency: Annotated[int, Field(ge=1, le=64)] = PollSettings.concurrency
    per_host: Annotated[int, Field(ge=1, le=16)] = PollSettings.per_host
    user_agent: Text = PollSettings.user_agent

    @model_validator(mode="after")
    def _consistent(self) -> _PollModel:
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
    interval: Interval | None = None
    language: Language | None = None


class _WatchlistModel(_Section):
    name: Text
    query: Annotated[str, StringConstraints(min_length=1, max_length=MAX_QUERY_CHARS)] | None = None
    all_terms: Terms | None = Field(default=None, alias="all")
    any_terms: Terms | None = Field(default=None, alias="any")
    none_terms: Terms | None = Field(default=None, alias="none")
    language: Language | None = None
    languages: Annotated[list[Language], Field(min_length=1, max_length=50)] | None = None
    feeds: Annotated[list[Text], Field(min_length=1, max_length=MAX_FEEDS)] | None = None

    _compiled: Node | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _compile(self, info: ValidationInfo) -> _WatchlistModel:
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
                self._compiled = parse_query(self.query, sets)
            else:
                self._compiled = from_lists(
                    self.all_terms or (), self.any_terms or (), self.none_terms or (), sets
                )
        except QuerySyntaxError as error:
            raise _located("query", f"bad query: {error.message}", offset=error.offset) from None
        except ListTermError as error:
            raise _located(error.list_name, error.message, index=error.index) from None
        return self

    @property
    def compiled(self) -> Node:
        assert self._compiled is not None, "only validated watchlists are built"
        return self._compiled


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


class _DigestModel(_Section):
    at: Annotated[time, BeforeValidator(_clock_time)] = DigestSettings.at
    sender: Address = Field(alias="from")
    to: Annotated[list[Address], Field(min_length=1, max_length=100)]
    subject: Text = DigestSettings.subject
    smtp: _SmtpModel | None = None
    outbox: Text = DEFAULT_OUTBOX


class _ConfigModel(_Section):
    database: Text = DEFAULT_DATABASE
    timezone: Annotated[str, AfterValidator(_timezone)] = DEFAULT_TIMEZONE
    poll: _PollModel = Field(default_factory=_PollModel)
    feeds: Annotated[list[_FeedModel], Field(min_length=1, max_length=MAX_FEEDS)]
    sets: dict[SetName, Annotated[Terms, AfterValidator(_check_set_members)]] = Field(
        default_factory=dict
    )
    watchlists: Annotated[list[_WatchlistModel], Field(min_length=1, max_length=MAX_WATCHLISTS)]
    digest: _DigestModel


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


def _validate(tree: Tree, positions: _Positions, problems: _Problems) -> _ConfigModel | None:
    if not isinstance(tree, dict):
        problems.add(
            (0, 0),
            f"expected settings such as feeds: and watchlists:, got {_shown(tree)} "
            "(see the bundled feeds.yaml)",
        )
        return None
    try:
        return _ConfigModel.model_validate(
            tree, context={"sets": _sets_for_checking(tree.get("sets"))}
        )
    except ValidationError as error:
        for detail in error.errors():
            position, message = _describe_error(detail, positions)
            problems.add(position, _unmask(message, tuple(detail["loc"]), positions))
        return None


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


def _describe_error(detail: ErrorDetails, positions: _Positions) -> tuple[Position, str]:
    loc: Loc = tuple(detail["loc"])
    kind = detail["type"]
    context = detail.get("ctx") or {}
    given = detail["input"]

    if loc and loc[-1] == "[key]":
        name = loc[-2]
        return positions.of_key(loc[:-1]), (
            f'bad set name "{name}": use letters, digits, _ and - without spaces, '
            "then refer to it as @name in queries and lists"
        )
    if kind == "config":
        target: Loc = loc
        if "key" in context:
            target = (*target, str(context["key"]))
        if "index" in context:
            target = (*target, int(context["index"]))
        message = _unmask(str(context["detail"]), target, positions)
        if "offset" in context:
            return _position_in_scalar(target, int(context["offset"]), positions), message
        return (positions.of_key(target) if target == loc else positions.of_value(target)), message
    if kind == "extra_forbidden":
        return positions.of_key(loc), _unknown_key_message(loc)
    if kind == "missing":
        return positions.of_key(loc[:-1]) if len(loc) > 1 else (0, 0), _missing_message(loc)

    position = positions.of_value(loc)
    what = _EXPECTED.get(kind)
    if what is not None:
        if given is None:
            message = f"{_name(loc)} is empty: give {what}, or remove the key"
        else:
            message = f"expected {what}, got {_shown(given)}"
            if kind == "string_type" and isinstance(given, int | float | bool | date):
                message += f': put it in quotes, e.g. "{_yaml_text(given)}"'
        return position, message + _shape_hint(loc, kind)
    if kind == "too_short" and len(loc) == 2 and loc[0] == "sets":
        return position, f"set {loc[1]} is empty: give it at least one term, or remove it"
    if kind in ("too_short", "string_too_short"):
        return (
            position,
            f"{_name(loc)} is empty: {_EMPTY_HINTS.get(_last_key(loc) or '', 'give a value or remove the key')}",
        )
    if kind == "literal_error":
        return position, f"{_shown(given)} is not allowed: use one of {context.get('expected')}"
    if kind == "too_long":
        return position, f"too many items in {_name(loc)}: at most {context.get('max_length')}"
    if kind == "string_too_long":
        return position, f"text too long: at most {context.get('max_length')} characters"
    if kind == "string_pattern_mismatch" and _last_key(loc) == "host":
        return (
            position,
            f"bad host {_shown(given)}: write only the host name, e.g. smtp.example.org",
        )
    if kind in _CUSTOM_KINDS:
        return position, str(context.get("detail", detail["msg"]))
    if kind in ("greater_than_equal", "less_than_equal"):
        low_high = "at least" if kind == "greater_than_equal" else "at most"
        bound = context.get("ge", context.get("le"))
        return position, f"{_name(loc)} must be {low_high} {bound}, got {_shown(given)}"
    return position, f"{_name(loc)}: {detail['msg']}"


_EXPECTED = {
    "string_type": "text",
    "int_type": "a whole number",
    "list_type": "a list, e.g. [one, two] or one item per line starting with -",
    "dict_type": "a mapping of names to lists",
    "model_type": "a mapping of keys (key: value, one per line)",
    "model_attributes_type": "a mapping of keys (key: value, one per line)",
    "time_type": 'a time in quotes, e.g. "07:00"',
    "bool_type": "true or false",
}
_CUSTOM_KINDS = {
    "control_character",
    "duration",
    "duration_range",
    "size",
    "url",
    "language",
    "timezone",
    "clock_time",
    "address",
}
_EMPTY_HINTS = {
    "feeds": "list at least one feed, each as - url: https://...",
    "watchlists": "add at least one watchlist",
    "all": "add terms or remove the key",
    "any": "add terms or remove the key",
    "none": "add terms or remove the key",
    "to": "give at least one recipient, e.g. to: [analyste@example.org]",
    "query": "write a query or remove the key",
}
_MISSING_HINTS = {
    "url": "every feed needs one, e.g. url: https://example.org/rss",
    "name": 'every watchlist needs a unique name, e.g. name: "Togo — défense"',
    "feeds": "list the feeds to poll, each as - url: https://...",
    "watchlists": "add at least one watchlist (see the bundled feeds.yaml)",
    "digest": "add a digest: section with from: and to: (see the bundled feeds.yaml)",
    "from": "give the sender address, e.g. from: veille@example.org",
    "to": "give the recipients, e.g. to: [analyste@example.org]",
    "host": "give the SMTP server, e.g. host: smtp.example.org",
}


def _unknown_key_message(loc: Loc) -> str:
    key = str(loc[-1])
    allowed = _allowed_keys(loc[:-1])
    message = f'unknown key "{key}"'
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        message += f' (did you mean "{close[0]}"?)'
    if allowed:
        message += ": allowed here: " + ", ".join(allowed)
    return message


def _missing_message(loc: Loc) -> str:
    key = str(loc[-1])
    hint = _MISSING_HINTS.get(key)
    section = f" in {_name(loc[:-1])}" if len(loc) > 1 else ""
    return f'missing "{key}"{section}' + (f": {hint}" if hint else "")


def _allowed_keys(loc: Loc) -> list[str]:
    model: type[BaseModel] | None = _ConfigModel
    for step in loc:
        if isinstance(step, int) or model is None:
            continue
        fields = {field.alias or name: field for name, field in model.model_fields.items()}
        found = fields.get(step)
        model = _model_in(found.annotation) if found is not None else None
    if model is None:
        return []
    return [field.alias or name for name, field in model.model_fields.items()]


def _model_in(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None


def _shape_hint(loc: Loc, kind: str) -> str:
    if kind in ("model_type", "model_attributes_type") and len(loc) == 2 and loc[0] == "feeds":
        return ': write each feed as "- url: https://..." (with name: and interval: below it if needed)'
    if kind in ("model_type", "model_attributes_type") and len(loc) == 2 and loc[0] == "watchlists":
        return ': write each watchlist as "- name: ..." followed by query: or all:/any:/none:'
    return ""


def _name(loc: Loc) -> str:
    """A short human name for the place `loc`, e.g. ``feeds[2].url``."""
    if not loc:
        return "the file"
    parts: list[str] = []
    for step in loc:
        if isinstance(step, int):
            parts.append(f"[{step + 1}]")
        else:
            parts.append(("." if parts else "") + step)
    return "".join(parts)


def _last_key(loc: Loc) -> str | None:
    for step in reversed(loc):
        if isinstance(step, str):
            return step
    return None


def _shown(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, date):
        return f"the date {value.isoformat()}"
    if isinstance(value, str):
        return f'"{value[:60]}…"' if len(value) > 60 else f'"{value}"'
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _yaml_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _unmask(message: str, loc: Loc, positions: _Positions) -> str:
    """Show ``${VAR}`` as written instead of its value: environment values are secrets."""
    substitution = positions.substituted.get(loc)
    if substitution is None:
        return message
    written, value = substitution
    return message.replace(value, written) if value else message


def _format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


# --------------------------------------------------------------------------- query positions


def _position_in_scalar(loc: Loc, offset: int, positions: _Positions) -> Position:
    """The file position of character `offset` of the text value at `loc`."""
    start = positions.of_value(loc)
    if loc in positions.substituted or loc not in positions.values:
        return start
    lines = positions.source_lines
    line, column = start
    indicator = lines[line][column : column + 1] if line < len(lines) else ""
    if indicator in ("|", ">"):
        return _position_in_block_scalar(lines, line, offset)
    return _position_in_flow_scalar(lines, line, column, indicator, offset)


def _position_in_flow_scalar(
    lines: list[str], line: int, column: int, quote: str, offset: int
) -> Position:
    """Walk a plain, 'single' or "double" quoted scalar: escapes and '' take several
    source characters for one; a line break folds into one space (or one newline per
    blank line)."""
    quote = quote if quote in ("'", '"') else ""
    if quote:
        column += 1
    remaining = offset
    while remaining > 0 and line < len(lines):
        text = lines[line]
        if not text[column:].strip():
            following, blank_lines = line + 1, 0
            while following < len(lines) and not lines[following].strip():
                following, blank_lines = following + 1, blank_lines + 1
            if following >= len(lines):
                break
            line = following
            column = len(lines[line]) - len(lines[line].lstrip())
            remaining -= max(1, blank_lines)
            continue
        character = text[column]
        if quote == "'" and text.startswith("''", column):
            column += 2
        elif quote == '"' and character == "\\":
            escape = text[column + 1 : column + 2]
            if not escape:  # an escaped line break joins the lines without a space
                line += 1
                column = len(lines[line]) - len(lines[line].lstrip()) if line < len(lines) else 0
                continue
            column += {"x": 4, "u": 6, "U": 10}.get(escape, 2)
        else:
            column += 1
        remaining -= 1
    return (line, column)


def _position_in_block_scalar(lines: list[str], indicator_line: int, offset: int) -> Position:
    """Walk a | or > block: each content line maps one to one, each line break is one
    character (folding turns it into a space, which has the same length)."""
    line = indicator_line + 1
    while line < len(lines) and not lines[line].strip():
        line += 1
    if line >= len(lines):
        return (indicator_line, 0)
    indent = len(lines[line]) - len(lines[line].lstrip())
    remaining = offset
    line = indicator_line + 1
    while line < len(lines):
        content = lines[line][indent:]
        if remaining <= len(content):
            return (line, indent + remaining)
        remaining -= len(content) + 1
        line += 1
    return (len(lines) - 1, indent)


# --------------------------------------------------------------------------- cross-references


def _check_references(tree: Tree, positions: _Positions, problems: _Problems) -> None:
    """Uniqueness and feed-name references, checked on the raw tree so they are reported
    together with any other problem."""
    if not isinstance(tree, dict):
        return
    feed_names: dict[str, Position] = {}
    feed_urls: dict[str, Position] = {}
    for index, feed in _items(tree.get("feeds")):
        url, name = feed.get("url"), feed.get("name")
        if isinstance(url, str) and url.strip():
            _claim(
                _url_identity(url),
                positions.of_value(("feeds", index, "url")),
                feed_urls,
                problems,
                "this feed URL is already listed at line {line}: remove one of them",
            )
        if isinstance(name, str) and name.strip():
            _claim(
                name.strip(),
                positions.of_value(("feeds", index, "name")),
                feed_names,
                problems,
                'another feed is already named "' + name.strip() + '" (line {line}): '
                "watchlists refer to feeds by name, so names must be unique",
            )
    watchlist_names: dict[str, Position] = {}
    for index, watchlist in _items(tree.get("watchlists")):
        name = watchlist.get("name")
        if isinstance(name, str) and name.strip():
            _claim(
                name.strip().casefold(),
                positions.of_value(("watchlists", index, "name")),
                watchlist_names,
                problems,
                'the watchlist name "' + name.strip() + '" is already used at line {line}: '
                "names must be unique (hits are filed under them)",
            )
        scope = watchlist.get("feeds")
        if not isinstance(scope, list):
            continue
        for position_in_scope, feed_name in enumerate(scope):
            if (
                isinstance(feed_name, str)
                and feed_name.strip()
                and feed_name.strip() not in feed_names
            ):
                problems.add(
                    positions.of_value(("watchlists", index, "feeds", position_in_scope)),
                    _unknown_feed_message(feed_name.strip(), list(feed_names)),
                )


def _items(section: Tree) -> list[tuple[int, dict[str, Tree]]]:
    if not isinstance(section, list):
        return []
    return [(index, item) for index, item in enumerate(section) if isinstance(item, dict)]


def _claim(
    identity: str,
    position: Position,
    seen: dict[str, Position],
    problems: _Problems,
    duplicate_message: str,
) -> None:
    first = seen.get(identity)
    if first is None:
        seen[identity] = position
    else:
        problems.add(position, duplicate_message.format(line=first[0] + 1))


def _url_identity(url: str) -> str:
    parts = urlsplit(url.strip())
    return urlunsplit(
        (parts.scheme.lower(), parts.netloc.lower(), parts.path or "/", parts.query, "")
    )


def _unknown_feed_message(name: str, configured: list[str]) -> str:
    by_folded = {known.casefold(): known for known in configured}
    close = difflib.get_close_matches(name.casefold(), list(by_folded), n=1, cutoff=0.6)
    message = f'no feed is named "{name}"'
    if close:
        message += f' (did you mean "{by_folded[close[0]]}"?)'
    return message + (
        ": a watchlist's feeds: must use names given with name: under feeds: "
        "(a feed known only by its own title cannot be named here)"
    )


# --------------------------------------------------------------------------- building


def _build_config(model: _ConfigModel, path: Path) -> Config:
    base = path.absolute().parent

    def resolve(written: str) -> Path:
        candidate = Path(written).expanduser()
        return candidate if candidate.is_absolute() else base / candidate

    poll = PollSettings(
        interval=model.poll.interval,
        timeout=model.poll.timeout.total_seconds(),
        connect_timeout=model.poll.connect_timeout.total_seconds(),
        max_bytes=model.poll.max_bytes,
        concurrency=model.poll.concurrency,
        per_host=model.poll.per_host,
        user_agent=model.poll.user_agent,
    )
    smtp_model = model.digest.smtp
    smtp = None
    if smtp_model is not None:
        smtp = SmtpSettings(
            host=smtp_model.host,
            port=smtp_model.port or (465 if smtp_model.security == "ssl" else 587),
            security=smtp_model.security,
            username=smtp_model.username,
            password=smtp_model.password,
            timeout=smtp_model.timeout.total_seconds(),
        )
    return Config(
        path=path.absolute(),
        database=resolve(model.database),
        timezone=ZoneInfo(model.timezone),
        poll=poll,
        feeds=tuple(
            FeedSpec(
                url=feed.url,
                name=feed.name,
                interval=feed.interval or poll.interval,
                language=feed.language,
            )
            for feed in model.feeds
        ),
        watchlists=tuple(
            Watchlist(
                name=watchlist.name,
                query=watchlist.compiled,
                language=watchlist.language,
                feeds=tuple(watchlist.feeds or ()),
                languages=tuple(dict.fromkeys(watchlist.languages or ())),
            )
            for watchlist in model.watchlists
        ),
        digest=DigestSettings(
            at=model.digest.at,
            sender=model.digest.sender,
            recipients=tuple(model.digest.to),
            smtp=smtp,
            outbox=resolve(model.digest.outbox),
            subject=model.digest.subject,
        ),
        sets=MappingProxyType({name: tuple(terms) for name, terms in model.sets.items()}),
    )
