"""YAML text → a plain tree of dicts, lists and scalars, with where each value was written.

Owns the strict reading of the file (no anchors, aliases, tags, duplicate keys,
second documents or deep nesting, refused in one pass over the parser's events
before anything is built), the YAML syntax messages, the `_Problems` collector
every later step reports into, and `_shown`, the way messages name a value of
the tree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

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
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.reader import Reader, ReaderError
from ruamel.yaml.tag import Tag
from yaml import YAMLError as LibYamlError
from yaml.events import AliasEvent as AliasEventC
from yaml.events import DocumentStartEvent as DocumentStartEventC
from yaml.events import MappingEndEvent as MappingEndEventC
from yaml.events import MappingStartEvent as MappingStartEventC
from yaml.events import ScalarEvent as ScalarEventC
from yaml.events import SequenceEndEvent as SequenceEndEventC
from yaml.events import SequenceStartEvent as SequenceStartEventC

try:
    from yaml import CBaseLoader as _LIBYAML_LOADER
except ImportError:  # PyYAML built without libyaml: every file takes the strict reader
    _LIBYAML_LOADER = None

from monitor.errors import ConfigError

MAX_REPORTED_PROBLEMS = 50
MAX_NESTING = 16  # feeds.yaml needs 4 levels; a deeper file is a mistake or an attack

Loc = tuple[str | int, ...]  # a place in the tree: keys and 0-based list indexes
Position = tuple[int, int]  # 0-based (line, column) in the file
Tree = dict[str, "Tree"] | list["Tree"] | str | int | float | bool | None


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
    """The tree and its positions, or None with the problems added. A file that the
    fast reader takes is read by it alone; any other goes through ruamel.yaml, which
    words every refusal. A document handed over for this very text is taken instead."""
    global _handed_over
    handed, _handed_over = _handed_over, None
    if handed is not None and handed[0] == text:
        return handed[1]
    fast = _read_yaml_fast(text)
    if fast is not None:
        return fast
    return _read_yaml_strict(text, problems)


_handed_over: tuple[str, tuple[Tree, _Positions]] | None = None


def _hand_over(text: str, document: tuple[Tree, _Positions]) -> None:
    """Keep `document`, read from `text` and left unchanged, for the next `_read_yaml`
    (only the next: a daemon must not hold a second copy of a large tree): `monitor
    check` and a reload load the file, then lint it, and the lint reads it again."""
    global _handed_over
    _handed_over = (text, document)


def _read_yaml_strict(text: str, problems: _Problems) -> tuple[Tree, _Positions] | None:
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


def _read_yaml_fast(text: str) -> tuple[Tree, _Positions] | None:
    """The tree and positions `_read_yaml_strict` gives, built from libyaml's events (a C
    parser, many times faster than ruamel.yaml's pure-Python one on a large file), or
    None whenever the text holds anything `_read_yaml_strict` would refuse or read in its
    own way: a syntax error, a character YAML forbids, an anchor, alias, tag or
    directive, a duplicate, non-text or merge (``<<``) key, no or a second document,
    deep nesting. Plain scalars are typed by ruamel.yaml's own YAML 1.2 resolver and
    constructor, so values are the same whichever reader ran."""
    if _LIBYAML_LOADER is None or _NON_PRINTABLE.search(text) is not None:
        return None
    positions = _Positions(source_lines=text.splitlines())
    keys, values = positions.keys, positions.values
    stack: list[_Open] = []
    roots: list[Tree] = []
    documents = 0
    loader = _LIBYAML_LOADER(text)
    try:
        # The parser's own method, called from C until it has no event left (None):
        # `yaml.parse`'s generator cost a Python frame per event, 900,000 of them.
        for event in iter(loader.get_event, None):
            kind = type(event)
            if kind is ScalarEventC or kind is MappingStartEventC or kind is SequenceStartEventC:
                if event.anchor is not None or event.tag is not None:
                    return None
                mark = event.start_mark
                position = (mark.line, mark.column)
                node: Tree
                if kind is ScalarEventC:
                    node = event.value if event.style else _plain_scalar(event.value)
                else:
                    node = {} if kind is MappingStartEventC else []
                child: Loc = ()
                if not stack:
                    roots.append(node)
                else:
                    parent = stack[-1]
                    container = parent.container
                    if isinstance(container, list):
                        child = (*parent.loc, len(container))
                        keys[child] = values[child] = position
                        container.append(node)
                    elif parent.key is None:
                        if not isinstance(node, str) or node == "<<" or node in container:
                            return None  # non-text (or typed), merge or duplicate key
                        parent.key, parent.key_position = node, position
                        continue
                    else:
                        child = (*parent.loc, parent.key)
                        keys[child] = parent.key_position
                        values[child] = parent.key_position if node is None else position
                        container[parent.key] = node
                        parent.key = None
                if isinstance(node, dict | list):
                    stack.append(_Open(node, child))
                    if len(stack) > MAX_NESTING:
                        return None
            elif kind is MappingEndEventC or kind is SequenceEndEventC:
                stack.pop()
            elif kind is DocumentStartEventC:
                documents += 1
                if documents > 1 or event.version is not None or event.tags:
                    return None
            elif kind is AliasEventC:
                return None
    except (LibYamlError, _NotForTheFastReader):
        return None
    finally:
        loader.dispose()
    if documents != 1 or len(roots) != 1:
        return None
    return roots[0], positions


class _Open:
    """A collection being filled from the event stream."""

    __slots__ = ("container", "key", "key_position", "loc")

    def __init__(self, container: dict[str, Tree] | list[Tree], loc: Loc) -> None:
        self.container = container
        self.loc = loc
        self.key: str | None = None  # in a mapping: the key read, its value not yet
        self.key_position: Position = (0, 0)


class _NotForTheFastReader(Exception):
    """Raised by `_plain_scalar` for a scalar the strict reader must see."""


_PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("bool", "int", "float", "null", "timestamp")
)
_NON_PRINTABLE = Reader.NON_PRINTABLE
_TYPING = YAML(typ="rt")  # never loads: lends its resolver and constructor to `_plain_scalar`
# First character → the (tag, pattern) pairs YAML 1.2 tries on a plain scalar starting with it.
_IMPLICIT_RESOLVERS: dict[str | None, list[tuple[str, Any]]] = _TYPING.resolver.versioned_resolver
assert not _IMPLICIT_RESOLVERS.get(None), "no resolver applies to every first character"


@lru_cache(maxsize=4096)  # mostly the keys (name, any, query...): 200,000 of 100,000 watchlists
def _implicit_tag(value: str) -> str | None:
    """What ruamel.yaml's `resolve` gives a plain scalar (None: text), without working out
    the YAML version at each call."""
    for tag, pattern in _IMPLICIT_RESOLVERS.get(value[:1], ()):
        if pattern.match(value):
            return tag
    return None


def _plain_scalar(value: str) -> Tree:
    """A plain scalar typed as ruamel.yaml's round-trip loader types it, then made plain
    as `_plain` makes it."""
    tag = _implicit_tag(value)
    if tag is None:
        return value
    if tag not in _PLAIN_TAGS:
        raise _NotForTheFastReader  # "<<", "=": merge and value keys
    built = _TYPING.constructor.construct_non_recursive_object(ScalarNode(Tag(suffix=tag), value))
    return _plain(built, (), _Positions(source_lines=[]))


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


def _shown(value: object) -> str:
    """A tree value as messages name it: quoted text (cut at 60 characters), a number, a kind."""
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
