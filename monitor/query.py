"""The watchlist query language: syntax tree, parser, list builder and canonical rendering.

Pure Python, no third-party imports, no I/O. The matcher (`monitor.matching`) compiles the tree
produced here; this module knows nothing about stemming or articles.

Grammar (operators are upper case; lower-case ``and``/``or``/``not``/``near`` are ordinary words)::

    query    := or_expr
    or_expr  := and_expr ( "OR" and_expr )*
    and_expr := unary ( [ "AND" ] unary )*           # juxtaposition is an implicit AND
    unary    := "NOT" unary | near
    near     := primary ( "NEAR/" n primary )*       # left-associative, n >= 0
    primary  := "(" or_expr ")"
              | ( "title:" | "text:" ) primary        # field scope
              | "=" ( word | phrase )                 # exact form: no word forms
              | word "*"                              # prefix wildcard
              | word | phrase | "@" set_name

    word     := characters other than white space, ( ) and "
    phrase   := '"' anything but '"' '"'

Precedence, tightest first:

    =====  ==========================================  ===================================
    level  construct                                   example and how it groups
    =====  ==========================================  ===================================
    1      parentheses                                 ``(a OR b) c`` = ``(a OR b) AND c``
    2      field scope, ``=``, ``*``, ``@set``          ``title:a b`` = ``(title:a) AND b``
    3      ``NEAR/n``                                  ``a NEAR/3 b c`` = ``(a NEAR/3 b) AND c``
    4      ``NOT`` (unary, on the following term)      ``NOT a NEAR/3 b`` = ``NOT (a NEAR/3 b)``
    5      ``AND``, implicit AND                       ``a NOT b`` = ``a AND NOT b``
    6      ``OR``                                      ``a OR b c`` = ``a OR (b AND c)``
    =====  ==========================================  ===================================

Rules checked here, each reported with the character offset of the culprit:

* ``NEAR`` sides hold only words, phrases, ``@sets``, ``OR`` groups of those, field scopes and
  other ``NEAR``s (``AND``/``NOT`` inside a proximity side have no position to measure).
* A prefix needs at least two characters before ``*``; ``*`` elsewhere in a word is an error;
  ``=`` and ``*`` cannot be combined.
* ``@name`` must name a defined, non-empty set; set members are list items (see `from_lists`),
  and may not refer to other sets.
* The query must be *positive*: every way of satisfying it requires at least one term to be
  present (``NOT a`` alone, or ``a OR NOT b``, would match nearly every article).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from monitor.errors import ListTermError, QuerySyntaxError

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


# --------------------------------------------------------------------------- lexer

_OPERATORS = frozenset({"AND", "OR", "NOT"})
_NEAR = re.compile(r"NEAR/(\d+)$")
_FIELD_PREFIX = re.compile(r"([A-Za-z]+):")
_SET_NAME = re.compile(r"[^\W][\w-]*$")


@dataclass(frozen=True)
class _Token:
    kind: str  # "(" ")" "AND" "OR" "NOT" "NEAR" "FIELD" "TERM" "SET" "END"
    offset: int
    text: str = ""
    exact: bool = False
    prefix: bool = False
    distance: int = 0


def _tokenize(query: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    length = len(query)
    while position < length:
        char = query[position]
        if char.isspace():
            position += 1
            continue
        if char in "()":
            tokens.append(_Token(char, position))
            position += 1
            continue
        start = position
        exact = False
        if char == "=":
            exact = True
            position += 1
            if position >= length or query[position].isspace() or query[position] in "()":
                raise QuerySyntaxError("'=' must be followed directly by a word or a phrase", start)
            char = query[position]
        if char == '"':
            closing = query.find('"', position + 1)
            if closing < 0:
                raise QuerySyntaxError("unterminated phrase: this '\"' is never closed", position)
            text = query[position + 1 : closing]
            if not text.strip():
                raise QuerySyntaxError("empty phrase", position)
            position = closing + 1
            if position < length and query[position] == "*":
                raise QuerySyntaxError(
                    "a prefix wildcard applies to one word, not to a phrase", position
                )
            tokens.append(_Token("TERM", start, text=text.strip(), exact=exact))
            continue
        end = position
        while end < length and not query[end].isspace() and query[end] not in '()"':
            end += 1
        word = query[position:end]
        field_match = _FIELD_PREFIX.match(word)
        if not exact and field_match is not None:
            name = field_match.group(1)
            if name.lower() in FIELDS:
                tokens.append(_Token("FIELD", start, text=name.lower()))
                position += len(field_match.group(0))
                continue
            raise QuerySyntaxError(
                f"unknown field '{name}:': the fields are title: and text:", start
            )
        position = end
        if not exact and word in _OPERATORS:
            tokens.append(_Token(word, start))
            continue
        near = _NEAR.match(word)
        if not exact and near is not None:
            tokens.append(_Token("NEAR", start, distance=int(near.group(1))))
            continue
        if not exact and (word == "NEAR" or word.startswith("NEAR/")):
            raise QuerySyntaxError("NEAR needs a distance in words, e.g. NEAR/10", start)
        if not exact and word.startswith("@"):
            name = word[1:]
            if not _SET_NAME.match(name):
                raise QuerySyntaxError("'@' must be followed by a set name, e.g. @russie", start)
            tokens.append(_Token("SET", start, text=name))
            continue
        tokens.append(_word_token(word, start, position - len(word), exact))
    tokens.append(_Token("END", length))
    return tokens


def _word_token(word: str, start: int, word_offset: int, exact: bool) -> _Token:
    star = word.find("*")
    if star < 0:
        return _Token("TERM", start, text=word, exact=exact)
    if star != len(word) - 1:
        raise QuerySyntaxError(
            "the wildcard '*' is only allowed at the end of a word", word_offset + star
        )
    if exact:
        raise QuerySyntaxError("'=' (exact form) and '*' (prefix) cannot be combined", start)
    stem = word[:-1]
    if len(stem) < MIN_PREFIX_LENGTH:
        raise QuerySyntaxError(
            f"a prefix needs at least {MIN_PREFIX_LENGTH} characters before '*'", start
        )
    return _Token("TERM", start, text=stem, prefix=True)


# --------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, query: str, sets: Mapping[str, Sequence[str]]) -> None:
        self.query = query
        self.sets = sets
        self.tokens = _tokenize(query)
        self.index = 0
        self.depth = 0

    def deeper(self, token: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise QuerySyntaxError(
                f"the query nests more than {MAX_NESTING} levels of parentheses, NOT and "
                "title:/text: here: write it flatter (a AND b AND c needs no parentheses)",
                token.offset,
            )

    @property
    def current(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def parse(self) -> Node:
        if self.current.kind == "END":
            raise QuerySyntaxError("empty query: write at least one word", 0)
        node = self.or_expr()
        token = self.current
        if token.kind == ")":
            raise QuerySyntaxError(
                "unbalanced parenthesis: this ')' has no matching '('", token.offset
            )
        # Nothing else can stop or_expr: every other token starts or joins a term.
        assert token.kind == "END", token
        return node

    def or_expr(self) -> Node:
        start = self.current.offset
        children = [self.and_expr()]
        while self.current.kind == "OR":
            operator = self.advance()
            self.expect_operand(operator, "OR")
            children.append(self.and_expr())
        return _flatten(Or, children, start)

    def and_expr(self) -> Node:
        start = self.current.offset
        children = [self.unary()]
        while self.current.kind in ("AND", "NOT", "TERM", "SET", "FIELD", "("):
            if self.current.kind == "AND":
                operator = self.advance()
                self.expect_operand(operator, "AND")
            children.append(self.unary())
        return _flatten(And, children, start)

    def unary(self) -> Node:
        token = self.current
        if token.kind == "NOT":
            self.advance()
            self.expect_operand(token, "NOT")
            self.deeper(token)
            node = Not(self.unary(), offset=token.offset)
            self.depth -= 1
            return node
        return self.near()

    def near(self) -> Node:
        node = self.primary()
        while self.current.kind == "NEAR":
            operator = self.advance()
            self.expect_operand(operator, f"NEAR/{operator.distance}")
            if operator.distance > MAX_NEAR_DISTANCE:
                raise QuerySyntaxError(
                    f"NEAR/{operator.distance} is wider than NEAR/{MAX_NEAR_DISTANCE}: "
                    "for words anywhere in the article, use AND",
                    operator.offset,
                )
            right = self.primary()
            _check_near_side(node)
            _check_near_side(right)
            node = Near(node, right, operator.distance, offset=node.offset)
            if _nears_in(node) > MAX_NEARS_IN_ONE_EXPRESSION:
                raise QuerySyntaxError(
                    f"more than {MAX_NEARS_IN_ONE_EXPRESSION} NEARs in one expression: "
                    "matching it could take minutes on a long article; split it with AND",
                    operator.offset,
                )
        return node

    def primary(self) -> Node:
        token = self.current
        if token.kind == "(":
            self.advance()
            if self.current.kind == ")":
                raise QuerySyntaxError("empty parentheses", token.offset)
            self.deeper(token)
            node = self.or_expr()
            self.depth -= 1
            if self.current.kind != ")":
                raise QuerySyntaxError(
                    f"unbalanced parenthesis: '(' at column {token.offset + 1} is never closed",
                    token.offset,
                )
            self.advance()
            return node
        if token.kind == "FIELD":
            self.advance()
            if self.current.kind not in ("(", "TERM", "SET", "FIELD"):
                raise QuerySyntaxError(
                    f"'{token.text}:' must be followed directly by a word, a phrase, "
                    "an @set or a parenthesised group",
                    token.offset,
                )
            self.deeper(token)
            scoped = FieldScope(token.text, self.primary(), offset=token.offset)
            self.depth -= 1
            return scoped
        if token.kind == "TERM":
            self.advance()
            return Term(token.text, exact=token.exact, prefix=token.prefix, offset=token.offset)
        if token.kind == "SET":
            self.advance()
            return _resolve_set(token.text, self.sets, token.offset)
        raise QuerySyntaxError(self.missing_term_message(token), token.offset)

    def expect_operand(self, operator: _Token, name: str) -> None:
        if self.current.kind in ("END", ")", "AND", "OR", "NEAR"):
            raise QuerySyntaxError(
                f"{name} at column {operator.offset + 1} needs a term on its right, "
                f"found {self.describe(self.current)}",
                self.current.offset,
            )

    def missing_term_message(self, token: _Token) -> str:
        if token.kind == ")":
            return "unbalanced parenthesis: this ')' has no matching '('"
        if token.kind in ("AND", "OR") or token.kind == "NEAR":
            return f"{self.describe(token)} needs a term on its left"
        return f"expected a word, a phrase or '(', found {self.describe(token)}"

    @staticmethod
    def describe(token: _Token) -> str:
        if token.kind == "END":
            return "the end of the query"
        if token.kind == "NEAR":
            return f"NEAR/{token.distance}"
        if token.kind in ("(", ")"):
            return f"'{token.kind}'"
        return token.kind


def _flatten(kind: type[And] | type[Or], children: list[Node], offset: int) -> Node:
    if len(children) == 1:
        return children[0]
    flat: list[Node] = []
    for child in children:
        if isinstance(child, kind):
            flat.extend(child.children)
        else:
            flat.append(child)
    return kind(tuple(flat), offset=offset)


def _nears_in(node: Node) -> int:
    """How many NEAR operators the expression holds (its sides are words, phrases, ORs
    and NEARs)."""
    if isinstance(node, Near):
        return 1 + _nears_in(node.left) + _nears_in(node.right)
    if isinstance(node, Or | And):
        return sum(_nears_in(child) for child in node.children)
    if isinstance(node, FieldScope | Not):
        return _nears_in(node.child)
    return 0


def _check_near_side(node: Node) -> None:
    if isinstance(node, Term | SetRef):
        return
    if isinstance(node, FieldScope):
        _check_near_side(node.child)
        return
    if isinstance(node, Near):
        return  # its sides were checked when it was built
    if isinstance(node, Or):
        for child in node.children:
            _check_near_side(child)
        return
    operator = "AND" if isinstance(node, And) else "NOT"
    raise QuerySyntaxError(
        f"a NEAR side may hold words, phrases, @sets and OR groups, not {operator}",
        node.offset,
    )


def _resolve_set(name: str, sets: Mapping[str, Sequence[str]], offset: int) -> SetRef:
    if name not in sets:
        known = ", ".join(f"@{known}" for known in sorted(sets)) or "none defined"
        raise QuerySyntaxError(f"unknown set @{name} (known sets: {known})", offset)
    items = sets[name]
    if isinstance(items, str) or len(items) == 0:
        raise QuerySyntaxError(f"set @{name} is empty: give it at least one term", offset)
    members: list[Term] = []
    for index, item in enumerate(items):
        try:
            members.append(_list_item(item, offset=offset))
        except ValueError as error:
            raise QuerySyntaxError(f"set @{name}, item {index + 1}: {error}", offset) from None
    return SetRef(name, tuple(members), offset=offset)


def _is_positive(node: Node) -> bool:
    """True when every way of satisfying ``node`` needs at least one term to be present."""
    if isinstance(node, Not):
        return False
    if isinstance(node, And):
        return any(_is_positive(child) for child in node.children)
    if isinstance(node, Or):
        return all(_is_positive(child) for child in node.children)
    if isinstance(node, FieldScope):
        return _is_positive(node.child)
    return True


def _negative_offset(node: Node) -> int:
    """Offset of the part of a non-positive node that lets it match without any term."""
    if isinstance(node, Or):
        for child in node.children:
            if not _is_positive(child):
                return _negative_offset(child)
    if isinstance(node, And):
        return node.children[0].offset
    if isinstance(node, FieldScope):
        return _negative_offset(node.child)
    return node.offset


def parse_query(text: str, sets: Mapping[str, Sequence[str]]) -> Node:
    """Parse ``text``; raise `QuerySyntaxError` with the offset of the problem."""
    node = _Parser(text, sets).parse()
    if not _is_positive(node):
        raise QuerySyntaxError(
            "this query can match an article that contains none of its terms "
            "(a NOT alone, or an OR branch that is only a NOT): add a term it must contain",
            _negative_offset(node),
        )
    return node


# --------------------------------------------------------------------------- list form


def _list_item(item: object, offset: int = 0) -> Term:
    """One literal term of a list or a set (an ``@set`` is resolved by `_list_node`)."""
    if not isinstance(item, str):
        raise ValueError(f"expected a text term, got {type(item).__name__} {item!r}")
    text = item.strip()
    if not text:
        raise ValueError("empty term")
    exact = text.startswith("=")
    if exact:
        text = text[1:].strip()
    if text.startswith('"') and text.endswith('"') and len(text) >= 2:
        text = text[1:-1].strip()
    if not text:
        raise ValueError("'=' must be followed by a word or a phrase" if exact else "empty term")
    if '"' in text:
        raise ValueError(
            "a list item is one term taken literally: remove the '\"' "
            "(an item of several words is already a phrase)"
        )
    if text.startswith("@") and not exact:
        raise ValueError(f"a set member cannot refer to another set ({text})")
    prefix = text.endswith("*")
    if prefix:
        if exact:
            raise ValueError("'=' (exact form) and '*' (prefix) cannot be combined")
        text = text[:-1]
        if any(char.isspace() for char in text):
            raise ValueError("a prefix wildcard applies to one word, not to a phrase")
        if len(text) < MIN_PREFIX_LENGTH:
            raise ValueError(f"a prefix needs at least {MIN_PREFIX_LENGTH} characters before '*'")
    if "*" in text:
        raise ValueError("the wildcard '*' is only allowed at the end of a word")
    return Term(" ".join(text.split()), exact=exact, prefix=prefix, offset=offset)


def _list_node(
    list_name: str, index: int, item: object, sets: Mapping[str, Sequence[str]]
) -> Term | SetRef:
    if isinstance(item, str) and item.strip().startswith("@"):
        try:
            return _resolve_set(item.strip()[1:], sets, 0)
        except QuerySyntaxError as error:
            raise ListTermError(list_name, index, error.message) from None
    try:
        return _list_item(item)
    except ValueError as error:
        raise ListTermError(list_name, index, str(error)) from None


def from_lists(
    all_terms: Sequence[str],
    any_terms: Sequence[str],
    none_terms: Sequence[str],
    sets: Mapping[str, Sequence[str]],
) -> Node:
    """Build the query for ``all: [...] any: [...] none: [...]``.

    Each item is one term, taken literally (no operators): a word, a multi-word phrase,
    ``=exact``, ``prefix*`` or ``@set``. The result is
    ``all₁ AND all₂ ... AND (any₁ OR any₂ ...) NOT none₁ NOT none₂ ...``.
    """
    if not all_terms and not any_terms:
        raise ListTermError("all", 0, "a watchlist needs at least one term in all or any")
    required = [_list_node("all", i, item, sets) for i, item in enumerate(all_terms)]
    alternatives = [_list_node("any", i, item, sets) for i, item in enumerate(any_terms)]
    excluded = [_list_node("none", i, item, sets) for i, item in enumerate(none_terms)]
    children: list[Node] = list(required)
    if len(alternatives) == 1:
        children.append(alternatives[0])
    elif alternatives:
        children.append(Or(tuple(alternatives)))
    children.extend(Not(node) for node in excluded)
    return children[0] if len(children) == 1 else And(tuple(children))


# --------------------------------------------------------------------------- rendering

_BARE_WORD = re.compile(r'[^\s()"*=@]+$')


def render_term(term: Term) -> str:
    """``Togo``, ``"coopération militaire"``, ``=Togo``, ``terror*``."""
    text = term.text
    bare = (
        _BARE_WORD.match(text) is not None
        and text not in _OPERATORS
        and text != "NEAR"
        and not text.startswith("NEAR/")
        and _FIELD_PREFIX.match(text) is None
    )
    body = text if bare or term.prefix else f'"{text}"'
    return ("=" if term.exact else "") + body + ("*" if term.prefix else "")


def render(node: Node) -> str:
    """Canonical query text; ``parse_query(render(n), sets) == n`` for parsed trees."""
    if isinstance(node, Term):
        return render_term(node)
    if isinstance(node, SetRef):
        return f"@{node.name}"
    if isinstance(node, FieldScope):
        inner = render(node.child)
        if not isinstance(node.child, Term | SetRef | FieldScope):
            inner = f"({inner})"
        return f"{node.name}:{inner}"
    if isinstance(node, Near):
        left = render(node.left)
        right = render(node.right)
        if isinstance(node.left, Or):
            left = f"({left})"
        if isinstance(node.right, Or | Near):
            right = f"({right})"
        return f"{left} NEAR/{node.distance} {right}"
    if isinstance(node, Not):
        inner = render(node.child)
        if isinstance(node.child, And | Or):
            inner = f"({inner})"
        return f"NOT {inner}"
    if isinstance(node, And):
        parts: list[str] = []
        for position, child in enumerate(node.children):
            text = render(child)
            if isinstance(child, Or | And):
                text = f"({text})"
            if position > 0:
                parts.append(" " if isinstance(child, Not) else " AND ")
            parts.append(text)
        return "".join(parts)
    rendered = [
        f"({render(child)})" if isinstance(child, Or) else render(child) for child in node.children
    ]
    return " OR ".join(rendered)


def term_label(term: Term) -> str:
    """A term as the user wrote it, without quotes: ``coopération militaire``, ``=Togo``, ``terror*``."""
    return ("=" if term.exact else "") + term.text + ("*" if term.prefix else "")


def leaves(node: Node) -> list[Term]:
    """Every term of the query in query order, set members included."""
    if isinstance(node, Term):
        return [node]
    if isinstance(node, SetRef):
        return list(node.members)
    if isinstance(node, FieldScope | Not):
        return leaves(node.child)
    if isinstance(node, Near):
        return leaves(node.left) + leaves(node.right)
    found: list[Term] = []
    for child in node.children:
        found.extend(leaves(child))
    return found
