"""Hits: a verified match turned into a `HitResult` with its clauses, words and snippets.

Only a real match gets here. Each top-level clause that matched reports the words as written
in the article, per field; the snippets are the first `MAX_SNIPPETS` sentences of the text
holding matches (the title's when the text has none), with the matched words marked
``[[like this]]`` and each cut to `MAX_SNIPPET_CHARS` around its first match.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from monitor.matching.analysis import AnalyzedField
from monitor.matching.occurrences import _Chain, _occurrences
from monitor.matching.plan import _AllOf, _AnyOf, _Plan, _Without
from monitor.matching.presearch import _Compiled
from monitor.matching.relevance import (
    ClauseEvidence,
    all_of,
    assess,
    clause_strength,
    topic_density,
    topic_stems,
)
from monitor.matching.views import _FieldView
from monitor.models import HitResult, MatchedClause

MAX_SNIPPETS = 3
MAX_SNIPPET_CHARS = 400
SNIPPET_CONTEXT_BEFORE = 150


def _build_hit(compiled: _Compiled, views: Sequence[_FieldView]) -> HitResult:
    clauses: list[MatchedClause] = []
    matched_labels: set[str] = set()
    chains_by_field: tuple[list[_Chain], list[_Chain]] = ([], [])
    evidence: list[ClauseEvidence] = []
    known: dict[int, ClauseEvidence] = {}  # id of a top-level clause's plan -> its evidence
    for text, plan in compiled.clauses:
        found = _occurrences(plan, views)
        if not found:
            continue  # a NOT clause, satisfied by an absence
        in_field: tuple[list[_Chain], list[_Chain]] = ([], [])
        for field_index, _, _, occurrence_chains, labels in found:
            in_field[field_index].extend(occurrence_chains)
            matched_labels.update(labels)
        text_field = views[1].field
        clause_evidence = ClauseEvidence.of(
            text_field, bool(in_field[0]), _chain_spans(text_field, in_field[1])
        )
        evidence.append(clause_evidence)
        known[id(plan)] = clause_evidence
        for field_index, field_chains in enumerate(in_field):
            if field_chains:
                view = views[field_index]
                words = _chain_words(view.field, field_chains)
                clauses.append(MatchedClause(clause=text, words=words, field=view.name))
                chains_by_field[field_index].extend(field_chains)
    matched = tuple(label for label in compiled.outline.labels if label in matched_labels)
    snippets = _snippets(views, chains_by_field)
    strength = _plan_strength(compiled.plan, views, known) or 0.0
    topic = compiled.watchlist.topic
    density = None
    if topic:
        title_view, text_view = views
        density = topic_density(
            topic_stems(topic, text_view.language),
            ((title_view.stems, title_view.by_stem), (text_view.stems, text_view.by_stem)),
            len(title_view.field.forms) + len(text_view.field.forms),
        )
    relevance = assess(views[1].field, strength, evidence, density)
    return HitResult(
        compiled.watchlist.name,
        matched,
        tuple(clauses),
        snippets,
        relevance=relevance.score,
        in_passing=relevance.in_passing,
        evidence=relevance.evidence,
        features=relevance.features,
    )


def _plan_strength(
    plan: _Plan, views: Sequence[_FieldView], known: Mapping[int, ClauseEvidence]
) -> float | None:
    """How strongly the article holds ``plan``, following the query's structure: an AND is
    as strong as its weakest part, an OR as its strongest alternative, where the plain words
    and phrases of an OR count as one (synonyms spread over the text add up). None for a NOT,
    which says nothing about what the article is about. ``known`` holds the evidence already
    gathered for the top-level clauses."""
    if isinstance(plan, _Without):
        return None
    if isinstance(plan, _AllOf):
        parts: list[float] = []
        for child in plan.children:
            strength = _plan_strength(child, views, known)
            if strength is None:
                continue
            parts.append(strength)
        return all_of(parts) if parts else None
    if isinstance(plan, _AnyOf):
        composite = [child for child in plan.children if isinstance(child, _AllOf | _AnyOf)]
        simple = [child for child in plan.children if not isinstance(child, _AllOf | _AnyOf)]
        strengths = [_plan_strength(child, views, known) for child in composite]
        if simple:
            strengths.append(_simple_strength(simple, views, known))
        present = [strength for strength in strengths if strength is not None]
        return max(present) if present else None
    return _simple_strength([plan], views, known)


def _simple_strength(
    plans: Sequence[_Plan], views: Sequence[_FieldView], known: Mapping[int, ClauseEvidence]
) -> float | None:
    """The strength of words, phrases and NEARs taken together (their matches pooled)."""
    text = views[1].field
    gathered: list[ClauseEvidence] = []
    for plan in plans:
        if isinstance(plan, _Without):
            continue
        found = known.get(id(plan))
        if found is None:
            in_title = False
            chains: list[_Chain] = []
            for field_index, _, _, occurrence_chains, _ in _occurrences(plan, views) or ():
                if field_index == 0:
                    in_title = True
                else:
                    chains.extend(occurrence_chains)
            found = ClauseEvidence.of(text, in_title, _chain_spans(text, chains))
        gathered.append(found)
    if not gathered:
        return None
    pooled = gathered[0] if len(gathered) == 1 else ClauseEvidence.pooled(gathered)
    return clause_strength(text, pooled)


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
