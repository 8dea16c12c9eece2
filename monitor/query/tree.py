"""The syntax tree of the watchlist language, and the limits a query must keep to."""

from __future__ import annotations

from dataclasses import dataclass, field

FIELDS = ("title", "text")
MIN_PREFIX_LENGTH = 2
# How deep parentheses, NOTs and field scopes may nest. Far more than a watchlist needs;
# every stage that walks a query recurses, and Python's stack is not unbounded.
MAX_NESTING = 32
# What one NEAR expression may cost: matching keeps one occurrence per distinct span of words,
# so each NEAR pairs at most (occurrences of its side) x (distinct spans, at most the square
# of the article's word count, and far fewer within the distance). A chain of NEARs pays that
# once per NEAR; these bounds keep a pathological query (a frequent word chained over a long
# article) to well under a second a watchlist.
MAX_NEAR_DISTANCE = 200
MAX_NEARS_IN_ONE_EXPRESSION = 4

# --------------------------------------------------------------------------- syntax tree


@dataclass(frozen=True)
class Term:
    """A word or a phrase (several words, matched as consecutive words).

    ``exact``: match this form only (case and accents still ignored), no other word forms.
    ``prefix``: match any word that starts with ``text``.
    """

    text: str
    exact: bool = False
    prefix: bool = False
    offset: int = field(default=0, compare=False)


@dataclass(frozen=True)
class SetRef:
    """``@name``: any member of a named set."""

    name: str
    members: tuple[Term, ...]
    offset: int = field(default=0, compare=False)


@dataclass(frozen=True)
class FieldScope:
    """``title:x`` / ``text:x``: ``x`` must match inside that field."""

    name: str
    child: Node
    offset: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Near:
    """Both sides within ``distance`` words of each other, in either order, in one field."""

    left: Node
    right: Node
    distance: int
    offset: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Not:
    child: Node
    offset: int = field(default=0, compare=False)


@dataclass(frozen=True)
class And:
    children: tuple[Node, ...]
    offset: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Or:
    children: tuple[Node, ...]
    offset: int = field(default=0, compare=False)


Node = Term | SetRef | FieldScope | Near | Not | And | Or
