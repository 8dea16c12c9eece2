"""Where a plan matches in an article: phrases, occurrences, NEAR pairs and spans.

The positional side of verification, read by the checkers (`monitor.matching.verify`) for
phrases and ``NEAR``, by hits (the words and snippets of a match) and by explanations:

* `_sequence_matches`: a phrase's words at consecutive positions;
* `_occurrences`: every place a plan is satisfied, with the token chains and term labels
  that satisfy it, and `_near_pairs` for ``NEAR`` (or the closest its sides came);
* `_spans`, `_near_spans`: just the (first, last) positions, for plans made of words, ``OR``
  and ``NEAR`` only;
* `_holds`: the plain evaluator of a plan, the reference the compiled checkers must agree with.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence

from monitor.matching.plan import _AllOf, _AnyOf, _Leaf, _Plan, _Step, _Within, _Without
from monitor.matching.views import _FieldView

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
    # One occurrence per distinct span (field, first, last position): the words of its first
    # pair, the labels of all. A chain of NEARs over a frequent word would otherwise multiply
    # its pairs at every level (9 sides of "le" over a 360-word article: out of memory);
    # distinct spans are at most the square of the positions, at every level.
    merged: dict[tuple[int, int, int], _Occurrence] = {}
    for one in left:
        candidates = by_field.get(one[0])
        if not candidates:
            continue
        field_starts = starts[one[0]]
        low = bisect_left(field_starts, one[1] - plan.distance - widest[one[0]])
        high = bisect_right(field_starts, one[2] + plan.distance)
        for other in candidates[low:high]:
            if _gap(one, other) <= plan.distance:
                span = (one[0], min(one[1], other[1]), max(one[2], other[2]))
                labels = one[4] + other[4]
                known = merged.get(span)
                if known is None:
                    merged[span] = (*span, one[3] + other[3], labels)
                elif not set(labels) <= set(known[4]):
                    merged[span] = (*span, known[3], tuple(dict.fromkeys(known[4] + labels)))
    found = list(merged.values())
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


# --------------------------------------------------------------------------- spans


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
    # Distinct spans only: see `_near_pairs` (at most the square of the positions).
    return sorted(set(found))
