"""The list form of a watchlist (`all`/`any`/`none`) and `@set` members, as syntax trees."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from monitor.errors import ListTermError, QuerySyntaxError
from monitor.query.tree import MIN_PREFIX_LENGTH, And, Node, Not, Or, SetRef, Term

# --------------------------------------------------------------------------- list form


# Words separated by single spaces, none holding a character the checks below look at: what
# nearly every item of a generated list is (100,000 watchlists hold some 200,000 of them).
_PLAIN_ITEM = re.compile(r'[^\s="@*]+(?: [^\s="@*]+)*')


def _list_item(item: object, offset: int = 0) -> Term:
    """One literal term of a list or a set (an ``@set`` is resolved by `_list_node`)."""
    if isinstance(item, str) and _PLAIN_ITEM.fullmatch(item) is not None:
        return Term(item, offset=offset)  # the term `_list_item_in_full` gives it
    return _list_item_in_full(item, offset)


def _list_item_in_full(item: object, offset: int = 0) -> Term:
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
