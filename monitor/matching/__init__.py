"""Watchlist matching: articles analysed once, matched against every watchlist through an index.

How matching works is told in `monitor.matching.matcher`. The modules, each depending only
on those above it (no cycles; ``monitor.text``, ``monitor.query`` and ``monitor.models`` are
below them all):

    tokens        normalise, tokenise, stem, detect the language (terms and articles)
    analysis      an article's analysed fields: token indexes, sentences      <- tokens
    plan          queries compiled to plans; key groups and their costs       <- tokens
    views         an analysed article seen through one stemming language      <- analysis, plan
    occurrences   where a plan matches: phrases, NEAR pairs, spans            <- plan, views
    verify        plans compiled to checkers (the per-candidate hot path)     <- occurrences
    presearch     compiled watchlists, key index, partitions per language     <- verify
    hits          HitResult: clauses, words, snippets                         <- presearch
    matcher       the Matcher                                                 <- hits
    explain       why a watchlist matches an article or not                   <- matcher

Names with a leading underscore are the package's own: other modules of the package import
them, nothing outside it should (tests aside).
"""

from __future__ import annotations

from monitor.matching.analysis import AnalyzedField, AnalyzedText, StemIndex, analyze
from monitor.matching.explain import Explanation, explain
from monitor.matching.hits import MAX_SNIPPET_CHARS, MAX_SNIPPETS
from monitor.matching.matcher import Matcher
from monitor.matching.plan import is_proper_name
from monitor.matching.tokens import (
    ELISIONS,
    Token,
    detect_language,
    fold,
    normalize,
    snowball_language,
    stem_forms,
    term_variants,
)

__all__ = [
    "ELISIONS",
    "MAX_SNIPPETS",
    "MAX_SNIPPET_CHARS",
    "AnalyzedField",
    "AnalyzedText",
    "Explanation",
    "Matcher",
    "StemIndex",
    "Token",
    "analyze",
    "detect_language",
    "explain",
    "fold",
    "is_proper_name",
    "normalize",
    "snowball_language",
    "stem_forms",
    "term_variants",
]
