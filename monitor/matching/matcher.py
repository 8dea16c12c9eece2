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

import logging
import threading
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager

from monitor.collector import collector_paused
from monitor.matching.analysis import AnalyzedText, analyze
from monitor.matching.hits import _build_hit
from monitor.matching.occurrences import _holds
from monitor.matching.plan import _Outline, _SharedTerms
from monitor.matching.presearch import _Partition
from monitor.matching.tokens import snowball_language
from monitor.matching.views import _DocView
from monitor.models import ArticleText, HitResult, MatchFailure, Watchlist
from monitor.text import primary_language

log = logging.getLogger(__name__)


def _collector_paused() -> AbstractContextManager[None]:
    """Run the block with Python's cyclic garbage collector off (unless it was off already).

    Compiling thousands of watchlists allocates objects that all live on and leaves no garbage;
    the collector passes that those allocations trigger only walk the growing index again and
    again, which doubled the time to build a partition of 10,000 watchlists (1.2 s to 0.6 s).
    """
    return collector_paused()


def _fixes_language(watchlist: Watchlist) -> bool:
    return watchlist.language is not None and primary_language(watchlist.language) is not None


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

    def __init__(self, watchlists: Sequence[Watchlist], *, previous: Matcher | None = None) -> None:
        """`previous`: the matcher of an earlier configuration. The watchlists of this one
        that are the same objects as some of its own keep their outline and compiled forms,
        and the partitions it had built are built now, from those: a reload that changes
        one watchlist of 100,000 compiles one, then re-indexes."""
        self.watchlists = tuple(watchlists)
        # As for a partition: 100,000 outlines, and the tables over them, leave no garbage.
        with _collector_paused():
            self._build(previous)

    def _build(self, previous: Matcher | None) -> None:
        # A watchlist whose outline cannot be worked out (a query too deep for the stack)
        # is left out of every partition and reported as failed on each article.
        self._unusable: dict[int, str] = {}
        self._outlines: list[_Outline | None] = []
        known: dict[int, tuple[Watchlist, _Outline | None]] = {}
        if previous is not None:
            known = {
                id(watchlist): (watchlist, outline)
                for watchlist, outline in zip(previous.watchlists, previous._outlines, strict=True)
            }
        for order, watchlist in enumerate(self.watchlists):
            reused = known.get(id(watchlist))
            if reused is not None and reused[0] is watchlist and reused[1] is not None:
                self._outlines.append(reused[1])
                continue
            try:
                self._outlines.append(_Outline.of(watchlist))
            except Exception as error:  # one watchlist must never stop the others
                self._unusable[order] = f"{type(error).__name__}: {error}"
                self._outlines.append(None)
        usable = [order for order in range(len(self.watchlists)) if order not in self._unusable]
        self._follow_article = [
            order for order in usable if not _fixes_language(self.watchlists[order])
        ]
        fixed: dict[str | None, list[int]] = {}
        for order in usable:
            watchlist = self.watchlists[order]
            if _fixes_language(watchlist):
                fixed.setdefault(snowball_language(watchlist.language), []).append(order)
        self._fixed = fixed
        self._fixed_order = sorted(
            fixed, key=lambda language: (language is not None, language or "")
        )
        self._partitions: dict[tuple[bool, str | None], _Partition] = {}
        self._build_lock = threading.Lock()
        # The terms' folded words while several partitions are built in a row (`_TermSteps`).
        self._words: _SharedTerms | None = None
        if previous is not None:
            self._words = _SharedTerms()
            for follows_article, language in list(previous._partitions):
                self._partition(
                    follows_article,
                    language,
                    previous._partitions.get((follows_article, language)),
                )
            self._words = None
            self._compiled_fully()

    def prepare(self, languages: Iterable[str | None]) -> None:
        """Build now the partitions that articles in ``languages`` need (each is otherwise
        built by the first such article: some seconds with 100,000 watchlists)."""
        self._words = _SharedTerms()
        try:
            for language in languages:
                stemming = snowball_language(language)
                self._partition(True, stemming)
                for fixed in self._fixed_order:
                    if fixed != stemming:
                        self._partition(False, fixed)
        finally:
            self._words = None
            self._compiled_fully()

    def _compiled_fully(self) -> None:
        for partition in list(self._partitions.values()):  # another thread may add one
            partition.compiled_fully()

    def _partition(
        self, follows_article: bool, language: str | None, previous: _Partition | None = None
    ) -> _Partition:
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
                with _collector_paused():  # 100,000 entries: no collection over the heap
                    entries = [
                        (order, self.watchlists[order], outline)
                        for order in orders
                        if (outline := self._outlines[order]) is not None
                    ]
                    # The largest partition built so far, of another language, shares
                    # the watchlists whose plan is the same in both.
                    sibling = max(
                        self._partitions.values(),
                        key=lambda built: len(built.compiled),
                        default=None,
                    )
                    partition = _Partition(language, entries, previous, sibling, self._words)
                    if self._words is None:  # built alone: no sibling follows
                        partition.compiled_fully()
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
        """Hits for one article, in watchlist order. Language: the article's, the feed's, detected.

        A watchlist whose matching raises is skipped for this article and logged; use
        `match_reporting` to get those failures as values."""
        hits, failures = self.match_reporting(article, feed_name, feed_language)
        _log_failures(failures, article.url or article.title)
        return hits

    def match_reporting(
        self,
        article: ArticleText,
        feed_name: str | None = None,
        feed_language: str | None = None,
    ) -> tuple[list[HitResult], list[MatchFailure]]:
        """`match`, with the watchlists whose matching raised on this article (each skipped
        for it alone: the others still match)."""
        doc = analyze(article.title, article.text, article.language or feed_language)
        return self._match(doc, feed_name)

    def match_analyzed(self, doc: AnalyzedText, feed_name: str | None = None) -> list[HitResult]:
        hits, failures = self._match(doc, feed_name)
        _log_failures(failures, repr(doc.title.text[:80]))
        return hits

    def _match(
        self, doc: AnalyzedText, feed_name: str | None
    ) -> tuple[list[HitResult], list[MatchFailure]]:
        hits: list[tuple[int, HitResult]] = []
        failed: list[tuple[int, MatchFailure]] = [
            (order, MatchFailure(self.watchlists[order].name, error))
            for order, error in self._unusable.items()
            if _in_scope(self.watchlists[order], feed_name)
        ]
        language = primary_language(doc.language)
        for partition, view in self._plans_for(doc):
            checks, scoped, orders = partition.checks, partition.scoped, partition.orders
            language_scoped = partition.language_scoped
            failed.extend(
                (order, MatchFailure(watchlist.name, error))
                for order, watchlist, error in partition.broken
                if _in_scope(watchlist, feed_name)
            )
            for slot in partition.candidates(view):
                if slot in scoped and feed_name is not None and feed_name not in scoped[slot]:
                    continue
                if (
                    slot in language_scoped
                    and language is not None
                    and language not in language_scoped[slot]
                ):
                    continue
                try:
                    check = checks[slot] or partition.check(slot)
                    if check(view):
                        compiled = partition.compiled[slot]
                        hits.append((orders[slot], _build_hit(compiled, view.fields)))
                except Exception as error:  # this watchlist skips this article; not the others
                    compiled = partition.compiled[slot]
                    failure = MatchFailure(
                        compiled.watchlist.name, f"{type(error).__name__}: {error}"
                    )
                    failed.append((orders[slot], failure))
        hits.sort(key=lambda pair: pair[0])
        failed.sort(key=lambda pair: pair[0])
        return [hit for _, hit in hits], [failure for _, failure in failed]

    def candidate_count(self, doc: AnalyzedText) -> int:
        """How many watchlists presearch leaves to verify for ``doc`` (for benchmarks)."""
        return sum(len(partition.candidates(view)) for partition, view in self._plans_for(doc))

    def verify_all(self, doc: AnalyzedText, feed_name: str | None = None) -> list[HitResult]:
        """Reference for tests: no presearch, every watchlist checked by the plain evaluator."""
        hits: list[tuple[int, HitResult]] = []
        for partition, view in self._plans_for(doc):
            for order, compiled in zip(partition.orders, partition.compiled, strict=True):
                if (
                    _in_scope(compiled.watchlist, feed_name)
                    and _in_language_scope(compiled.watchlist, doc)
                    and _holds(compiled.plan, view.fields)
                ):
                    hits.append((order, _build_hit(compiled, view.fields)))
        hits.sort(key=lambda pair: pair[0])
        return [hit for _, hit in hits]


def _log_failures(failures: Sequence[MatchFailure], article: str) -> None:
    for failure in failures:
        log.warning(
            "watchlist %r failed on %s and skipped it: %s",
            failure.watchlist,
            article,
            failure.error,
        )


def _in_scope(watchlist: Watchlist, feed_name: str | None) -> bool:
    return not watchlist.feeds or feed_name is None or feed_name in watchlist.feeds


def _in_language_scope(watchlist: Watchlist, doc: AnalyzedText) -> bool:
    language = primary_language(doc.language)
    return not watchlist.languages or language is None or language in watchlist.languages
