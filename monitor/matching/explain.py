"""Explanations: whether a watchlist matches an article and why, clause by clause.

For people, not for the hot path (`monitor explain`): the article is analysed and matched as
`Matcher.match` would, then each top-level clause is evaluated on its own with the positional
evaluator (`monitor.matching.occurrences`) to say where it was found, or why not (a missing
term, the closest a ``NEAR``'s sides came).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from monitor.matching.analysis import AnalyzedText, analyze
from monitor.matching.hits import _chain_words
from monitor.matching.matcher import (
    Matcher,
    _in_language_scope,
    _in_scope,
    _stemming_for,
)
from monitor.matching.occurrences import (
    _Chain,
    _leaf_holds,
    _near_pairs,
    _Occurrence,
    _occurrences,
)
from monitor.matching.plan import _AllOf, _AnyOf, _Leaf, _Outline, _Plan, _Within, _Without
from monitor.matching.presearch import _compile_watchlist
from monitor.matching.views import _DocView, _FieldView
from monitor.models import ArticleText, HitResult, Watchlist
from monitor.query import Or


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
    compiled = _compile_watchlist(watchlist, _Outline.of(watchlist), language)
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


def _chains_in(found: Iterable[_Occurrence], field_index: int) -> list[_Chain]:
    return [
        chain for occurrence in found if occurrence[0] == field_index for chain in occurrence[3]
    ]


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
