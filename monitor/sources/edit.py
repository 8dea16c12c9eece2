"""Edit the ``feeds:`` list of feeds.yaml without touching anything else in the file.

ruamel.yaml reads the file (round-trip mode, so every node knows its line and
column) and writes each new value with its quoting rules; the edit itself is
spliced into the original text line by line. Dumping the whole document again
would re-indent sections written in another style and re-wrap long lines;
splicing keeps every other byte (comments, blank lines, quoting, line endings,
a byte order mark) exactly as the user wrote it.

A feed item's lines are its dash line and every following line that is blank or
indented deeper than its dash, minus trailing blank lines; a comment at the
dash's own indentation belongs to what follows (a heading, a disabled feed).

    FeedsDocument.read(path) ─► with_added / with_removed / with_url_replaced ─► new text
    save(document, new text) ─► validated with the project's loader ─► atomic rename
                                (an invalid result is never written)
"""

from __future__ import annotations

import codecs
import io
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from monitor.config import MAX_CONFIG_BYTES, check_config_size, parse_config
from monitor.errors import ConfigError, SourceError
from monitor.sources.urls import canonical_url

__all__ = [
    "ConfiguredFeed",
    "FeedsDocument",
    "NewFeed",
    "SaveReport",
    "save",
    "write_atomically",
]


@dataclass(frozen=True)
class NewFeed:
    """A feed to write under ``feeds:``; `interval` as the user wrote it (``30m``)."""

    url: str
    name: str | None = None
    interval: str | None = None
    tags: tuple[str, ...] = ()
    type: Literal["feed", "sitemap"] = "feed"


@dataclass(frozen=True)
class ConfiguredFeed:
    """A feed as written in the file: its place in the list and its 1-based line."""

    index: int
    url: str
    name: str | None
    tags: tuple[str, ...]
    line: int

    @property
    def label(self) -> str:
        return f'"{self.name}" ({self.url})' if self.name else self.url


@dataclass(frozen=True)
class _Item:
    first: int  # 0-based line of the dash
    last: int  # 0-based last line of the item (inclusive)
    dash: int  # column of the dash
    key: int  # column of the item's keys


_LINE = re.compile(r"[^\n]*\n|[^\n]+\Z")


class FeedsDocument:
    """The text of a feeds.yaml and where its feeds are written."""

    def __init__(self, path: Path, data: bytes) -> None:
        self.path = path
        self.data = data
        self._bom = data.startswith(codecs.BOM_UTF8)
        try:
            self.text = data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise SourceError(
                f"{path}: byte {error.start} is not valid UTF-8; save the file as UTF-8 "
                "(monitor check shows where)"
            ) from None
        self.lines = _LINE.findall(self.text)
        self.newline = "\r\n" if self.lines and self.lines[0].endswith("\r\n") else "\n"
        try:
            root = YAML(typ="rt").load(self.text)
        except YAMLError as error:
            raise SourceError(
                f"{path} is not valid YAML, so it cannot be edited ({_first_line(error)}); "
                "run `monitor check` to see where"
            ) from None
        if root is None:
            root = CommentedMap()
        if not isinstance(root, CommentedMap):
            raise SourceError(f"{path}: expected settings such as feeds: at the top of the file")
        self._root = root
        self._feeds = root.get("feeds")
        if self._feeds is not None and not isinstance(self._feeds, CommentedSeq):
            raise SourceError(f"{path}: feeds: must be a list, one feed per item (- url: ...)")
        self.feeds = [self._configured(index, item) for index, item in enumerate(self._feeds or [])]
        self._by_key: dict[str, ConfiguredFeed] | None = None  # canonical URL → feed, on first use

    @classmethod
    def read(cls, path: Path) -> FeedsDocument:
        try:
            with path.open("rb") as handle:
                data = handle.read(MAX_CONFIG_BYTES + 1)
        except OSError as error:
            raise SourceError(f"{path}: cannot read it ({error.strerror or error})") from None
        if len(data) > MAX_CONFIG_BYTES:
            raise SourceError(f"{path} is larger than {MAX_CONFIG_BYTES // 1024} KiB")
        return cls(path, data)

    # ----------------------------------------------------------------- queries

    def find(self, name_or_url: str) -> ConfiguredFeed | None:
        """The feed named `name_or_url`, or whose URL is another spelling of it."""
        wanted = name_or_url.strip()
        for feed in self.feeds:
            if feed.name is not None and feed.name == wanted:
                return feed
        for feed in self.feeds:
            if feed.name is not None and feed.name.casefold() == wanted.casefold():
                return feed
        return self.same_url(wanted)

    def same_url(self, url: str) -> ConfiguredFeed | None:
        """The configured feed whose URL is `url` under another spelling, if any."""
        if self._by_key is None:
            self._by_key = {}
            for feed in self.feeds:
                self._by_key.setdefault(canonical_url(feed.url), feed)
        return self._by_key.get(canonical_url(url))

    def names(self) -> list[str]:
        return [feed.name for feed in self.feeds if feed.name]

    def watchlists_scoped_to(self, name: str) -> list[tuple[str, int]]:
        """(watchlist name, 1-based line) of each watchlist whose ``feeds:`` names `name`."""
        return self._scopes("feeds", lambda item: item == name)

    def watchlists_using_tag(self, tag: str) -> list[tuple[str, int]]:
        """(watchlist name, 1-based line) of each watchlist whose ``tags:`` has `tag` (any case)."""
        return self._scopes("tags", lambda item: item.casefold() == tag.casefold())

    def _scopes(self, key: str, wanted: Callable[[str], bool]) -> list[tuple[str, int]]:
        found: list[tuple[str, int]] = []
        watchlists = self._root.get("watchlists")
        if not isinstance(watchlists, CommentedSeq):
            return found
        for watchlist in watchlists:
            if not isinstance(watchlist, CommentedMap):
                continue
            scope = watchlist.get(key)
            if not isinstance(scope, CommentedSeq):
                continue
            for position, item in enumerate(scope):
                if isinstance(item, str) and wanted(item.strip()):
                    line = scope.lc.data[position][0] + 1
                    found.append((str(watchlist.get("name", "?")), line))
        return found

    # ----------------------------------------------------------------- edits

    def with_added(self, feeds: Sequence[NewFeed]) -> str:
        """The text with `feeds` appended to the ``feeds:`` list, in that list's style."""
        if not feeds:
            return self.text
        lines = list(self.lines)
        if self.feeds:
            last = self._item(len(self.feeds) - 1)
            block = self._render(feeds, dash=last.dash, key=last.key)
            _ensure_newline(lines, last.last, self.newline)
            lines[last.last + 1 : last.last + 1] = block
            return "".join(lines)
        if "feeds" not in self._root:
            if lines:
                _ensure_newline(lines, len(lines) - 1, self.newline)
            lines.append("feeds:" + self.newline)
            lines.extend(self._render(feeds, dash=2, key=4))
            return "".join(lines)
        key_line, key_column = self._root.lc.key("feeds")
        value_line, value_column = self._root.lc.value("feeds")
        after = key_line
        if self._feeds is not None:  # an empty flow list: feeds: [] becomes a block list
            if value_line != key_line or not lines[value_line][value_column:].startswith("[]"):
                raise SourceError(
                    f"{self.path}:{value_line + 1}: feeds: is written as [...] on one line; "
                    "write one feed per line (- url: ...) so that monitor can edit it"
                )
            text = lines[value_line]
            lines[value_line] = text[:value_column].rstrip() + text[value_column + 2 :]
            after = value_line
        _ensure_newline(lines, after, self.newline)
        lines[after + 1 : after + 1] = self._render(feeds, dash=key_column + 2, key=key_column + 4)
        return "".join(lines)

    def with_removed(self, feed: ConfiguredFeed) -> str:
        item = self._item(feed.index)
        lines = list(self.lines)
        del lines[item.first : item.last + 1]
        return "".join(lines)

    def with_url_replaced(self, feed: ConfiguredFeed, url: str) -> str:
        """The text with `feed`'s URL value rewritten; its other keys and comments stay."""
        assert self._feeds is not None
        mapping = self._feeds[feed.index]
        line, column = mapping.lc.value("url")
        text = self.lines[line]
        end = _scalar_end(text, column)
        if end is None:
            raise SourceError(
                f"{self.path}:{line + 1}: the url of {feed.label} spans several lines; "
                "write it on one line to let monitor change it"
            )
        lines = list(self.lines)
        lines[line] = text[:column] + _scalar(url) + text[end:]
        return "".join(lines)

    def encode(self, text: str) -> bytes:
        """`text` as file bytes, with the byte order mark the file had."""
        return (codecs.BOM_UTF8 if self._bom else b"") + text.encode("utf-8")

    # ----------------------------------------------------------------- internals

    def _configured(self, index: int, item: object) -> ConfiguredFeed:
        assert self._feeds is not None
        line = self._feeds.lc.data[index][0] + 1
        if not isinstance(item, CommentedMap) or not isinstance(item.get("url"), str):
            raise SourceError(
                f"{self.path}:{line}: this feed has no url: text; fix it first (monitor check)"
            )
        name = item.get("name")
        tags = item.get("tags")
        return ConfiguredFeed(
            index=index,
            url=str(item["url"]).strip(),
            name=name.strip() if isinstance(name, str) else None,
            tags=tuple(str(tag) for tag in tags) if isinstance(tags, list) else (),
            line=line,
        )

    def _item(self, index: int) -> _Item:
        assert self._feeds is not None
        node_line, node_column = self._feeds.lc.data[index]
        if getattr(self._feeds.fa, "_flow_style", False):
            raise SourceError(
                f"{self.path}:{node_line + 1}: feeds: is written as [...]; write one feed per "
                "line (- url: ...) so that monitor can edit it"
            )
        first, dash = _dash_before(self.lines, node_line, node_column)
        if first is None:
            raise SourceError(f"{self.path}:{node_line + 1}: cannot find this feed's '-'")
        last = first
        for number in range(first + 1, len(self.lines)):
            text = self.lines[number]
            if not text.strip():
                continue
            if _indent(text) <= dash:
                break
            last = number
        return _Item(first=first, last=last, dash=dash, key=node_column)

    def _render(self, feeds: Sequence[NewFeed], *, dash: int, key: int) -> list[str]:
        rendered: list[str] = []
        for feed in feeds:
            mapping = CommentedMap()
            mapping["url"] = feed.url
            if feed.name:
                mapping["name"] = feed.name
            if feed.interval:
                mapping["interval"] = feed.interval
            if feed.tags:
                tags = CommentedSeq([_flow_safe(tag) for tag in feed.tags])
                tags.fa.set_flow_style()
                mapping["tags"] = tags
            if feed.type != "feed":
                mapping["type"] = feed.type
            for position, line in enumerate(_dump(mapping).splitlines()):
                prefix = (
                    " " * dash + "- " + " " * max(0, key - dash - 2) if position == 0 else " " * key
                )
                rendered.append(prefix + line + self.newline)
        return rendered


# --------------------------------------------------------------------------- saving


@dataclass(frozen=True)
class SaveReport:
    """What `save` left: problems the file already had before the edit, still there."""

    remaining_problems: tuple[str, ...] = ()


def save(
    document: FeedsDocument, new_text: str, *, environ: Mapping[str, str] | None = None
) -> SaveReport:
    """Replace the file with `new_text` if the edit adds no configuration problem.

    The exact bytes to be written are validated with the project's loader first, so an
    invalid file is never written (a running daemon never sees one, not even for a
    moment); then they replace the file atomically, if nobody changed it since it was
    read. Problems the file already had (an unset ``${VAR}`` in this shell) do not block
    the edit; they are returned. Raises `ConfigError` listing the problems the edit
    would add, `SourceError` if the file changed meanwhile.
    """
    environment = os.environ if environ is None else environ
    path = document.path
    data = document.encode(new_text)
    check_config_size(data, path=path)
    after = _problems(new_text, path, environment)
    if after:
        introduced = _introduced(after, _problems(document.text, path, environment), path)
        if introduced:
            raise ConfigError(introduced)
    if _read_again(path) != document.data:
        raise SourceError(
            f"{path} changed while it was being edited; nothing was written: run again"
        )
    write_atomically(path, data)
    if _read_again(path) != data:
        raise SourceError(
            f"another program wrote {path} at the same moment as this edit; "
            "check the file with monitor check"
        )
    return SaveReport(remaining_problems=tuple(after))


def _read_again(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise SourceError(f"{path}: cannot read it again ({error.strerror or error})") from None


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, fsync it, rename it over `path`.

    A reader (the daemon's live reload) sees the old file or the new one, never a part.
    The file keeps its permission bits; a symbolic link is followed, not replaced.
    """
    target = path.resolve()
    try:
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:  # a new file: what open() would give it
        mask = os.umask(0)
        os.umask(mask)
        mode = 0o666 & ~mask
    descriptor, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _problems(text: str, path: Path, environ: Mapping[str, str]) -> list[str]:
    try:
        parse_config(text, path=path, environ=environ)
    except ConfigError as error:
        return error.problems
    return []


def _introduced(after: Sequence[str], before: Sequence[str], path: Path) -> list[str]:
    """The problems of `after` the file did not have before (compared without positions:
    an edit moves lines)."""
    known = {_without_position(problem, path) for problem in before}
    return [problem for problem in after if _without_position(problem, path) not in known]


def _without_position(problem: str, path: Path) -> str:
    prefix = f"{path}:"
    rest = problem[len(prefix) :] if problem.startswith(prefix) else problem
    return re.sub(r"\A\d+:\d+: ", "", rest)


# --------------------------------------------------------------------------- text helpers


def _dump(value: Any) -> str:
    yaml = YAML(typ="rt")
    yaml.width = 4096  # one value, one line
    stream = io.StringIO()
    yaml.dump(value, stream)
    return stream.getvalue()


def _scalar(value: str) -> str:
    """`value` written as a YAML scalar, quoted when needed."""
    dumped = _dump({"k": value})
    return dumped[len("k: ") :].rstrip("\n")


_FLOW_INDICATORS = frozenset("-?:,[]{}#&*!|>'\"%@`")


def _flow_safe(value: str) -> str:
    """`value` quoted unless YAML reads it back as the same plain text inside a flow
    sequence (``[a, b]``): ruamel itself writes ``[?0]`` for "?0", which reads back as a
    mapping. Plain: no indicator first, no flow punctuation, no ": " or " #", no
    surrounding space."""
    plain = (
        value
        and value[0] not in _FLOW_INDICATORS
        and not any(character in ",[]{}" for character in value)
        and ": " not in value
        and " #" not in value
        and not value.endswith(":")
        and value == value.strip()
    )
    if plain:
        return value
    quoted: str = DoubleQuotedScalarString(value)
    return quoted


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _ensure_newline(lines: list[str], index: int, newline: str) -> None:
    if not lines[index].endswith("\n"):
        lines[index] += newline


def _dash_before(lines: Sequence[str], line: int, column: int) -> tuple[int | None, int]:
    """The line and column of the "-" that opens the list item whose node starts at (line, column)."""
    before = lines[line][:column].rstrip()
    if before.endswith("-") and not before[:-1].strip(" -"):
        return line, len(before) - 1
    for number in range(line - 1, -1, -1):
        stripped = lines[number].strip()
        if stripped == "-":
            return number, _indent(lines[number])
        if stripped and not stripped.startswith("#"):
            break
    return None, 0


def _scalar_end(line: str, start: int) -> int | None:
    """Where the one-line scalar starting at `start` ends; None if it continues on the next line."""
    content = line.rstrip("\r\n")
    quote = content[start : start + 1]
    if quote == "'":
        position = start + 1
        while position < len(content):
            if content[position] == "'":
                if content[position + 1 : position + 2] == "'":
                    position += 2
                    continue
                return position + 1
            position += 1
        return None
    if quote == '"':
        position = start + 1
        while position < len(content):
            if content[position] == "\\":
                position += 2
                continue
            if content[position] == '"':
                return position + 1
            position += 1
        return None
    comment = content.find(" #", start)
    end = comment if comment >= 0 else len(content)
    return start + len(content[start:end].rstrip())


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
