"""`monitor search`: a watchlist query run over the stored articles, found through the
SQLite FTS5 index, confirmed and explained by the `Matcher`.

The index only narrows the articles to read; the matcher decides. So the FTS5 expression
derived from a query must find *at least* every article the matcher would match
(`fts_expression`), never fewer:

* a word becomes a prefix query on its first few folded letters (``militaires`` →
  ``"mili"*``): at most `PREFIX_CHARS`, which also finds a word written as a hyphenated
  compound (``anti-terroriste`` for ``antiterroriste``); for a word matched by its stem, one
  less than its shortest French or English stem, because word forms sharing a stem there
  share the stem minus its last letter (``maux``/``mal``), the English ``die``/``dying``
  aside (such words are not searched by prefix). Articles stemmed in another language,
  or of undeclared language, are read whole when the query has stemmed words
  (`Candidates.other_languages`);
* a phrase: its words near each other (FTS5 ``NEAR``, with slack for the tokens FTS5 counts
  and the matcher does not); a ``NEAR`` or an ``AND``: every required side (AND); a
  hyphenated term: any of its spellings (OR); an ``OR``, a ``@set``: every alternative (OR);
* ``NOT`` and field scopes are left to the matcher (dropping a condition only widens);
* ``œ``/``æ`` are searched both ways (FTS5 keeps the ligature, the matcher expands it).

Known gap: FTS5 does not apply Unicode compatibility folding (NFKC), which the matcher
does, so a word written with a ligature such as ``ﬁ`` or in full-width letters is found
only by a full read.

What cannot be translated safely (a word whose first letters are not plain Latin letters
or digits once accents are folded, a word of one letter) makes its branch unusable: an
``AND`` drops it, an ``OR`` becomes unusable, and a query with nothing left is answered by
reading every article of the window (`fts_expression` returns None).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from monitor.matching import Matcher, is_proper_name, stem_forms, term_variants
from monitor.models import SearchResult, StoredArticle, Watchlist
from monitor.query import And, FieldScope, Near, Node, Not, SetRef, Term, leaves

# Word forms sharing a stem in these languages' Snowball stemmers share their first letters
# up to the stem's last one (measured on the 49,000 word forms of the corpus). Other
# stemmers also change the start of words (Indonesian prefixes, Irish mutations, Serbian
# transliteration), so articles stemmed in another language (or whose language is not
# declared) are read whole when a query has stemmed words.
STEMMING_CHECKED = ("fr", "en")
PREFIX_CHARS = 4
PHRASE_SLACK = 3  # FTS5 tokens allowed between a phrase's words, per word
MIN_PREFIX_CHARS = 2
SEARCH_WATCHLIST = "search"

_SAFE_PREFIX = re.compile(r"[a-z0-9]+")
_LIGATURES = (("oe", "œ"), ("ae", "æ"))


@dataclass(frozen=True)
class Candidates:
    """How to find the articles a query may match: the FTS5 expression (None: read every
    article of the window), and whether articles not stemmed in French or English must be
    read as well (the query has stemmed words, see `STEMMING_CHECKED`)."""

    expression: str | None
    other_languages: bool


def candidates_for(query: Node) -> Candidates:
    """The `Candidates` that find every article `query` can match."""
    return Candidates(_translate(query), any(_is_stemmed(term) for term in leaves(query)))


def fts_expression(query: Node) -> str | None:
    """An FTS5 MATCH expression that finds every article `query` can match among those
    stemmed in French or English, or None when none can be derived safely."""
    return _translate(query)


def _is_stemmed(term: Term) -> bool:
    """Whether the matcher compares the term's words by stem (as `plan._term_steps` does)."""
    return not term.prefix and not term.exact and not is_proper_name(term.text)


def _translate(node: Node) -> str | None:
    if isinstance(node, Term):
        return _term(node)
    if isinstance(node, SetRef):
        return _any([_term(member) for member in node.members])
    if isinstance(node, FieldScope):
        return _translate(node.child)
    if isinstance(node, Not):
        return None  # the matcher checks the absence
    if isinstance(node, Near):
        return _all([_translate(node.left), _translate(node.right)])
    if isinstance(node, And):
        return _all([_translate(child) for child in node.children])
    return _any([_translate(child) for child in node.children])


def _all(parts: list[str | None]) -> str | None:
    """AND of the usable parts: leaving one out only widens the search."""
    usable = list(dict.fromkeys(part for part in parts if part is not None))
    if not usable:
        return None
    return usable[0] if len(usable) == 1 else "(" + " AND ".join(usable) + ")"


def _any(parts: list[str | None]) -> str | None:
    """OR of every part; unusable if any part is (an alternative would go unsearched)."""
    if not parts or any(part is None for part in parts):
        return None
    unique = list(dict.fromkeys(part for part in parts if part is not None))
    return unique[0] if len(unique) == 1 else "(" + " OR ".join(unique) + ")"


def _term(term: Term) -> str | None:
    """Any of the term's spellings (a hyphenated compound has two), each needing its words."""
    spellings = term_variants(term.text)
    if not spellings:
        return None
    stemmed = _is_stemmed(term)
    return _any([_phrase(forms, stemmed=stemmed, prefix=term.prefix) for forms in spellings])


def _phrase(forms: tuple[str, ...], *, stemmed: bool, prefix: bool) -> str | None:
    """One spelling of a term: its words close together (FTS5 ``NEAR``), or each anywhere
    when one of them needs an OR (a ligature)."""
    words = [
        _word(form, stemmed=stemmed, last=prefix and index == len(forms) - 1)
        for index, form in enumerate(forms)
    ]
    usable = [word for word in words if word is not None]
    if len(usable) < 2 or any(word.startswith("(") for word in usable):
        return _all(words)
    # The matcher wants the words at consecutive positions; FTS5 may count a few more tokens
    # between them (it splits "aujourd'hui" and keeps a possessive "s"), hence the slack.
    return f"NEAR({' '.join(usable)}, {PHRASE_SLACK * len(forms)})"


def _word(form: str, *, stemmed: bool, last: bool) -> str | None:
    """A prefix query on the first letters of one folded word; None when too short to use
    or not plain letters (the AND holding it then does without it)."""
    length = min(PREFIX_CHARS, len(form))
    if stemmed:
        length = min(length, _shortest_stem(form) - 1)
    elif not last and len(form) < MIN_PREFIX_CHARS:
        return None
    if length < MIN_PREFIX_CHARS:
        return None
    start = form[:length]
    if _SAFE_PREFIX.fullmatch(start) is None:
        return None
    spellings = [start]
    for plain, ligature in _LIGATURES:
        if plain in start:
            spellings.append(start.replace(plain, ligature))
    queries = [f'"{spelling}"*' for spelling in spellings]
    return queries[0] if len(queries) == 1 else "(" + " OR ".join(queries) + ")"


def _shortest_stem(form: str) -> int:
    """The length of the shortest stem `form` has in the languages checked; 1 for the English
    words whose other forms do not start with their stem (die: dying, lie: lying)."""
    stems = [stem_forms([form], language)[0] for language in STEMMING_CHECKED]
    if any(len(stem) <= 3 and stem.endswith("ie") for stem in stems) or (
        form.endswith("ying") and len(form) <= 5
    ):
        return 1
    return min([len(form), *map(len, stems)])


def search_articles(
    query: Node, candidates: Iterable[StoredArticle], *, language: str | None = None
) -> list[SearchResult]:
    """The candidates `query` matches, each with its hit (clauses, words, snippets, relevance),
    most relevant first, then newest. Feed scopes do not apply: the whole store is searched."""
    matcher = Matcher([Watchlist(name=SEARCH_WATCHLIST, query=query, language=language)])
    results: list[SearchResult] = []
    for stored in candidates:
        for hit in matcher.match(stored.article):
            results.append(SearchResult(stored=stored, hit=hit))
    results.sort(key=lambda result: (-result.hit.relevance, -_when(result).timestamp()))
    return results


def _when(result: SearchResult) -> datetime:
    return result.stored.article.published or result.stored.first_seen
