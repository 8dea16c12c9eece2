"""Verification: a plan compiled to nested closures that say whether an article matches.

This is the per-candidate hot path: every watchlist that presearch leaves is checked here,
mostly with set operations on the article's merged keys (`_DocView`); only phrases, field
scopes, prefixes and ``NEAR`` reach positions (`monitor.matching.occurrences`). A ``NEAR`` of
plain words and phrases, the usual one, is checked from their positions directly.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left, bisect_right
from collections.abc import Callable

from monitor.matching.occurrences import (
    _leaf_holds,
    _near_pairs,
    _near_spans,
    _positional_only,
    _sequence_matches,
)
from monitor.matching.plan import (
    _FIELD_INDEX,
    _FORM,
    _PREFIX,
    _STEM,
    _AllOf,
    _AnyOf,
    _keys,
    _Leaf,
    _Plan,
    _set_cost,
    _Step,
    _Within,
    _Without,
)
from monitor.matching.views import _DocView, _FieldView

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
