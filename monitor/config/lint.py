"""Warnings about watchlists that are valid but almost surely not what was meant.

`monitor check` prints them (``--strict`` makes them errors) and `monitor run` logs them
at start. Each is placed at the character it concerns, as errors are:

* ``NEAR5`` or ``near/5``: a word to look for, not the operator ``NEAR/5``;
* ``and``/``or``/``not`` in lower case between two terms: a word to look for, not an
  operator (operators are upper case);
* quotes that make no phrase: typographic quotes (``“…”``, ``«…»``), which the query
  language does not read as quotes (the words are then looked for one by one), and say so
  when they are unbalanced; a word starting or ending with a single quote
  (``'coopération militaire'``);
* a term that can never match (no letter or digit in it), a stopword alone (``le``,
  ``the``: in nearly every article), a prefix of one letter (``l'*``).

Pure: the file's text in, messages out; it is only run on a file that loads.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from monitor.config import loading
from monitor.config.loading import (
    decode_config_bytes,
    read_config_bytes,
    without_garbage_collection,
)
from monitor.config.positions import _position_in_scalar
from monitor.config.schema import _sets_for_checking
from monitor.config.yaml_tree import Position, Tree, _Positions, _Problems, _read_yaml
from monitor.errors import ListTermError, QuerySyntaxError
from monitor.matching import ELISIONS, fold, term_variants
from monitor.matching.tokens import STOPWORDS
from monitor.query import MIN_PREFIX_LENGTH, Node, Term, from_lists, parse_query
from monitor.query.tree import And, FieldScope, Near, Not, Or

_TOKEN = re.compile(r'"[^"]*"?|[()]|[^\s()"]+')
_NEAR_TYPO = re.compile(r"near/?(\d+)", re.IGNORECASE)
_NEAR_OPERATOR = re.compile(r"NEAR/\d+")
_OPERATOR_WORDS = {"and", "or", "not"}
_OPERATORS = {"AND", "OR", "NOT"}
_QUOTES = "“”«»„‹›"
_SINGLE_QUOTES = "'’‘"


def lint_config(path: Path) -> list[str]:
    """Warnings for the watchlists and sets of the feeds.yaml at `path`, as
    ``path:LINE:COL: warning: message``, in file order (empty when it cannot be read)."""
    try:
        text = decode_config_bytes(read_config_bytes(path), path=path)
    except Exception:  # an unreadable file is `load_config`'s to report
        return []
    with without_garbage_collection():
        document = _read_yaml(text, _Problems(path))
        if document is None:
            return []
        tree, positions = document
        if not isinstance(tree, dict):
            return []
        found = sorted(set(_warnings(tree, positions)))
    return [
        f"{path}:{line + 1}:{column + 1}: warning: {message}" for (line, column), message in found
    ]


def _warnings(tree: dict[str, Tree], positions: _Positions) -> Iterator[tuple[Position, str]]:
    sets = _sets_for_checking(tree.get("sets"))
    raw_sets = tree.get("sets")
    if isinstance(raw_sets, dict):
        for name, members in raw_sets.items():
            for index, member in enumerate(members if isinstance(members, list) else []):
                for message in _list_item_warnings(member, sets):
                    yield positions.of_value(("sets", name, index)), message
    global _known_findings
    watchlists = tree.get("watchlists")
    known = _known_findings
    sets_key = repr(raw_sets)
    before = known[1] if known is not None and known[0] == sets_key else {}
    # The queries the load just parsed, with these sets: not parsed a second time.
    loaded = loading._known_watchlists
    parsed = loaded.models if loaded is not None and loaded.sets == sets_key else {}
    found: dict[str, list[_Finding]] = {}
    keys = loading.take_watchlist_keys(watchlists)  # the load's tree: written already
    for number, watchlist in enumerate(watchlists if isinstance(watchlists, list) else []):
        if not isinstance(watchlist, dict):
            continue
        key = keys[number] if keys is not None else repr(watchlist)
        findings = before.get(key)
        if findings is None:
            model = parsed.get(key) if "query" in watchlist else None
            query = model.compiled if model is not None else None
            findings = list(_watchlist_findings(watchlist, sets, query))
        found[key] = findings
        for place, offset, message in findings:
            loc = ("watchlists", number, *place)
            if offset is None:
                yield positions.of_value(loc), message
            else:
                yield _position_in_scalar(loc, offset, positions), message
    _known_findings = (sets_key, found)


# Where in a watchlist (its keys below it), the offset in a query (None: the whole value),
# and the warning.
_Finding = tuple[tuple[str | int, ...], int | None, str]

# The last lint's findings by watchlist definition (its tree's repr), with the `sets:` they
# were found with: a reload lints only the watchlists that changed.
_known_findings: tuple[str, dict[str, list[_Finding]]] | None = None


def _watchlist_findings(
    watchlist: dict[str, Tree], sets: Mapping[str, Sequence[str]], parsed: Node | None
) -> Iterator[_Finding]:
    query = watchlist.get("query")
    if isinstance(query, str):
        for offset, message in lint_query(query, sets, parsed):
            yield ("query",), offset, message
    for key in ("all", "any", "none"):
        items = watchlist.get(key)
        for index, item in enumerate(items if isinstance(items, list) else []):
            for message in _list_item_warnings(item, sets):
                yield (key, index), None, message


def lint_query(
    query: str, sets: Mapping[str, Sequence[str]], parsed: Node | None = None
) -> list[tuple[int, str]]:
    """(character offset, warning) for a query text, in order. `parsed`: the query's tree
    with these `sets`, when the load has it (it is not parsed again)."""
    found = list(_token_warnings(query))
    try:
        tree = parsed if parsed is not None else parse_query(query, sets)
    except QuerySyntaxError:
        return sorted(found)  # an error, reported by the loader
    flagged = {offset for offset, _ in found}  # "and" as an operator says more than as a stopword
    found.extend(
        (term.offset, message)
        for term in _terms(tree)
        if term.offset not in flagged
        for message in _term_warnings(term)
    )
    return sorted(set(found))


def _token_warnings(query: str) -> Iterator[tuple[int, str]]:
    opening = [offset for offset, character in enumerate(query) if character in "“«„‹"]
    closing = [offset for offset, character in enumerate(query) if character in "”»›"]
    if len(opening) != len(closing):
        yield (
            (opening or closing)[0],
            (
                f"unbalanced quotes: {len(opening)} opening and {len(closing)} closing "
                "typographic quotes in this query"
            ),
        )
    tokens = [(match.start(), match.group()) for match in _TOKEN.finditer(query)]
    for index, (offset, word) in enumerate(tokens):
        if word.startswith('"') or word in "()":
            continue
        near = _NEAR_TYPO.fullmatch(word)
        if near is not None and _NEAR_OPERATOR.fullmatch(word) is None:
            yield (
                offset,
                (
                    f'"{word}" is a word to look for, not an operator: write NEAR/{near.group(1)} '
                    f"for words at most {near.group(1)} words apart"
                ),
            )
            continue
        if word.lower() in _OPERATOR_WORDS and word not in _OPERATORS:
            before = tokens[index - 1][1] if index > 0 else None
            after = tokens[index + 1][1] if index + 1 < len(tokens) else None
            if _is_term(before, closing=True) and _is_term(after, closing=False):
                yield (
                    offset,
                    (
                        f'"{word}" between two terms is a word to look for, not an operator: '
                        f"write {word.upper()} (operators are upper case), or quote the phrase "
                        f"to look for it"
                    ),
                )
        yield from _quote_warnings(offset, word)


def _is_term(token: str | None, *, closing: bool) -> bool:
    if token is None or token in _OPERATORS or _NEAR_OPERATOR.fullmatch(token):
        return False
    return token != ("(" if closing else ")")


def _quote_warnings(offset: int, word: str) -> Iterator[tuple[int, str]]:
    typographic = [position for position, character in enumerate(word) if character in _QUOTES]
    if typographic:
        position = typographic[0]
        yield (
            offset + position,
            (
                f"{word[position]} does not make a phrase: the words are looked for one by one, "
                'anywhere; write a phrase between straight double quotes, "like this"'
            ),
        )
        return
    if len(word) > 1 and (word[0] in _SINGLE_QUOTES or word[-1] in _SINGLE_QUOTES):
        at = 0 if word[0] in _SINGLE_QUOTES else len(word) - 1
        ending = fold(word[:-1])
        if at == len(word) - 1 and (ending in ELISIONS or (len(ending) > 2 and ending[-1] == "s")):
            return  # an elision written apart (l' armée), an English possessive (students')
        yield (
            offset + at,
            (
                f"the single quote in {word!r} makes no phrase: write a phrase between straight "
                'double quotes, "like this"'
            ),
        )


def _terms(node: Node) -> Iterator[Term]:
    """The query's own terms (set members are checked where the set is defined)."""
    if isinstance(node, Term):
        yield node
    elif isinstance(node, FieldScope | Not):
        yield from _terms(node.child)
    elif isinstance(node, Near):
        yield from _terms(node.left)
        yield from _terms(node.right)
    elif isinstance(node, And | Or):
        for child in node.children:
            yield from _terms(child)


def _term_warnings(term: Term) -> Iterator[str]:
    spellings = term_variants(term.text)
    if not spellings:
        yield f'"{term.text}" can never match: it holds no letter or digit'
        return
    words = spellings[0]
    if term.prefix and len(words[-1]) < MIN_PREFIX_LENGTH:
        yield (
            f'"{term.text}*" is a prefix of one letter once elisions and punctuation are '
            "set aside: it matches nearly every article; give at least two letters"
        )
    elif len(words) == 1 and not term.prefix and words[0] in STOPWORDS:
        yield (
            f'"{term.text}" alone is a stopword: it is in nearly every article; make it part '
            'of a phrase ("...") or remove it'
        )


# Words of Latin letters and digits separated by single spaces: no quote, no prefix `*`,
# no `=` or `@`, at least one word; such an item can only warn as a lone stopword.
_PLAIN_WORDS = re.compile(r"[0-9A-Za-zÀ-ÖØ-öø-ÿ]+(?: [0-9A-Za-zÀ-ÖØ-öø-ÿ]+)*")


# Two or more such words, each of which may end with a full stop (initials: "J. Dupont"):
# each gives at least one word, so the item is a phrase and cannot warn at all.
_PLAIN_PHRASE = re.compile(r"[0-9A-Za-zÀ-ÖØ-öø-ÿ]+\.?(?: [0-9A-Za-zÀ-ÖØ-öø-ÿ]+\.?)+")
# Folding never shortens a word of those letters (ß and æ even grow): a longer one is no
# stopword, and is not folded (100,000 surnames went through `fold`'s cache, in vain).
_LONGEST_STOPWORD = max(map(len, STOPWORDS))


def _list_item_warnings(item: Tree, sets: Mapping[str, Sequence[str]]) -> list[str]:
    if isinstance(item, str) and (
        _PLAIN_PHRASE.fullmatch(item) is not None
        or (
            _PLAIN_WORDS.fullmatch(item) is not None
            and (" " in item or len(item) > _LONGEST_STOPWORD or fold(item) not in STOPWORDS)
        )
    ):
        return []  # what `_list_item_warnings_in_full` finds, without tokenising 100,000 names
    return _list_item_warnings_in_full(item, sets)


def _list_item_warnings_in_full(item: Tree, sets: Mapping[str, Sequence[str]]) -> list[str]:
    if not isinstance(item, str) or item.strip().startswith("@"):
        return []
    messages = [message for _, message in _quote_warnings(0, item.strip())]
    try:
        node = from_lists([item], (), (), sets)
    except ListTermError:
        return messages  # an error, reported by the loader
    if isinstance(node, Term):
        messages.extend(_term_warnings(node))
    return messages
