"""Watchlists → an indexed matcher; article → hits that explain themselves. Pure and deterministic.

How one article is matched against many watchlists (the cost must not grow with their number):

1. The article is analysed once (`monitor.analysis.analyze`): tokens, folded forms, stems in
   the article's language, and token indexes by form and by stem.
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
(see `monitor.analysis`). ``NEAR/n``: some match of each side, in the same field, with at most
``n`` positions from the end of the earlier to the start of the later one (``NEAR/1`` =
adjacent), either order. A term without a field scope matches in the title or the text.

Feed scope: a watchlist with ``feeds`` applies only to articles of those feeds; when no feed
name is given (``explain`` on a file), the scope is not applied.
"""

from __future__ import annotations

import gc
import itertools
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter

from monitor.analysis import (
    AnalyzedField,
    AnalyzedText,
    analyze,
    primary_language,
    snowball_language,
    stem_forms,
    term_variants,
)
from monitor.models import ArticleText, HitResult, MatchedClause, Watchlist
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

MAX_SNIPPETS = 3
MAX_SNIPPET_CHARS = 400
SNIPPET_CONTEXT_BEFORE = 150

# Words too common to be good presearch keys (folded forms; their stems are identical).
_COMMON_TEXT = (
    "le la les l de des du d un une et en a au aux ce ces cet cette qui que qu dans par pour "
    "sur pas plus ne n se s il elle ils elles est sont ete son sa ses leur leurs avec "
    "the of and to in is for on that with as by at an be it from this was are or were has "
    "have had not but"
)
_COMMON_WORDS = frozenset(_COMMON_TEXT.split())


@dataclass(frozen=True)
class Explanation:
    """Why a watchlist matches an article or not.

    ``lines``: first ``language: ...`` (the article's language and how terms were compared),
    then ``feeds: ...`` when the feed scope excludes the article, then one line per top-level
    clause, e.g. ``Togo: found "Togo" in the title and sentences 1, 6``,
    ``NOT football: found "football" in sentence 4``, ``NOT football: not found, as required``,
    ``Lomé NEAR/3 attaque: not found, so no match (both sides appear, but never within 3 words:
    closest 14 apart)``. Sentences are numbered from 1 in the text.
    """

    watchlist: str
    matched: bool
    lines: tuple[str, ...]
    hit: HitResult | None  # what `Matcher.match` returns for this watchlist, or None


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
    return bool(word) and word[0].isupper() and not any(char.isspace() for char in word)


@lru_cache(maxsize=262_144)
def _term_steps(
    text: str, exact: bool, prefix: bool, language: str | None
) -> tuple[tuple[_Step, ...], ...]:
    alternatives: list[tuple[_Step, ...]] = []
    exact = exact or is_proper_name(text)
    for forms in term_variants(text):
        if prefix:
            steps = [(_FORM, form) for form in forms[:-1]] + [(_PREFIX, forms[-1])]
        elif exact:
            steps = [(_FORM, form) for form in forms]
        else:
            steps = [(_STEM, stem) for stem in stem_forms(list(forms), language)]
        alternatives.append(tuple(steps))
    return tuple(alternatives)


def _compile(node: Node, language: str | None, field: str | None = None) -> _Plan:
    if isinstance(node, Term):
        return _Leaf(
            term_label(node), _term_steps(node.text, node.exact, node.prefix, language), field
        )
    if isinstance(node, SetRef):
        return _AnyOf(tuple(_compile(member, language, field) for member in node.members))
    if isinstance(node, FieldScope):
        scoped = node.name if field in (None, node.name) else _NO_FIELD
        return _compile(node.child, language, scoped)
    if isinstance(node, Near):
        return _Within(
            _compile(node.left, language, field),
            _compile(node.right, language, field),
            node.distance,
        )
    if isinstance(node, Not):
        return _Without(_compile(node.child, language, field))
    if isinstance(node, And):
        return _AllOf(tuple(_compile(child, language, field) for child in node.children))
    return _AnyOf(tuple(_compile(child, language, field) for child in node.children))


def _top_clauses(query: Node) -> tuple[Node, ...]:
    if isinstance(query, And | Or):
        return query.children
    return (query,)


# --------------------------------------------------------------------------- presearch keys


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


@lru_cache(maxsize=262_144)
def _stem_of_form(form: str, language: str | None) -> str:
    return stem_forms([form], language)[0]


def _leaf_key(step: _Step, field: str | None) -> _Key:
    """The presearch key of one word of a leaf scoped to ``field`` (None: anywhere)."""
    kind, key = step
    if field == "title" and kind in _TITLE_KIND:
        return (_TITLE_KIND[kind], key)
    return step


def _set_cost(keys: frozenset[_Key]) -> float:
    return sum(_key_cost(key) for key in keys)


def _keys(plan: _Plan) -> frozenset[_Key] | None:
    """Keys such that a matching article holds at least one; None when no such set exists."""
    if isinstance(plan, _Leaf):
        chosen: set[_Key] = set()
        for steps in plan.alternatives:
            chosen.add(_leaf_key(min(steps, key=_key_cost), plan.field))
        return frozenset(chosen)
    if isinstance(plan, _Without):
        return None
    if isinstance(plan, _AnyOf):
        union: set[_Key] = set()
        for child in plan.children:
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


# --------------------------------------------------------------------------- evaluation


class _FieldView:
    """One analysed field seen through one stemming language.

    The key sets are all that presearch and most verification need. In the article's own
    language the token index by stem comes from the analysis; in another, a `StemIndex` works
    out the stems that a positional check (phrase, NEAR, hit) asks for, one by one.
    """

    __slots__ = ("_by_stem", "_stem_of", "field", "forms", "name", "stems")

    def __init__(self, field: AnalyzedField, language: str | None, own: bool):
        self.field = field
        self.name = field.name
        self.forms = field.stem_of.keys()
        # Own language: the stems analysis computed. Another: stemmed once here, for both the
        # key set and, when asked, the token index.
        self._stem_of: Mapping[str, str] | None = None if own else field.stems_of(language)
        self.stems = field.stems if self._stem_of is None else frozenset(self._stem_of.values())
        self._by_stem: Mapping[str, Sequence[int]] | None = None

    @property
    def by_stem(self) -> Mapping[str, Sequence[int]]:
        if self._by_stem is None:
            field = self.field
            self._by_stem = (
                field.by_stem if self._stem_of is None else field.index_by(self._stem_of)
            )
        return self._by_stem

    def lookup(self, step: _Step) -> Sequence[int]:
        kind, key = step
        if kind == _STEM:
            return self.by_stem.get(key, ()) if key in self.stems else ()
        if kind == _FORM:
            return self.field.by_form.get(key, ())
        by_form = self.field.by_form
        return sorted(
            itertools.chain.from_iterable(
                map(by_form.__getitem__, self.field.forms_with_prefix(key))
            )
        )

    def has(self, step: _Step) -> bool:
        kind, key = step
        if kind == _STEM:
            return key in self.stems
        if kind == _FORM:
            return key in self.forms
        return self.field.has_prefix(key)


class _DocView:
    """An article seen through one stemming language, with both fields' keys merged."""

    __slots__ = ("_prefixes", "fields", "forms_all", "stems_all")

    def __init__(
        self,
        doc: AnalyzedText,
        language: str | None,
        prefixes: dict[int, set[str]] | None = None,
    ) -> None:
        own = language == snowball_language(doc.language)  # the stems analysis computed
        self.fields = (
            _FieldView(doc.title, language, own),
            _FieldView(doc.text, language, own),
        )
        title, text = self.fields
        self.stems_all = title.stems | text.stems
        self.forms_all = title.forms | text.forms
        # Forms do not depend on the stemming language: views of one article share these.
        self._prefixes: dict[int, set[str]] = {} if prefixes is None else prefixes

    def prefixes(self, length: int) -> set[str]:
        """The forms cut to ``length`` characters (shorter forms whole): prefix keys' lookup."""
        found = self._prefixes.get(length)
        if found is None:
            found = self._prefixes[length] = set(map(itemgetter(slice(length)), self.forms_all))
        return found


_Check = Callable[[_DocView], bool]


def _checker(plan: _Plan) -> _Check:
    """``plan`` as nested closures: the verification hot path (`_holds` is its reference).

    Plain words anywhere in the article (most terms) are folded into set operations on the
    article's merged keys: all required words of an AND in one subset test, all the words of
    an OR in one disjointness test, all the plain NOT words of an AND in another.
    """
    if isinstance(plan, _Leaf):
        return _leaf_checker(plan)
    if isinstance(plan, _Without):
        negated = _checker(plan.child)
        return lambda doc: not negated(doc)
    if isinstance(plan, _Within):
        return _near_checker(plan)
    if isinstance(plan, _AllOf):
        return _all_checker(plan)
    return _any_checker(plan)


def _near_checker(plan: _Within) -> _Check:
    words_only = _near_of_words_checker(plan)
    if words_only is not None:
        return words_only
    left, right = _checker(plan.left), _checker(plan.right)
    # Presearch found the article through the cheaper side's keys, so that side is probably
    # there: test the other one first.
    left_keys, right_keys = _keys(plan.left), _keys(plan.right)
    if left_keys is not None and (
        right_keys is None or _set_cost(left_keys) <= _set_cost(right_keys)
    ):
        first, second = right, left
    else:
        first, second = left, right
    if not _positional_only(plan):
        return lambda doc: first(doc) and second(doc) and bool(_near_pairs(plan, doc.fields)[0])
    return lambda doc: (
        first(doc) and second(doc) and any(_near_spans(plan, view, True) for view in doc.fields)
    )


# One side of a NEAR made of words and phrases only, anywhere: (stems, forms, phrases' steps).
_WordsSide = tuple[frozenset[str], frozenset[str], tuple[tuple[_Step, ...], ...]]


def _words_side(plan: _Plan) -> _WordsSide | None:
    """``plan`` as a `_WordsSide` when it is a word, a phrase or an OR of them, with no field
    scope and no prefix; else None."""
    leaves = [plan] if isinstance(plan, _Leaf) else getattr(plan, "children", None)
    if not isinstance(plan, _Leaf | _AnyOf) or leaves is None:
        return None
    stems: set[str] = set()
    forms: set[str] = set()
    phrases: list[tuple[_Step, ...]] = []
    for leaf in leaves:
        if not isinstance(leaf, _Leaf) or leaf.field is not None:
            return None
        for steps in leaf.alternatives:
            if any(kind == _PREFIX for kind, _ in steps):
                return None
            if len(steps) > 1:
                phrases.append(steps)
            elif steps[0][0] == _STEM:
                stems.add(steps[0][1])
            else:
                forms.add(steps[0][1])
    return frozenset(stems), frozenset(forms), tuple(phrases)


def _words_spans(side: _WordsSide) -> Callable[[_FieldView], list[tuple[int, int]]]:
    """A function giving the (first, last) positions of the side's words and phrases in one
    field, with the side's parts bound in advance (it runs for each NEAR candidate)."""
    stems, forms, phrases = side

    def spans(view: _FieldView) -> list[tuple[int, int]]:
        field = view.field
        indexes: list[int] = []
        if stems:
            stems_present = stems & view.stems
            if stems_present:
                indexes.extend(
                    itertools.chain.from_iterable(map(view.by_stem.__getitem__, stems_present))
                )
        if forms:
            forms_present = view.forms & forms  # a dict view: this order iterates the few forms
            if forms_present:
                indexes.extend(
                    itertools.chain.from_iterable(map(field.by_form.__getitem__, forms_present))
                )
        found = (
            list(
                zip(
                    map(field.positions.__getitem__, indexes),
                    map(field.end_positions.__getitem__, indexes),
                    strict=True,
                )
            )
            if indexes
            else []
        )
        for steps in phrases:
            if all(view.has(step) for step in steps):
                found.extend((start, end) for start, end, _ in _sequence_matches(view, steps))
        return found

    return spans


def _near_of_words_checker(plan: _Within) -> _Check | None:
    """The NEAR of two sides made of words and phrases (the usual NEAR), checked from their
    positions directly: no presence tests first, no walk of the plan per field."""
    left, right = _words_side(plan.left), _words_side(plan.right)
    if left is None or right is None:
        return None
    distance = plan.distance
    left_spans, right_spans = _words_spans(left), _words_spans(right)

    def check(doc: _DocView) -> bool:
        for view in doc.fields:
            found_left = left_spans(view)
            if found_left:
                found_right = right_spans(view)
                if found_right and _within_reach(found_left, found_right, distance):
                    return True
        return False

    return check


def _within_reach(left: list[tuple[int, int]], right: list[tuple[int, int]], distance: int) -> bool:
    """Whether a span of ``left`` and one of ``right`` are at most ``distance`` apart."""
    if len(left) * len(right) <= 16:  # the usual case: each side a few times in the field
        return any(
            right_start - left_end <= distance and left_start - right_end <= distance
            for left_start, left_end in left
            for right_start, right_end in right
        )
    right.sort()
    starts = [start for start, _ in right]
    widest = max(end - start for start, end in right)
    for left_start, left_end in left:
        low = bisect_left(starts, left_start - distance - widest)
        high = bisect_right(starts, left_end + distance)
        for right_start, right_end in right[low:high]:
            if right_start - left_end <= distance and left_start - right_end <= distance:
                return True
    return False


def _positional_only(plan: _Plan) -> bool:
    """Whether ``plan`` is built from words, ORs and NEARs only (what the parser allows)."""
    if isinstance(plan, _Leaf):
        return True
    if isinstance(plan, _AnyOf):
        return all(_positional_only(child) for child in plan.children)
    if isinstance(plan, _Within):
        return _positional_only(plan.left) and _positional_only(plan.right)
    return False


def _spans(plan: _Plan, view: _FieldView) -> list[tuple[int, int]]:
    """(first, last) positions where a positional-only ``plan`` matches in one field."""
    if isinstance(plan, _Leaf):
        if plan.field is not None and plan.field != view.name:
            return []
        positions, end_positions = view.field.positions, view.field.end_positions
        found: list[tuple[int, int]] = []
        for steps in plan.alternatives:
            if len(steps) == 1:
                for index in view.lookup(steps[0]):
                    found.append((positions[index], end_positions[index]))
            else:
                found.extend((start, end) for start, end, _ in _sequence_matches(view, steps))
        return found
    if isinstance(plan, _AnyOf):
        return [span for child in plan.children for span in _spans(child, view)]
    if isinstance(plan, _Within):
        return _near_spans(plan, view, False)
    raise TypeError(f"not a positional plan: {plan!r}")


def _near_spans(plan: _Within, view: _FieldView, first_only: bool) -> list[tuple[int, int]]:
    """Spans of the pairs within reach in one field (just the first one if ``first_only``)."""
    left = _spans(plan.left, view)
    if not left:
        return []
    right = sorted(_spans(plan.right, view))
    if not right:
        return []
    starts = [start for start, _ in right]
    widest = max(end - start for start, end in right)
    distance = plan.distance
    found: list[tuple[int, int]] = []
    for left_start, left_end in left:
        low = bisect_left(starts, left_start - distance - widest)
        high = bisect_right(starts, left_end + distance)
        for right_start, right_end in right[low:high]:
            if right_start > left_end:
                gap = right_start - left_end
            elif left_start > right_end:
                gap = left_start - right_end
            else:
                gap = 0
            if gap <= distance:
                found.append((min(left_start, right_start), max(left_end, right_end)))
                if first_only:
                    return found
    return found


def _plain_keys(plan: _Plan) -> tuple[frozenset[str], frozenset[str]] | None:
    """(stems, forms) of a leaf made of single words, any field, no prefix; else None."""
    if not isinstance(plan, _Leaf) or plan.field is not None:
        return None
    if not all(len(steps) == 1 and steps[0][0] != _PREFIX for steps in plan.alternatives):
        return None
    stems = frozenset(key for ((kind, key),) in plan.alternatives if kind == _STEM)
    forms = frozenset(key for ((kind, key),) in plan.alternatives if kind == _FORM)
    return stems, forms


def _all_checker(plan: _AllOf) -> _Check:
    needed_stems: set[str] = set()
    needed_forms: set[str] = set()
    banned_stems: set[str] = set()
    banned_forms: set[str] = set()
    positive: list[_Check] = []
    negative: list[_Check] = []  # absences last: they rarely end the check early
    for child in plan.children:
        keys = _plain_keys(child)
        if keys is not None and len(keys[0]) + len(keys[1]) == 1:
            needed_stems |= keys[0]
            needed_forms |= keys[1]
            continue
        if isinstance(child, _Without):
            banned = _plain_keys(child.child)
            if banned is not None:
                banned_stems |= banned[0]
                banned_forms |= banned[1]
            else:
                negative.append(_checker(child))
            continue
        positive.append(_checker(child))
    others = tuple(positive + negative)
    needs_stems, needs_forms = frozenset(needed_stems), frozenset(needed_forms)
    bans_stems, bans_forms = frozenset(banned_stems), frozenset(banned_forms)

    def check(doc: _DocView) -> bool:
        return (
            needs_stems <= doc.stems_all
            and needs_forms <= doc.forms_all
            and all(other(doc) for other in others)
            and bans_stems.isdisjoint(doc.stems_all)
            and bans_forms.isdisjoint(doc.forms_all)
        )

    return check


def _any_checker(plan: _AnyOf) -> _Check:
    any_stems: set[str] = set()
    any_forms: set[str] = set()
    others: list[_Check] = []
    for child in plan.children:
        keys = _plain_keys(child)
        if keys is None:
            others.append(_checker(child))
        else:
            any_stems |= keys[0]
            any_forms |= keys[1]
    stems, forms = frozenset(any_stems), frozenset(any_forms)
    rest = tuple(others)

    def check(doc: _DocView) -> bool:
        return (
            not stems.isdisjoint(doc.stems_all)
            or not forms.isdisjoint(doc.forms_all)
            or any(other(doc) for other in rest)
        )

    return check


def _leaf_checker(leaf: _Leaf) -> _Check:
    field_index = None if leaf.field is None else _FIELD_INDEX.get(leaf.field)
    if leaf.field is not None and field_index is None:
        return lambda doc: False  # nested scopes on different fields
    simple = all(len(steps) == 1 and steps[0][0] != _PREFIX for steps in leaf.alternatives)
    if not simple:
        # Quick rejection on the merged key sets before any positional work.
        needed = tuple(
            (
                frozenset(key for kind, key in steps if kind == _STEM),
                frozenset(key for kind, key in steps if kind == _FORM),
            )
            for steps in leaf.alternatives
        )

        def check(doc: _DocView) -> bool:
            return any(
                stems <= doc.stems_all and forms <= doc.forms_all for stems, forms in needed
            ) and _leaf_holds(leaf, doc.fields)

        return check
    stems = frozenset(key for ((kind, key),) in leaf.alternatives if kind == _STEM)
    forms = frozenset(key for ((kind, key),) in leaf.alternatives if kind == _FORM)
    if field_index is not None:
        index = field_index
        return lambda doc: (
            not stems.isdisjoint(doc.fields[index].stems)
            or not forms.isdisjoint(doc.fields[index].forms)
        )
    if len(stems) == 1 and not forms:
        (stem,) = stems
        return lambda doc: stem in doc.stems_all
    if len(forms) == 1 and not stems:
        (form,) = forms
        return lambda doc: form in doc.forms_all
    return lambda doc: not stems.isdisjoint(doc.stems_all) or not forms.isdisjoint(doc.forms_all)


# A chain is the token indexes of one matched word or phrase, in order.
_Chain = tuple[int, ...]
# (field index, first position, last position, chains, term labels)
_Occurrence = tuple[int, int, int, tuple[_Chain, ...], tuple[str, ...]]


def _sequence_matches(
    view: _FieldView, steps: tuple[_Step, ...]
) -> list[tuple[int, int, tuple[int, ...]]]:
    positions, end_positions = view.field.positions, view.field.end_positions
    first = view.lookup(steps[0])
    if len(steps) == 1:
        return [(positions[i], end_positions[i], (i,)) for i in first]
    following: list[dict[int, int]] = []
    for step in steps[1:]:
        by_position: dict[int, int] = {}
        for index in view.lookup(step):
            position = positions[index]
            # Prefer the single word over a joined compound starting at the same position.
            known = by_position.get(position)
            if known is None or end_positions[index] < end_positions[known]:
                by_position[position] = index
        if not by_position:
            return []
        following.append(by_position)
    found: list[tuple[int, int, tuple[int, ...]]] = []
    for start_index in first:
        chain = [start_index]
        end = end_positions[start_index]
        for by_position in following:
            next_index = by_position.get(end + 1)
            if next_index is None:
                break
            chain.append(next_index)
            end = end_positions[next_index]
        else:
            found.append((positions[start_index], end, tuple(chain)))
    return found


def _leaf_holds(leaf: _Leaf, views: Sequence[_FieldView]) -> bool:
    for view in views:
        if leaf.field is not None and leaf.field != view.name:
            continue
        for steps in leaf.alternatives:
            if len(steps) == 1:
                if view.has(steps[0]):
                    return True
            elif all(view.has(step) for step in steps) and _sequence_matches(view, steps):
                return True
    return False


def _holds(plan: _Plan, views: Sequence[_FieldView]) -> bool:
    if isinstance(plan, _Leaf):
        return _leaf_holds(plan, views)
    if isinstance(plan, _AllOf):
        return all(_holds(child, views) for child in plan.children)
    if isinstance(plan, _AnyOf):
        return any(_holds(child, views) for child in plan.children)
    if isinstance(plan, _Without):
        return not _holds(plan.child, views)
    return (
        _holds(plan.left, views)
        and _holds(plan.right, views)
        and _occurrences(plan, views) is not None
    )


def _occurrences(plan: _Plan, views: Sequence[_FieldView]) -> list[_Occurrence] | None:
    """Where ``plan`` is satisfied; None when it is not ([] = satisfied by an absence)."""
    if isinstance(plan, _Leaf):
        found: list[_Occurrence] = []
        labels = (plan.label,)
        for field_index, view in enumerate(views):
            if plan.field is not None and plan.field != view.name:
                continue
            positions, end_positions = view.field.positions, view.field.end_positions
            for steps in plan.alternatives:
                if len(steps) == 1:
                    found.extend(
                        [
                            (field_index, positions[i], end_positions[i], ((i,),), labels)
                            for i in view.lookup(steps[0])
                        ]
                    )
                    continue
                found.extend(
                    [
                        (field_index, start, end, (chain,), labels)
                        for start, end, chain in _sequence_matches(view, steps)
                    ]
                )
        return found or None
    if isinstance(plan, _Without):
        return [] if _occurrences(plan.child, views) is None else None
    if isinstance(plan, _AllOf):
        combined: list[_Occurrence] = []
        for child in plan.children:
            child_found = _occurrences(child, views)
            if child_found is None:
                return None
            combined.extend(child_found)
        return combined
    if isinstance(plan, _AnyOf):
        union: list[_Occurrence] | None = None
        for child in plan.children:
            child_found = _occurrences(child, views)
            if child_found is not None:
                union = (union or []) + child_found
        return union
    return _near_pairs(plan, views)[0] or None


def _gap(first: _Occurrence, second: _Occurrence) -> int:
    if second[1] > first[2]:
        return second[1] - first[2]
    if first[1] > second[2]:
        return first[1] - second[2]
    return 0


def _near_pairs(plan: _Within, views: Sequence[_FieldView]) -> tuple[list[_Occurrence], int | None]:
    """Occurrences of the NEAR; when there are none, the smallest gap between its sides.

    The right side's occurrences are sorted by position, so each left occurrence only looks at
    those that can be within reach: linear in the occurrences, not quadratic.
    """
    left = _occurrences(plan.left, views) or []
    right = _occurrences(plan.right, views) or []
    by_field: dict[int, list[_Occurrence]] = {}
    for other in right:
        by_field.setdefault(other[0], []).append(other)
    starts: dict[int, list[int]] = {}
    widest: dict[int, int] = {}
    for field_index, items in by_field.items():
        items.sort(key=lambda occurrence: occurrence[1])
        starts[field_index] = [occurrence[1] for occurrence in items]
        widest[field_index] = max(occurrence[2] - occurrence[1] for occurrence in items)
    found: list[_Occurrence] = []
    for one in left:
        candidates = by_field.get(one[0])
        if not candidates:
            continue
        field_starts = starts[one[0]]
        low = bisect_left(field_starts, one[1] - plan.distance - widest[one[0]])
        high = bisect_right(field_starts, one[2] + plan.distance)
        for other in candidates[low:high]:
            if _gap(one, other) <= plan.distance:
                found.append(
                    (
                        one[0],
                        min(one[1], other[1]),
                        max(one[2], other[2]),
                        one[3] + other[3],
                        one[4] + other[4],
                    )
                )
    if found:
        return found, None
    closest: int | None = None
    for one in left:
        candidates = by_field.get(one[0])
        if not candidates:
            continue
        field_starts = starts[one[0]]
        after = bisect_right(field_starts, one[2])
        nearby = candidates[after : after + 1]
        if after > 0:
            # Before `after`, a gap only depends on where an occurrence ends, and none that
            # starts more than the widest span before the last one can end later than it.
            bound = field_starts[after - 1] - widest[one[0]]
            nearby += candidates[bisect_left(field_starts, bound) : after]
        for other in nearby:
            gap = _gap(one, other)
            closest = gap if closest is None else min(closest, gap)
    return found, closest


# --------------------------------------------------------------------------- the matcher


@dataclass(frozen=True)
class _Outline:
    """What does not depend on the stemming language: worked out once per watchlist."""

    clauses: tuple[Node, ...]  # top-level clauses
    clause_texts: tuple[str, ...]  # rendered, for hits and explanations
    labels: tuple[str, ...]  # every term label, in query order
    feeds: frozenset[str]

    @classmethod
    def of(cls, watchlist: Watchlist) -> _Outline:
        clauses = _top_clauses(watchlist.query)
        return cls(
            clauses=clauses,
            clause_texts=tuple(render(node) for node in clauses),
            labels=tuple(dict.fromkeys(term_label(term) for term in leaves(watchlist.query))),
            feeds=frozenset(watchlist.feeds),
        )


@dataclass(frozen=True)
class _Compiled:
    order: int  # index of the watchlist in the configuration
    watchlist: Watchlist
    outline: _Outline
    plan: _Plan
    clauses: tuple[tuple[str, _Plan], ...]  # (rendered clause, plan) for the top-level clauses
    check: _Check  # the compiled `plan`


def _compile_watchlist(
    order: int, watchlist: Watchlist, outline: _Outline, language: str | None
) -> _Compiled:
    plans = tuple(_compile(node, language) for node in outline.clauses)
    plan: _Plan
    if isinstance(watchlist.query, And):
        plan = _AllOf(plans)
    elif isinstance(watchlist.query, Or):
        plan = _AnyOf(plans)
    else:
        plan = plans[0]
    clauses = tuple(zip(outline.clause_texts, plans, strict=True))
    return _Compiled(order, watchlist, outline, plan, clauses, _checker(plan))


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

    def __init__(self, language: str | None) -> None:
        self.language = language
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
            return (_STEM, _stem_of_form(text, self.language))
        if kind == _TITLE_FORM:
            return (_TITLE_STEM, _stem_of_form(text, self.language))
        return key

    def freeze(self) -> None:
        frozen = {
            kind: {key: (tuple(first), tuple(second)) for key, (first, second) in table.items()}
            for kind, table in self._adding.items()
        }
        self.by_stem, self.by_title_stem = frozen[_STEM], frozen[_TITLE_STEM]
        self.by_prefix = frozen[_PREFIX]
        self._adding = {kind: {} for kind in self._adding}

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


class _Partition:
    """Watchlists stemmed in one language (None: forms only), with their inverted index.

    Presearch has two stages: a watchlist is indexed under the keys of its cheapest required
    key group for the first stage, and under those of its second cheapest (its only one
    again, when it has one) for the second; it is a candidate only when the article reaches
    it in both stages (see `_required_groups`).
    """

    def __init__(
        self, language: str | None, entries: Iterable[tuple[int, Watchlist, _Outline]]
    ) -> None:
        self.language = language
        self.compiled: list[_Compiled] = []
        self.index = _KeyIndex(language)
        unindexed: list[int] = []  # no required group: verified on every article
        for order, watchlist, outline in entries:
            slot = len(self.compiled)
            compiled = _compile_watchlist(order, watchlist, outline, language)
            self.compiled.append(compiled)
            groups = sorted(_required_groups(compiled.plan), key=_set_cost)
            if not groups:
                unindexed.append(slot)
                continue
            self.index.add(groups[0], slot, 0)
            # With a single group, the second stage is the first again.
            self.index.add(groups[1] if len(groups) > 1 else groups[0], slot, 1)
        self.index.freeze()
        self.unindexed = frozenset(unindexed)
        # Flat views of `compiled` for the per-candidate loop.
        self.checks = [compiled.check for compiled in self.compiled]
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

    def candidates(self, doc: _DocView) -> list[int]:
        return sorted(self.index.reached(doc) | self.unindexed)


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


# --------------------------------------------------------------------------- hits


def _build_hit(compiled: _Compiled, views: Sequence[_FieldView]) -> HitResult:
    clauses: list[MatchedClause] = []
    matched_labels: set[str] = set()
    chains_by_field: tuple[list[_Chain], list[_Chain]] = ([], [])
    for text, plan in compiled.clauses:
        found = _occurrences(plan, views)
        if not found:
            continue
        in_field: tuple[list[_Chain], list[_Chain]] = ([], [])
        for field_index, _, _, occurrence_chains, labels in found:
            in_field[field_index].extend(occurrence_chains)
            matched_labels.update(labels)
        for field_index, field_chains in enumerate(in_field):
            if field_chains:
                view = views[field_index]
                words = _chain_words(view.field, field_chains)
                clauses.append(MatchedClause(clause=text, words=words, field=view.name))
                chains_by_field[field_index].extend(field_chains)
    matched = tuple(label for label in compiled.outline.labels if label in matched_labels)
    snippets = _snippets(views, chains_by_field)
    return HitResult(compiled.watchlist.name, matched, tuple(clauses), snippets)


def _chains_in(found: Iterable[_Occurrence], field_index: int) -> list[_Chain]:
    return [
        chain for occurrence in found if occurrence[0] == field_index for chain in occurrence[3]
    ]


def _chain_spans(field: AnalyzedField, chains: Iterable[_Chain]) -> list[tuple[int, int]]:
    """The character spans of ``chains``, distinct, in text order."""
    return sorted({(field.starts[chain[0]], field.ends[chain[-1]]) for chain in chains})


def _chain_words(field: AnalyzedField, chains: Iterable[_Chain]) -> tuple[str, ...]:
    """Each matched word or phrase as written in the article, deduplicated, in text order."""
    text = field.text
    written = dict.fromkeys([text[start:end] for start, end in _chain_spans(field, chains)])
    return tuple(dict.fromkeys(" ".join(words.split()) for words in written))


def _snippets(
    views: Sequence[_FieldView], chains_by_field: Sequence[Sequence[_Chain]]
) -> tuple[str, ...]:
    for field_index in (1, 0):  # the text's sentences first; the title only when the text has none
        field = views[field_index].field
        # The first sentences holding matches, in text order: walking the matches in order,
        # a sentence is looked up only for a match that lies past the current one's end.
        sentences: list[tuple[tuple[int, int], list[tuple[int, int]]]] = []
        for span in _chain_spans(field, chains_by_field[field_index]):
            if not sentences or span[0] >= sentences[-1][0][1]:
                if len(sentences) == MAX_SNIPPETS:
                    break
                sentences.append((field.sentence_span_at(span[0]), []))
            sentences[-1][1].append(span)
        if sentences:
            return tuple(_mark_sentence(field, sentence, spans) for sentence, spans in sentences)
    return ()


def _mark_sentence(
    field: AnalyzedField, sentence: tuple[int, int], spans: Sequence[tuple[int, int]]
) -> str:
    """The sentence with the matched ``spans`` (in text order) marked, cut to length."""
    start, end = sentence
    merged: list[list[int]] = []
    for span_start, span_end in spans:
        if merged and span_start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], span_end)
        else:
            merged.append([span_start, span_end])
    window_start, window_end = start, end
    if end - start > MAX_SNIPPET_CHARS:
        window_start = max(start, merged[0][0] - SNIPPET_CONTEXT_BEFORE)
        window_end = min(end, window_start + MAX_SNIPPET_CHARS)
    text = field.text
    parts: list[str] = ["…" if window_start > start else ""]
    cursor = window_start
    for span_start, span_end in merged:
        if span_start < cursor or span_end > window_end:
            continue
        parts.append(_plain(text[cursor:span_start]))
        parts.append(f"[[{_plain(text[span_start:span_end])}]]")
        cursor = span_end
    parts.append(_plain(text[cursor:window_end]))
    if window_end < end:
        parts.append("…")
    return " ".join("".join(parts).split())


def _plain(text: str) -> str:
    """Article text that cannot be mistaken for our [[marks]]."""
    return text.replace("[[", "[ [").replace("]]", "] ]")


# --------------------------------------------------------------------------- explain


def explain(
    watchlist: Watchlist,
    article: ArticleText,
    feed_name: str | None = None,
    feed_language: str | None = None,
) -> Explanation:
    """Whether ``watchlist`` matches ``article`` and why, clause by clause."""
    doc = analyze(article.title, article.text, article.language or feed_language)
    matcher = Matcher([watchlist])
    hits = matcher.match_analyzed(doc, feed_name)
    hit = hits[0] if hits else None

    language = _stemming_for(watchlist, doc)
    compiled = _compile_watchlist(0, watchlist, _Outline.of(watchlist), language)
    views = _DocView(doc, language).fields

    lines = [_language_line(doc, watchlist)]
    if not _in_scope(watchlist, feed_name):
        lines.append(
            f"feeds: the article's feed {feed_name!r} is not in {', '.join(watchlist.feeds)}"
        )
    if not _in_language_scope(watchlist, doc):
        lines.append(
            f"languages: the article is in {doc.language}, not in {', '.join(watchlist.languages)}"
        )
    any_of = isinstance(watchlist.query, Or)
    for text, plan in compiled.clauses:
        lines.append(_clause_line(text, plan, views, any_of))
    return Explanation(watchlist.name, hit is not None, tuple(lines), hit)


def _language_line(doc: AnalyzedText, watchlist: Watchlist) -> str:
    article = f"{doc.language} ({doc.language_source})" if doc.language else "unknown"
    stemming = _stemming_for(watchlist, doc)
    terms = f"terms stemmed as {stemming}" if stemming else "terms matched on their forms only"
    return f"language: article {article}; {terms}"


def _where(views: Sequence[_FieldView], found: Sequence[_Occurrence]) -> str:
    places: list[str] = []
    in_title = any(occurrence[0] == 0 for occurrence in found)
    if in_title:
        places.append("the title")
    text = views[1].field
    sentences = sorted({text.sentence_of(chain[0]) + 1 for chain in _chains_in(found, 1)})
    if sentences:
        shown = ", ".join(str(number) for number in sentences[:6]) + (
            ", …" if len(sentences) > 6 else ""
        )
        places.append(("sentence " if len(sentences) == 1 else "sentences ") + shown)
    return " and ".join(places)


def _words(views: Sequence[_FieldView], found: Sequence[_Occurrence]) -> str:
    words: dict[str, None] = {}
    for field_index, view in enumerate(views):
        words.update(dict.fromkeys(_chain_words(view.field, _chains_in(found, field_index))))
    shown = [f'"{word}"' for word in list(words)[:6]]
    return ", ".join(shown) + (", …" if len(words) > 6 else "")


def _clause_line(text: str, plan: _Plan, views: Sequence[_FieldView], any_of: bool) -> str:
    if isinstance(plan, _Without):
        found = _occurrences(plan.child, views)
        if found:
            return f"{text}: found {_words(views, found)} in {_where(views, found)}"
        return f"{text}: not found, as required"
    found = _occurrences(plan, views)
    if found:
        return f"{text}: found {_words(views, found)} in {_where(views, found)}"
    if found is not None:  # satisfied by an absence inside a group
        return f"{text}: satisfied"
    reason = _why_not(plan, views)
    outcome = "not found" if any_of else "not found, so no match"
    return f"{text}: {outcome}{reason}"


def _why_not(plan: _Plan, views: Sequence[_FieldView]) -> str:
    if isinstance(plan, _Within):
        left = _occurrences(plan.left, views)
        right = _occurrences(plan.right, views)
        if left and right:
            _, closest = _near_pairs(plan, views)
            if closest is None:
                return " (both sides appear, but never in the same field)"
            return f" (both sides appear, but never within {plan.distance} words: closest {closest} apart)"
        missing = "left" if not left else "right"
        return f" (its {missing} side does not appear)"
    if isinstance(plan, _AllOf):
        absent = [label for label in _labels(plan) if not _label_present(plan, label, views)]
        if absent:
            return f" (missing: {', '.join(absent[:6])})"
        return ""
    if isinstance(plan, _AnyOf) and len(plan.children) > 1:
        return " (none of its terms appears)"
    return ""


def _labels(plan: _Plan) -> list[str]:
    if isinstance(plan, _Leaf):
        return [plan.label]
    if isinstance(plan, _Without):
        return []
    if isinstance(plan, _Within):
        return _labels(plan.left) + _labels(plan.right)
    found: list[str] = []
    for child in plan.children:
        found.extend(_labels(child))
    return list(dict.fromkeys(found))


def _label_present(plan: _Plan, label: str, views: Sequence[_FieldView]) -> bool:
    if isinstance(plan, _Leaf):
        return plan.label == label and _leaf_holds(plan, views)
    if isinstance(plan, _Without):
        return False
    if isinstance(plan, _Within):
        return _label_present(plan.left, label, views) or _label_present(plan.right, label, views)
    return any(_label_present(child, label, views) for child in plan.children)
