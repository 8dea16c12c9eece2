"""Syntax tree → canonical query text, term labels and leaves."""

from __future__ import annotations

import re

from monitor.query.parser import _FIELD_PREFIX, _OPERATORS
from monitor.query.tree import (
    And,
    FieldScope,
    Near,
    Node,
    Not,
    Or,
    SetRef,
    Term,
)

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
