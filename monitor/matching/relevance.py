"""Relevance: is a hit an article *about* the watchlist's topic, or one that mentions it in passing?

A boolean match says the words are there. An analyst wants to know whether the article is
about them. Every hit gets a score in [0, 1] from where its terms occur, computed from what
matching already found (the character spans of each top-level clause's matches) and the
article's sentences and paragraphs:

For each positive top-level clause (``A AND B NOT C`` has two: A and B), its *strength*:

=================================================  ======  ==========================================
evidence                                           weight  why
=================================================  ======  ==========================================
in the title                                       0.30    a headline names what the article is about
in the lead (the text's first two sentences)       0.15    news puts its subject first
in several sentences: ``1 - 0.6 ** (n - 1)``       0.30    a subject is discussed, a passing mention
  of the ``n`` sentences holding it                        is one sentence (1 → 0, 2 → 0.4, 4 → 0.78)
share of the text's sentences: ``min(1, 5 × n/N)``  0.15    one mention in a long article is less
=================================================  ======  ==========================================

The hit's score is the *weakest* clause's strength (an article about the Sahel that says
"terroriste" once is not about terrorism in the Sahel), plus 0.10 when every positive clause
meets in one sentence or in the title (the terms are about the same thing), capped at 1.

Matches that lie in an *aside* count for nothing: a related-link line ("Lire aussi : …",
"À lire aussi sur BBC Afrique", "Voir aussi", "Read more", "Related:"), a photo caption or
credit ("Légende image", "Source de l'image", "Crédit photo", "Image caption"). An aside runs
from its marker to the end of its line when it starts the line, else to the end of its
sentence: pages that inline such boxes mid-paragraph put the linked titles right after it.
A clause found only in asides has strength 0.

``in_passing`` is ``score < PASSING_BELOW``: the digest lists those hits compactly after the
others. The weights are set by hand from what each feature means, not fitted; the labelled
evaluation (tests/test_evaluation.py) measures them.

Adding a paragraph without matches never raises a score: it adds sentences (lowering the
share) and can only push matches out of the lead.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

from monitor.matching.analysis import AnalyzedField

__all__ = [
    "PASSING_BELOW",
    "ClauseEvidence",
    "Relevance",
    "all_of",
    "assess",
    "clause_strength",
]

PASSING_BELOW = 0.25
WEIGHT_TITLE = 0.30
WEIGHT_LEAD = 0.15
WEIGHT_SPREAD = 0.30
SPREAD_DECAY = 0.6
WEIGHT_SHARE = 0.15
SHARE_SATURATION = 5.0  # 20 % of the sentences or more: the full share weight
WEIGHT_TOGETHER = 0.10
LEAD_SENTENCES = 2


@dataclass(frozen=True)
class ClauseEvidence:
    """Where one clause matched: in the title or not, the character spans of its matches
    in the text, and the sentences holding them outside asides."""

    in_title: bool
    text_spans: Sequence[tuple[int, int]]
    sentences: frozenset[int]
    counted_spans: Sequence[int]  # starts of the spans outside asides

    @classmethod
    def of(
        cls, text: AnalyzedField, in_title: bool, spans: Sequence[tuple[int, int]]
    ) -> ClauseEvidence:
        if text.aside_ranges:
            counted = [start for start, _ in spans if not text.in_aside(start)]
        else:
            counted = [start for start, _ in spans]
        starts = text.sentence_starts
        return cls(
            in_title=in_title,
            text_spans=spans,
            sentences=frozenset([bisect_right(starts, start) - 1 for start in counted]),
            counted_spans=counted,
        )

    @classmethod
    def pooled(cls, clauses: Sequence[ClauseEvidence]) -> ClauseEvidence:
        """The evidence of alternatives taken together (synonyms in an OR)."""
        return cls(
            in_title=any(clause.in_title for clause in clauses),
            text_spans=sorted({span for clause in clauses for span in clause.text_spans}),
            sentences=frozenset().union(*(clause.sentences for clause in clauses)),
            counted_spans=sorted({start for clause in clauses for start in clause.counted_spans}),
        )


@dataclass(frozen=True)
class Relevance:
    score: float  # in [0, 1]
    in_passing: bool
    evidence: str  # in words, e.g. "in the title and in 6 sentences across 4 paragraphs"


def clause_strength(text: AnalyzedField, clause: ClauseEvidence) -> float:
    """How strongly one clause of the query is present: title, lead, spread and share of the
    sentences holding its matches outside asides."""
    sentences = clause.sentences
    strength = WEIGHT_TITLE if clause.in_title else 0.0
    if any(index < LEAD_SENTENCES for index in sentences):
        strength += WEIGHT_LEAD
    if sentences:
        count = len(sentences)
        strength += WEIGHT_SPREAD * (1 - SPREAD_DECAY ** (count - 1))
        strength += WEIGHT_SHARE * min(1.0, SHARE_SATURATION * count / text.counted_sentences)
    return strength


def all_of(strengths: Sequence[float]) -> float:
    """The strength of clauses that are all required: the weakest one's."""
    return min(strengths, default=0.0)


def assess(text: AnalyzedField, strength: float, clauses: Sequence[ClauseEvidence]) -> Relevance:
    """The relevance of a hit: `strength` is the query's (`clause_strength` combined through
    the query's ANDs and ORs), `clauses` where its positive top-level clauses matched."""
    sentence_sets = [clause.sentences for clause in clauses]
    together = bool(clauses) and (
        all(clause.in_title for clause in clauses) or bool(frozenset.intersection(*sentence_sets))
    )
    score = round(min(1.0, strength + (WEIGHT_TOGETHER if together else 0.0)), 3)
    in_passing = score < PASSING_BELOW
    counted: frozenset[int] = frozenset().union(*sentence_sets)
    evidence = _in_words(
        in_title=any(clause.in_title for clause in clauses),
        sentences=sorted(counted),
        paragraphs=_paragraphs(text, clauses),
        total=len(text.sentence_starts),
        only_asides=not counted
        and not any(clause.in_title for clause in clauses)
        and any(clause.text_spans for clause in clauses),
        in_passing=in_passing,
    )
    return Relevance(score=score, in_passing=in_passing, evidence=evidence)


def _paragraphs(text: AnalyzedField, clauses: Sequence[ClauseEvidence]) -> int:
    """How many paragraphs hold the clauses' matches outside asides."""
    starts = text.paragraph_starts
    if len(starts) == 1:
        return 1 if any(clause.counted_spans for clause in clauses) else 0
    return len(
        {bisect_right(starts, start) - 1 for clause in clauses for start in clause.counted_spans}
    )


def _in_words(
    *,
    in_title: bool,
    sentences: Sequence[int],
    paragraphs: int,
    total: int,
    only_asides: bool,
    in_passing: bool,
) -> str:
    parts: list[str] = []
    if in_title:
        parts.append("in the title")
    if len(sentences) == 1:
        parts.append(f"once, in sentence {sentences[0] + 1} of {total}")
    elif sentences:
        where = f"in {len(sentences)} of {total} sentences"
        if paragraphs > 1:
            where += f" across {paragraphs} paragraphs"
        parts.append(where)
    if only_asides:
        parts.append("only inside a related-link line or a caption")
    text = " and ".join(parts) if parts else "nowhere in the text"
    return f"{text}: in passing" if in_passing else text
