"""Watchlist queries compiled to plans, and the presearch key groups a plan requires.

A plan is the query tree with each term turned into *steps* in one stemming language: a
word is looked up by stem (``_STEM``), by exact folded form (``_FORM``: ``=word`` and proper
names, see `is_proper_name`) or by form prefix (``_PREFIX``: ``word*``); a phrase is a
sequence of steps, a hyphenated term one sequence per variant. Field scopes are pushed down to
the leaves; a set reference becomes the ``OR`` of its members.

What does not depend on the stemming language (top-level clauses, rendered clause texts, term
labels, feeds) is worked out once per watchlist: its `_Outline`.

Key groups: sets of index keys (stems, exact forms, prefixes) such that any article the plan
matches contains at least one key of each set (`_required_groups`), with a cost model that
prefers long, uncommon words (`_key_cost`). `monitor.matching.presearch` indexes watchlists
under their cheapest groups; verification orders the sides of a ``NEAR`` by the same costs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

from monitor.matching.tokens import _stemmer, snowball_language, stem_forms, term_variants
from monitor.models import Watchlist
from monitor.query import (
    And,
    FieldScope,
    Near,
    Node,
    Not,
    Or,
    SetRef,
    Term,
    leaves,
    render,
    term_label,
)

# --------------------------------------------------------------------------- compiled plans

_STEM, _FORM, _PREFIX = 0, 1, 2
# Presearch keys of a word scoped to the title: looked up in the title's few stems and forms,
# which reach far fewer watchlists than the whole article's.
_TITLE_STEM, _TITLE_FORM = 3, 4
_TITLE_KIND = {_STEM: _TITLE_STEM, _FORM: _TITLE_FORM}
_Step = tuple[int, str]  # (kind, key)
_Key = tuple[int, str]


@dataclass(frozen=True, slots=True)
class _Leaf:
    label: str  # the term as written, for HitResult.matched
    alternatives: tuple[tuple[_Step, ...], ...]  # word sequences, any of which matches
    field: str | None  # None = title or text


@dataclass(frozen=True, slots=True)
class _AllOf:
    children: tuple[_Plan, ...]


@dataclass(frozen=True, slots=True)
class _AnyOf:
    children: tuple[_Plan, ...]


@dataclass(frozen=True, slots=True)
class _Without:
    child: _Plan


@dataclass(frozen=True, slots=True)
class _Within:
    left: _Plan
    right: _Plan
    distance: int


_Plan = _Leaf | _AllOf | _AnyOf | _Without | _Within

_NO_FIELD = "\0"  # two different field scopes nested: nothing can match
_FIELD_INDEX = {"title": 0, "text": 1}  # the order of AnalyzedText.fields


def is_proper_name(text: str) -> bool:
    """A single word written with a capital initial ("Mali", "Bénin", "CEDEAO") is a name.

    Names do not inflect, and stemming them collides with common words: Snowball's
    French stemmer gives "mal" for both "Mali" and "mal", "benin" for "Bénin" and
    "bénins", "russ" for "Russie" and "russes". So a name matches its own form only
    (case and accents still ignored); write the word in lower case to get its word forms.
    """
    word = text.strip()
    # One piece when split at whitespace: str.split and str.isspace agree on what it is.
    return bool(word) and word[0].isupper() and len(word.split(None, 1)) == 1


def _steps_of(
    variants: tuple[tuple[str, ...], ...],
    exact: bool,
    prefix: bool,
    stems: Callable[[tuple[str, ...]], Sequence[str]],
) -> tuple[tuple[_Step, ...], ...]:
    """A term's steps, from its folded word sequences (`term_variants`); `exact` includes
    a proper name. `stems`: the stems of a word sequence in the plan's language."""
    alternatives: list[tuple[_Step, ...]] = []
    for forms in variants:
        if prefix:
            steps = [(_FORM, form) for form in forms[:-1]] + [(_PREFIX, forms[-1])]
        elif exact:
            steps = [(_FORM, form) for form in forms]
        else:
            steps = [(_STEM, stem) for stem in stems(forms)]
        alternatives.append(tuple(steps))
    return tuple(alternatives)


@lru_cache(maxsize=262_144)
def _term_steps(
    text: str, exact: bool, prefix: bool, language: str | None
) -> tuple[tuple[_Step, ...], ...]:
    exact = exact or is_proper_name(text)
    return _steps_of(
        term_variants(text), exact, prefix, lambda forms: stem_forms(list(forms), language)
    )


class _TermSteps:
    """`_term_steps` for the terms of one compilation (a partition: tens of thousands of
    watchlists) in one stemming language, each term worked out once.

    A dictionary that lives as long as the compilation, not `_term_steps`' bounded cache:
    100,000 watchlists hold some 300,000 distinct terms, and compiled in French then in
    English they went through that cache twice in the same order, so that the second pass
    found none of them (half of the compilation's time). `shared`, what does not depend on
    the language (each term's folded word sequences and whether it is a proper name, the
    steps of the terms that are not stemmed), can be shared by the compilations of one
    matcher. Stems are worked out once per word.
    """

    def __init__(self, language: str | None, shared: _SharedTerms | None = None) -> None:
        self.language = snowball_language(language)
        self.shared = _SharedTerms() if shared is None else shared
        self._steps: dict[tuple[str, bool, bool], tuple[tuple[_Step, ...], ...]] = {}
        self._stems: dict[str, str] = {}
        # The texts of the stemmed terms looked up since the caller last cleared it.
        self.stemmed: list[str] = []
        self._stem: Callable[[str], str] | None = (
            None if self.language is None else _stemmer(self.language).stemWord
        )

    def __call__(self, text: str, exact: bool, prefix: bool) -> tuple[tuple[_Step, ...], ...]:
        key = (text, exact, prefix)
        steps = self._steps.get(key)
        if steps is not None:
            self.stemmed.append(text)
            return steps
        shared = self.shared
        steps = shared.unstemmed.get(key)
        if steps is not None:
            return steps
        words = shared.words.get(text)
        if words is None:
            words = shared.words[text] = (is_proper_name(text), term_variants(text))
        proper, variants = words
        if prefix or exact or proper:
            steps = shared.unstemmed[key] = _steps_of(variants, exact or proper, prefix, list)
        else:
            steps = self._steps[key] = _steps_of(variants, False, False, self._of)
            self.stemmed.append(text)
        return steps

    def stems_alike(self, texts: Iterable[str], other: _TermSteps) -> bool:
        """Whether every word of the terms `texts` (stemmed terms that `other` compiled)
        has the same stem here as in `other`: their steps, so the plans holding only them
        and terms that are not stemmed, are then the same in both languages."""
        words = self.shared.words
        for text in texts:
            known = words.get(text)
            if known is None:  # `other` shared no words with this compilation
                return False
            for forms in known[1]:
                for form in forms:
                    if self.stem(form) != other.stem(form):
                        return False
        return True

    def stem(self, form: str) -> str:
        """The stem of one folded form (the form itself when the language has no stemmer)."""
        stemmed = self._stems.get(form)
        if stemmed is None:
            stem = self._stem
            stemmed = self._stems[form] = form if stem is None else stem(form)
        return stemmed

    def _of(self, forms: tuple[str, ...]) -> list[str]:
        stem = self._stem
        if stem is None:
            return list(forms)
        known = self._stems
        stems = []
        for form in forms:
            stemmed = known.get(form)
            if stemmed is None:
                stemmed = known[form] = stem(form)
            stems.append(stemmed)
        return stems


class _SharedTerms:
    """What `_TermSteps` of several languages share: see there."""

    def __init__(self) -> None:
        self.words: dict[str, tuple[bool, tuple[tuple[str, ...], ...]]] = {}
        self.unstemmed: dict[tuple[str, bool, bool], tuple[tuple[_Step, ...], ...]] = {}


def _compile(
    node: Node,
    language: str | None,
    field: str | None = None,
    terms: _TermSteps | None = None,
) -> _Plan:
    """`node` as a plan stemmed in `language`; `terms`, when given, is a `_TermSteps` of
    that language."""
    if isinstance(node, Term):
        steps = (
            terms(node.text, node.exact, node.prefix)
            if terms is not None
            else _term_steps(node.text, node.exact, node.prefix, language)
        )
        return _Leaf(term_label(node), steps, field)
    if isinstance(node, SetRef):
        return _AnyOf(tuple(_compile(member, language, field, terms) for member in node.members))
    if isinstance(node, FieldScope):
        scoped = node.name if field in (None, node.name) else _NO_FIELD
        return _compile(node.child, language, scoped, terms)
    if isinstance(node, Near):
        return _Within(
            _compile(node.left, language, field, terms),
            _compile(node.right, language, field, terms),
            node.distance,
        )
    if isinstance(node, Not):
        return _Without(_compile(node.child, language, field, terms))
    if isinstance(node, And):
        return _AllOf(tuple(_compile(child, language, field, terms) for child in node.children))
    return _AnyOf(tuple(_compile(child, language, field, terms) for child in node.children))


def _top_clauses(query: Node) -> tuple[Node, ...]:
    if isinstance(query, And | Or):
        return query.children
    return (query,)


@dataclass(frozen=True)
class _Outline:
    """What does not depend on the stemming language: worked out once per watchlist.

    The rendered clauses and the labels are only read to build a hit or an explanation:
    they are worked out then (100,000 watchlists, rendered at start, took a second)."""

    clauses: tuple[Node, ...]  # top-level clauses
    query: Node
    feeds: frozenset[str]

    @classmethod
    def of(cls, watchlist: Watchlist) -> _Outline:
        return cls(
            clauses=_top_clauses(watchlist.query),
            query=watchlist.query,
            feeds=frozenset(watchlist.feeds),
        )

    @cached_property
    def clause_texts(self) -> tuple[str, ...]:
        """The top-level clauses rendered, for hits and explanations."""
        return tuple(render(node) for node in self.clauses)

    @cached_property
    def labels(self) -> tuple[str, ...]:
        """Every term label, in query order."""
        return tuple(dict.fromkeys(term_label(term) for term in leaves(self.query)))


# --------------------------------------------------------------------------- presearch key groups

# Words too common to be good presearch keys (folded forms; their stems are identical).
_COMMON_TEXT = (
    "le la les l de des du d un une et en a au aux ce ces cet cette qui que qu dans par pour "
    "sur pas plus ne n se s il elle ils elles est sont ete son sa ses leur leurs avec "
    "the of and to in is for on that with as by at an be it from this was are or were has "
    "have had not but"
)
_COMMON_WORDS = frozenset(_COMMON_TEXT.split())


def _key_cost(key: _Key) -> float:
    kind, text = key
    cost = 10.0 / (1 + len(text))
    if text in _COMMON_WORDS:
        cost += 10.0
    if kind == _PREFIX:
        # Looking a prefix up costs a pass over all the article's forms (cut to its length),
        # where a word costs one probe: a prefix is a key only when a watchlist has no other.
        cost += 100.0 + 20.0 / len(text)
    elif kind in (_TITLE_STEM, _TITLE_FORM):
        cost /= 10.0  # a title holds about a tenth of the words of a short article
    return cost


def _leaf_key(step: _Step, field: str | None) -> _Key:
    """The presearch key of one word of a leaf scoped to ``field`` (None: anywhere)."""
    kind, key = step
    if field == "title" and kind in _TITLE_KIND:
        return (_TITLE_KIND[kind], key)
    return step


def _leaf_keys(plan: _Leaf) -> list[_Key]:
    """The cheapest key of each of the leaf's word sequences."""
    field = plan.field
    return [
        _leaf_key(steps[0] if len(steps) == 1 else min(steps, key=_key_cost), field)
        for steps in plan.alternatives
    ]


def _set_cost(keys: frozenset[_Key]) -> float:
    return sum(_key_cost(key) for key in keys)


def _keys(plan: _Plan) -> frozenset[_Key] | None:
    """Keys such that a matching article holds at least one; None when no such set exists."""
    if isinstance(plan, _Leaf):
        return frozenset(_leaf_keys(plan))
    if isinstance(plan, _Without):
        return None
    if isinstance(plan, _AnyOf):
        union: set[_Key] = set()
        for child in plan.children:
            if isinstance(child, _Leaf):  # most children: no set of their own
                union.update(_leaf_keys(child))
                continue
            keys = _keys(child)
            if keys is None:
                return None
            union |= keys
        return frozenset(union)
    sides = plan.children if isinstance(plan, _AllOf) else (plan.left, plan.right)
    options = [keys for keys in map(_keys, sides) if keys is not None]
    if not options:
        return None
    return min(options, key=_set_cost)


def _required_groups(plan: _Plan) -> list[frozenset[_Key]]:
    """Key sets a matching article meets every one of (holds at least one key of each).

    A phrase requires each of its words, ``AND`` and ``NEAR`` each required group of their
    sides, ``OR`` the union of its sides' keys (`_keys`); ``NOT`` requires nothing.
    """
    groups: list[frozenset[_Key]]
    if isinstance(plan, _Leaf) and len(plan.alternatives) == 1:
        groups = [frozenset({_leaf_key(step, plan.field)}) for step in plan.alternatives[0]]
    elif isinstance(plan, _Leaf | _AnyOf):
        keys = _keys(plan)
        groups = [] if keys is None else [keys]
    elif isinstance(plan, _Without):
        groups = []
    else:
        sides = plan.children if isinstance(plan, _AllOf) else (plan.left, plan.right)
        groups = [group for side in sides for group in _required_groups(side)]
    return list(dict.fromkeys(groups))
