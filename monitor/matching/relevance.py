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

A query's *strength* follows its structure: an AND is as strong as its weakest clause (an
article about the Sahel that says "terroriste" once is not about terrorism in the Sahel), an
OR as its strongest alternative, with plain synonyms pooled.

Matches that lie in an *aside* count for nothing: a related-link line ("Lire aussi : …",
"À lire aussi sur BBC Afrique", "Voir aussi", "Read more", "Related:"), a photo caption or
credit ("Légende image", "Source de l'image", "Crédit photo", "Image caption"). An aside runs
from its marker to the end of its line when it starts the line, else to the end of its
sentence: pages that inline such boxes mid-paragraph put the linked titles right after it.
A clause found only in asides has strength 0, and a hit of strength 0 scores 0.

The score is a logistic model of five inputs (`RelevanceFeatures`): the strength; whether
every positive clause meets in one sentence (or all in the title); whether any is in the
title; the length of the text (log of its sentences: one mention weighs less in a long
article); and, when the watchlist has a `topic:`, how often the topic's own words occur
(log of 1 + occurrences per 100 words, stemmed in the article's language, stopwords and
words of one or two letters left out). Its weights were fitted on the labelled evaluation
(``scripts/fit_relevance.py``, which prints them with their cross-validated figures), one
set for watchlists with a topic and one without. The score estimates the chance that an
analyst wants the hit in the main list; ``in_passing`` is ``score < PASSING_BELOW`` (0.5:
more likely not).

Adding a paragraph without matches and without the topic's words never raises a score: it
adds sentences and words (lowering the share and the topic's density, raising the length)
and can only push matches out of the lead; every weight has the sign that keeps it so.
"""

from __future__ import annotations

import hashlib
import math
import unicodedata
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from functools import lru_cache

from monitor.matching.analysis import AnalyzedField
from monitor.matching.tokens import STOPWORDS, _tokenize, stem_forms
from monitor.models import RelevanceFeatures

__all__ = [
    "MODEL_VERSION",
    "PASSING_BELOW",
    "WITHOUT_TOPIC",
    "WITH_TOPIC",
    "ClauseEvidence",
    "Model",
    "Relevance",
    "all_of",
    "assess",
    "clause_strength",
    "topic_density",
    "topic_stems",
]

PASSING_BELOW = 0.5
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
class Model:
    """The weights of the logistic model: score = 1 / (1 + exp(-z)) with
    z = intercept + strength·s + together·t + in_title·i + length·ln(sentences)
    + topic·ln(1 + topic words per 100 words)."""

    intercept: float
    strength: float  # > 0
    together: float  # >= 0
    in_title: float  # >= 0
    length: float  # <= 0
    topic: float = 0.0  # >= 0; 0 in the model without a topic

    def score(self, features: RelevanceFeatures) -> float:
        if features.strength <= 0.0:
            return 0.0  # no clause outside asides, none in the title: nothing to weigh
        z = (
            self.intercept
            + self.strength * features.strength
            + self.together * features.together
            + self.in_title * features.in_title
            + self.length * math.log(max(1, features.sentences))
            + self.topic * math.log1p(features.topic_density or 0.0)
        )
        return 1.0 / (1.0 + math.exp(-z))


# Fitted by scripts/fit_relevance.py on the 430 judged pairs of tests/data/evaluation (253
# hits); leave-one-watchlist-out figures in README ("Relevance").
WITHOUT_TOPIC = Model(intercept=-0.77, strength=8.14, together=0.26, in_title=0.68, length=-0.65)
WITH_TOPIC = Model(
    intercept=-3.32, strength=7.38, together=0.40, in_title=0.35, length=-0.27, topic=1.55
)


# What a stored hit's score was computed by. Derived from the weights, so a refit changes it
# by itself; raise FEATURES_REVISION when a change to how the inputs are worked out (the
# strength's points, asides, sentences, the topic's words) changes scores. Hits not yet
# sent whose version differs are scored again at start (`monitor.service.rescore_hits`), so
# the next digest after an upgrade ranks and splits every hit by one model.
FEATURES_REVISION = 1
MODEL_VERSION = (
    f"{FEATURES_REVISION}."
    + hashlib.sha256(
        repr(
            (
                WITHOUT_TOPIC,
                WITH_TOPIC,
                PASSING_BELOW,
                (WEIGHT_TITLE, WEIGHT_LEAD, WEIGHT_SPREAD, SPREAD_DECAY, WEIGHT_SHARE),
                (SHARE_SATURATION, WEIGHT_TOGETHER, LEAD_SENTENCES),
            )
        ).encode()
    ).hexdigest()[:8]
)


@dataclass(frozen=True)
class Relevance:
    score: float  # in [0, 1]
    in_passing: bool
    evidence: str  # in words, e.g. "in the title and in 6 sentences across 4 paragraphs"
    features: RelevanceFeatures


@lru_cache(maxsize=65536)
def topic_stems(topic: str, language: str | None) -> tuple[str, ...]:
    """The distinct stems (in ``language``) of a topic's words, without stopwords and words
    of one or two letters."""
    forms = [
        form
        for form in dict.fromkeys(_tokenize(unicodedata.normalize("NFC", topic)).forms)
        if len(form) > 2 and form not in STOPWORDS and not form.isdigit()
    ]
    return tuple(dict.fromkeys(stem_forms(forms, language)))


def topic_density(
    stems: Sequence[str],
    fields: Sequence[tuple[AbstractSet[str], Mapping[str, Sequence[int]]]],
    words: int,
) -> float:
    """Occurrences of the topic's ``stems`` per 100 words, in fields given by the set of
    their stems and their token index by stem; ``words`` is the fields' token count. The
    set is asked first: an index in another language works a stem out on demand."""
    found = 0
    for present, index in fields:
        for stem in stems:
            if stem in present:
                found += len(index[stem])
    return 100.0 * found / max(1, words)


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


def assess(
    text: AnalyzedField,
    strength: float,
    clauses: Sequence[ClauseEvidence],
    topic_density: float | None = None,
) -> Relevance:
    """The relevance of a hit: `strength` is the query's (`clause_strength` combined through
    the query's ANDs and ORs), `clauses` where its positive top-level clauses matched,
    `topic_density` the topic's words per 100 words (None: the watchlist has no topic)."""
    sentence_sets = [clause.sentences for clause in clauses]
    together = bool(clauses) and (
        all(clause.in_title for clause in clauses) or bool(frozenset.intersection(*sentence_sets))
    )
    in_title = any(clause.in_title for clause in clauses)
    features = RelevanceFeatures(
        strength=strength,
        together=together,
        in_title=in_title,
        sentences=text.counted_sentences,
        topic_density=topic_density,
    )
    model = WITHOUT_TOPIC if topic_density is None else WITH_TOPIC
    score = round(model.score(features), 3)
    in_passing = score < PASSING_BELOW
    counted: frozenset[int] = frozenset().union(*sentence_sets)
    evidence = _in_words(
        in_title=in_title,
        sentences=sorted(counted),
        paragraphs=_paragraphs(text, clauses),
        total=len(text.sentence_starts),
        only_asides=not counted and not in_title and any(clause.text_spans for clause in clauses),
        topic_density=topic_density,
        in_passing=in_passing,
    )
    return Relevance(score=score, in_passing=in_passing, evidence=evidence, features=features)


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
    topic_density: float | None,
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
    if topic_density is not None:
        text += f"; the topic's words {topic_density:.1f} times per 100 words"
    return f"{text}: in passing" if in_passing else text
