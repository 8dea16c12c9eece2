"""Watchlists → an indexed matcher; article → hits that explain themselves. Pure and deterministic.

How one article is matched against many watchlists (the cost must not grow with their number):

1. The article is analysed once (`monitor.matching.analysis.analyze`): tokens, folded forms,
   stems in the article's language, and token indexes by form and by stem.
2. *Presearch.* Every watchlist was compiled into a plan plus its *required key groups*: sets
   of index keys (stems, exact forms, prefixes) such that any article it matches contains at
   least one key of each set. A word gives its own key (a word scoped to the title, a key
   looked up in the title's stems and forms only), a phrase one group per word, ``OR``
   the union of its sides' keys, ``AND`` and ``NEAR`` all their sides' groups; ``NOT`` gives
   none. A watchlist is indexed under its two cheapest groups (long, uncommon words first);
   the article's stems, forms and form prefixes are intersected with the index, and only the
   watchlists reached through both groups (through its only group, for a watchlist with one)
   are candidates. (This is what Lucene's Monitor calls a presearcher.)
3. *Verification.* Each candidate's plan is evaluated on the article with set and dictionary
   lookups (no regular expressions); only a real match builds a `HitResult` with its clauses,
   words and snippets.

Term semantics: a word matches the article's words with the same stem in the watchlist's
language (or the article's, when the watchlist does not fix one); ``=word`` matches the same
folded form only; ``word*`` any folded form starting with ``word``; a phrase its words at
consecutive positions. Case, accents, typographic apostrophes and elisions never matter
(see `monitor.matching.tokens`). ``NEAR/n``: some match of each side, in the same field, with
at most ``n`` positions from the end of the earlier to the start of the later one (``NEAR/1``
= adjacent), either order. A term without a field scope matches in the title or the text.

Feed scope: a watchlist with ``feeds`` applies only to articles of those feeds; when no feed
name is given (``explain`` on a file), the scope is not applied.

This module owns the `Matcher`: its partitions per stemming language (built on first use),
the feed and language scopes, and the loop over presearch candidates. The steps above live in
`monitor.matching.analysis` (1), `monitor.matching.presearch` (2), `monitor.matching.verify`
(3) and `monitor.matching.hits`.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from monitor.matching.analysis import AnalyzedText, analyze
from monitor.matching.hits import _build_hit
from monitor.matching.occurrences import _holds
from monitor.matching.plan import _Outline
from monitor.matching.presearch import _Partition
from monitor.matching.tokens import snowball_language
from monitor.matching.views import _DocView
from monitor.models import ArticleText, HitResult, Watchlist
from monitor.text import primary_language


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Run the block with Python's cyclic garbage collector off (unless it was off already).

    Compiling thousands of watchlists allocates objects that all live on and leaves no garbage;
    the collector passes that those allocations trigger only walk the growing index again and
    again, which doubled the time to build a partition of 10,000 watchlists (1.2 s to 0.6 s).
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _fixes_language(watchlist: Watchlist) -> bool:
    return primary_language(watchlist.language) is not None


def _stemming_for(watchlist: Watchlist, doc: AnalyzedText) -> str | None:
    """The Snowball language the watchlist's terms are stemmed in for ``doc`` (None: forms)."""
    if _fixes_language(watchlist):
        return snowball_language(watchlist.language)
    return snowball_language(doc.language)


class Matcher:
    """All watchlists compiled and indexed once; `match` is called per article.

    Watchlists are compiled per stemming language: the article's language for those that do
    not fix theirs, plus one partition per language that some watchlists fix. Partitions are
    built on first use and kept, so a matcher should live as long as its configuration. It is
    safe to share between threads: a partition is built once, under a lock, and published
    only when complete.
    """

    def __init__(self, watchlists: Sequence[Watchlist]) -> None:
        self.watchlists = tuple(watchlists)
        self._outlines = [_Outline.of(watchlist) for watchlist in self.watchlists]
        self._follow_article = [
            order for order, w in enumerate(self.watchlists) if not _fixes_language(w)
        ]
        fixed: dict[str | None, list[int]] = {}
        for order, watchlist in enumerate(self.watchlists):
            if _fixes_language(watchlist):
                fixed.setdefault(snowball_language(watchlist.language), []).append(order)
        self._fixed = fixed
        self._fixed_order = sorted(
            fixed, key=lambda language: (language is not None, language or "")
        )
        self._partitions: dict[tuple[bool, str | None], _Partition] = {}
        self._build_lock = threading.Lock()

    def _partition(self, follows_article: bool, language: str | None) -> _Partition:
        """Watchlists stemmed in ``language``: with (``follows_article``) or without those that
        take the article's language."""
        cache_key = (follows_article, language)
        partition = self._partitions.get(cache_key)
        if partition is not None:
            return partition
        with self._build_lock:
            partition = self._partitions.get(cache_key)
            if partition is None:
                orders = self._fixed.get(language, [])
                if follows_article:
                    orders = sorted(self._follow_article + orders)
                entries = [
                    (order, self.watchlists[order], self._outlines[order]) for order in orders
                ]
                with _collector_paused():
                    partition = _Partition(language, entries)
                self._partitions[cache_key] = partition
        return partition

    def _plans_for(self, doc: AnalyzedText) -> list[tuple[_Partition, _DocView]]:
        article_stemming = snowball_language(doc.language)
        prefixes: dict[int, set[str]] = {}
        planned = [
            (self._partition(True, article_stemming), _DocView(doc, article_stemming, prefixes))
        ]
        for language in self._fixed_order:
            if language != article_stemming:
                planned.append(
                    (self._partition(False, language), _DocView(doc, language, prefixes))
                )
        return planned

    def match(
        self,
        article: ArticleText,
        feed_name: str | None = None,
        feed_language: str | None = None,
    ) -> list[HitResult]:
        """Hits for one article, in watchlist order. Language: the article's, the feed's, detected."""
        doc = analyze(article.title, article.text, article.language or feed_language)
        return self.match_analyzed(doc, feed_name)

    def match_analyzed(self, doc: AnalyzedText, feed_name: str | None = None) -> list[HitResult]:
        hits: list[tuple[int, HitResult]] = []
        language = primary_language(doc.language)
        for partition, view in self._plans_for(doc):
            checks, scoped = partition.checks, partition.scoped
            language_scoped = partition.language_scoped
            for slot in partition.candidates(view):
                if slot in scoped and feed_name is not None and feed_name not in scoped[slot]:
                    continue
                if (
                    slot in language_scoped
                    and language is not None
                    and language not in language_scoped[slot]
                ):
                    continue
                if checks[slot](view):
                    compiled = partition.compiled[slot]
                    hits.append((compiled.order, _build_hit(compiled, view.fields)))
        hits.sort(key=lambda pair: pair[0])
        return [hit for _, hit in hits]

    def candidate_count(self, doc: AnalyzedText) -> int:
        """How many watchlists presearch leaves to verify for ``doc`` (for benchmarks)."""
        return sum(len(partition.candidates(view)) for partition, view in self._plans_for(doc))

    def verify_all(self, doc: AnalyzedText, feed_name: str | None = None) -> list[HitResult]:
        """Reference for tests: no presearch, every watchlist checked by the plain evaluator."""
        hits: list[tuple[int, HitResult]] = []
        for partition, view in self._plans_for(doc):
            for compiled in partition.compiled:
                if (
                    _in_scope(compiled.watchlist, feed_name)
                    and _in_language_scope(compiled.watchlist, doc)
                    and _holds(compiled.plan, view.fields)
                ):
                    hits.append((compiled.order, _build_hit(compiled, view.fields)))
        hits.sort(key=lambda pair: pair[0])
        return [hit for _, hit in hits]


def _in_scope(watchlist: Watchlist, feed_name: str | None) -> bool:
    return not watchlist.feeds or feed_name is None or feed_name in watchlist.feeds


def _in_language_scope(watchlist: Watchlist, doc: AnalyzedText) -> bool:
    language = primary_language(doc.language)
    return not watchlist.languages or language is None or language in watchlist.languages
