"""Query text → syntax tree: the lexer, the recursive-descent parser and the rules it checks
(see the package docstring for the grammar)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from monitor.errors import QuerySyntaxError
from monitor.query.lists import _resolve_set
from monitor.query.tree import (
    FIELDS,
    MAX_NEAR_DISTANCE,
    MAX_NEARS_IN_ONE_EXPRESSION,
    MAX_NESTING,
    MIN_PREFIX_LENGTH,
    And,
    FieldScope,
    Near,
    Node,
    Not,
    Or,
    SetRef,
    Term,
)

# --------------------------------------------------------------------------- lexer

_OPERATORS = frozenset({"AND", "OR", "NOT"})
_NEAR = re.compile(r"NEAR/(\d+)$")
_FIELD_PREFIX = re.compile(r"([A-Za-z]+):")
_SET_NAME = re.compile(r"[^\W][\w-]*$")
# A word runs to the next space, parenthesis or quote (\s is what str.isspace calls a space).
_WORD = re.compile(r'[^\s()"]*')


@dataclass(slots=True)  # not frozen: built for every word of 100,000 queries
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
        word_match = _WORD.match(query, position)
        end = word_match.end() if word_match is not None else position
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
