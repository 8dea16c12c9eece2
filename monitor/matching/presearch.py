"""Presearch: watchlists compiled per stemming language and indexed by their key groups.

A `_Partition` holds the watchlists stemmed in one language, each compiled once (`_Compiled`:
plan, top-level clauses and checker), and a `_KeyIndex` from presearch key to watchlist slots.
A watchlist is indexed under its two cheapest required key groups (`monitor.matching.plan`);
an article is a candidate for it only when it holds a key of each (`_Partition.candidates`),
and a watchlist with no required group (only ``NOT``) is a candidate for every article.
Presearch may let through watchlists that do not match, never drop one that does:
verification decides.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache, partial
from operator import itemgetter

from monitor.matching.plan import (
    _FORM,
    _PREFIX,
    _STEM,
    _TITLE_FORM,
    _TITLE_STEM,
    _AllOf,
    _AnyOf,
    _compile,
    _Key,
    _Outline,
    _Plan,
    _required_groups,
    _set_cost,
    _SharedTerms,
    _TermSteps,
)
from monitor.matching.tokens import stem_forms
from monitor.matching.verify import _Check, _checker
from monitor.matching.views import _DocView
from monitor.models import Watchlist
from monitor.query import And, Or

# --------------------------------------------------------------------------- compiled watchlists


@dataclass(frozen=True)
class _Compiled:
    """One watchlist compiled in one stemming language. It does not depend on the watchlist's
    place in the configuration, so a matcher built for an edited configuration reuses it."""

    watchlist: Watchlist
    outline: _Outline
    plan: _Plan
    clause_plans: tuple[_Plan, ...]  # the plans of the top-level clauses
    groups: tuple[frozenset[_Key], ...]  # required key groups, cheapest first

    @property
    def clauses(self) -> tuple[tuple[str, _Plan], ...]:
        """(rendered clause, plan) for the top-level clauses."""
        return tuple(zip(self.outline.clause_texts, self.clause_plans, strict=True))

    @property
    def check(self) -> _Check:
        """The compiled `plan` (built anew: partitions keep theirs, built on first need)."""
        return _checker(self.plan)


def _compile_watchlist(watchlist: Watchlist, outline: _Outline, language: str | None) -> _Compiled:
    return _completed(watchlist, outline, *_plans(watchlist, outline, language))


def _plans(
    watchlist: Watchlist, outline: _Outline, language: str | None, terms: _TermSteps | None = None
) -> tuple[_Plan, tuple[_Plan, ...]]:
    """The watchlist's plan in ``language``, and those of its top-level clauses (`terms`: a
    `_TermSteps` of ``language``, for many watchlists)."""
    plans = tuple(_compile(node, language, None, terms) for node in outline.clauses)
    plan: _Plan
    if isinstance(watchlist.query, And):
        plan = _AllOf(plans)
    elif isinstance(watchlist.query, Or):
        plan = _AnyOf(plans)
    else:
        plan = plans[0]
    return plan, plans


def _completed(
    watchlist: Watchlist, outline: _Outline, plan: _Plan, plans: tuple[_Plan, ...]
) -> _Compiled:
    groups = _required_groups(plan)
    if len(groups) > 1:
        groups.sort(key=_set_cost)
    return _Compiled(watchlist, outline, plan, plans, tuple(groups))


# --------------------------------------------------------------------------- key index


@lru_cache(maxsize=262_144)
def _stem_of_form(form: str, language: str | None) -> str:
    return stem_forms([form], language)[0]


_Postings = dict[str, tuple[tuple[int, ...], tuple[int, ...]]]  # key -> (first, second stage)


class _KeyIndex:
    """Watchlist slots by presearch key, for both stages, in a partition stemmed in ``language``.

    Three tables: stems anywhere, stems in the title, form prefixes. An exact form is indexed
    under its stem: an article holding the form holds its stem, so no watchlist is lost, and
    presearch probes the article's stems only, not its forms as well (some 400 probes an
    article less); verification still checks the form itself. Filled with `add`, then
    `freeze` turns each key's slot lists into tuples, which presearch reads with one
    indirection less.
    """

    def __init__(self, language: str | None, stems: Callable[[str], str] | None = None) -> None:
        """`stems`: the stem of a folded form in ``language`` (`_stem_of_form` by default)."""
        self.language = language
        self._stem_of = stems if stems is not None else partial(_stem_of_form, language=language)
        self._adding: dict[int, dict[str, tuple[list[int], list[int]]]] = {
            _STEM: {},
            _TITLE_STEM: {},
            _PREFIX: {},
        }
        self.by_stem: _Postings = {}
        self.by_title_stem: _Postings = {}
        self.by_prefix: _Postings = {}
        self.prefix_lengths: tuple[int, ...] = ()

    def add(self, keys: Iterable[_Key], slot: int, stage: int) -> None:
        for kind, key in set(map(self._indexed_as, keys)):
            self._adding[kind].setdefault(key, ([], []))[stage].append(slot)
            if kind == _PREFIX and len(key) not in self.prefix_lengths:
                self.prefix_lengths = tuple(sorted((*self.prefix_lengths, len(key))))

    def _indexed_as(self, key: _Key) -> _Key:
        kind, text = key
        if kind == _FORM:
            return (_STEM, self._stem_of(text))
        if kind == _TITLE_FORM:
            return (_TITLE_STEM, self._stem_of(text))
        return key

    def freeze(self) -> None:
        frozen = {
            kind: {key: (tuple(first), tuple(second)) for key, (first, second) in table.items()}
            for kind, table in self._adding.items()
        }
        self.by_stem, self.by_title_stem = frozen[_STEM], frozen[_TITLE_STEM]
        self.by_prefix = frozen[_PREFIX]
        self._adding = {kind: {} for kind in self._adding}
        # What the compilation's stems were taken from is not kept past it.
        self._stem_of = partial(_stem_of_form, language=self.language)

    def reached(self, doc: _DocView) -> set[int]:
        """The slots ``doc`` reaches through a key it contains in both stages."""
        by_stem, by_title_stem, by_prefix = self.by_stem, self.by_title_stem, self.by_prefix
        # The key sets are intersected and the slot lists chained in C, no Python loop.
        found = [
            map(by_stem.__getitem__, by_stem.keys() & doc.stems_all),
            map(by_title_stem.__getitem__, by_title_stem.keys() & doc.fields[0].stems),
        ]
        for length in self.prefix_lengths:
            found.append(map(by_prefix.__getitem__, by_prefix.keys() & doc.prefixes(length)))
        entries = list(itertools.chain.from_iterable(found))
        first = set(itertools.chain.from_iterable(map(itemgetter(0), entries)))
        # Only the second stage's slots that the first reached are kept: looked up, not stored.
        return first.intersection(itertools.chain.from_iterable(map(itemgetter(1), entries)))


# --------------------------------------------------------------------------- partitions


class _Partition:
    """Watchlists stemmed in one language (None: forms only), with their inverted index.

    Presearch has two stages: a watchlist is indexed under the keys of its cheapest required
    key group for the first stage, and under those of its second cheapest (its only one
    again, when it has one) for the second; it is a candidate only when the article reaches
    it in both stages (see `_required_groups`).

    `previous`, a partition of the same language from an earlier configuration: each of its
    watchlists found here (the same object) keeps its compiled form and checker, so a reload
    that changes a few watchlists compiles those few and rebuilds only the index.
    `sibling`, a partition of another language: a watchlist whose plan is the same in both
    (names, exact forms, words that stem alike) shares its compiled form and checker.
    `shared`: what the terms' compilation in another language found that this one can use.

    Until `compiled_fully` is called, a partition keeps what its compilation worked out (each
    term's steps, the stemmed terms of each watchlist), for a sibling built right after it:
    a watchlist whose stemmed words all stem alike in both languages has the same plan, and
    is shared without being compiled again.
    """

    def __init__(
        self,
        language: str | None,
        entries: Iterable[tuple[int, Watchlist, _Outline]],
        previous: _Partition | None = None,
        sibling: _Partition | None = None,
        shared: _SharedTerms | None = None,
    ) -> None:
        self.compiled: list[_Compiled] = []
        self.orders: list[int] = []  # the configuration's order of each slot's watchlist
        terms = _TermSteps(language, shared)
        self.index = _KeyIndex(language, terms.stem)
        # Watchlists that could not be compiled (a query deeper than the stack, a bug):
        # (order, watchlist, error). They match nothing; the matcher reports them per article.
        self.broken: list[tuple[int, Watchlist, str]] = []
        # Each slot's checker, built on first need: most watchlists are never a candidate
        # before the next reload, and building all of them took a third of a partition.
        self.checks: list[_Check | None] = []
        known: dict[int, tuple[_Compiled, _Check | None]] = {}
        if previous is not None and previous.index.language == language:
            known = {
                id(compiled.watchlist): (compiled, check)
                for compiled, check in zip(previous.compiled, previous.checks, strict=True)
            }
        alike: dict[int, tuple[_Compiled, _Check | None, tuple[str, ...] | None]] = {}
        sibling_terms = None
        if sibling is not None and sibling.index.language != language:
            sibling_terms = sibling._terms
            stemmed = sibling._stemmed or [None] * len(sibling.compiled)
            alike = {
                id(compiled.watchlist): (compiled, check, texts)
                for compiled, check, texts in zip(
                    sibling.compiled, sibling.checks, stemmed, strict=True
                )
            }
        # Per slot, the texts of the watchlist's stemmed terms (None: not known).
        self._stemmed: list[tuple[str, ...] | None] | None = []
        self._terms: _TermSteps | None = terms
        unindexed: list[int] = []  # no required group: verified on every article
        for order, watchlist, outline in entries:
            slot = len(self.compiled)
            reused = known.get(id(watchlist))
            texts: tuple[str, ...] | None = None
            if reused is not None and reused[0].watchlist is watchlist:
                compiled, check = reused
            else:
                other = alike.get(id(watchlist))
                if other is not None and other[0].watchlist is not watchlist:
                    other = None
                if (
                    other is not None
                    and other[2] is not None
                    and sibling_terms is not None
                    and terms.stems_alike(other[2], sibling_terms)
                ):
                    compiled, check, texts = other
                else:
                    try:
                        terms.stemmed.clear()
                        plan, plans = _plans(watchlist, outline, language, terms)
                        texts = tuple(terms.stemmed)
                        if other is not None and other[0].plan == plan:
                            compiled, check = other[0], other[1]
                        else:
                            compiled, check = _completed(watchlist, outline, plan, plans), None
                    except Exception as error:  # one watchlist must never stop the others
                        self.broken.append((order, watchlist, f"{type(error).__name__}: {error}"))
                        continue
            self.compiled.append(compiled)
            self.orders.append(order)
            self.checks.append(check)
            self._stemmed.append(texts)
            groups = compiled.groups
            if not groups:
                unindexed.append(slot)
                continue
            self.index.add(groups[0], slot, 0)
            # With a single group, the second stage is the first again.
            self.index.add(groups[1] if len(groups) > 1 else groups[0], slot, 1)
        self.index.freeze()
        self.unindexed = frozenset(unindexed)
        # Flat views of `compiled` for the per-candidate loop.
        self.scoped = {
            slot: compiled.outline.feeds
            for slot, compiled in enumerate(self.compiled)
            if compiled.outline.feeds
        }
        self.language_scoped = {
            slot: frozenset(compiled.watchlist.languages)
            for slot, compiled in enumerate(self.compiled)
            if compiled.watchlist.languages
        }

    def compiled_fully(self) -> None:
        """Drop what was kept for a sibling (see the class)."""
        self._stemmed = None
        self._terms = None

    def check(self, slot: int) -> _Check:
        """The checker of the watchlist in ``slot``, built on first use (a race only builds
        the same checker twice)."""
        check = self.checks[slot]
        if check is None:
            check = self.checks[slot] = _checker(self.compiled[slot].plan)
        return check

    def candidates(self, doc: _DocView) -> list[int]:
        return sorted(self.index.reached(doc) | self.unindexed)
