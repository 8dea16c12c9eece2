"""Articles analysed for matching: `analyze` turns a title and a text into an `AnalyzedText`.

Pure: text in, `AnalyzedText` out. The words come from `monitor.matching.tokens` (normalise,
tokenise, stem, detect the language), the same functions that read watchlist terms, so a term
and the article word it should find always meet in the same form. This module owns the
analysed fields: their tokens, their indexes by form and by stem, and their sentences.

Sentences: split after ``. ! ? …`` (and closing quotes) followed by white space, and at line
breaks; the title is one sentence of its own.

Cost: analysis runs on every article, so tokens are kept as parallel tuples, each distinct
form is stemmed once, and the token indexes by form and by stem (the article's small inverted
index, which phrases, NEAR and hits read) are built in one C-level pass each. Sentences are
found only where a snippet or an explanation needs them: a hit's snippet looks for the
boundaries around its words, not through the whole text.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import chain, compress

from monitor.matching.tokens import Token, _tokenize, detect_language, stem_forms
from monitor.text import (
    ASIDE_MARKER,
    ASIDE_WORDS,
    MAX_ASIDE_LINE_CHARS,
    MAX_ASIDE_WORD_OFFSET,
    MAX_MARKER_CHARS,
    primary_language,
)

# A boundary is a run of sentence-ending punctuation (then closing quotes) followed by white
# space, or a line break with the white space around it. Each match starts on one of
# ``.!?…`` or a line break, which lets the engine skip to those characters instead of trying
# every position; white space before a line break is trimmed by `_sentence_spans`.
_SENTENCE_END = re.compile(r"[.!?…\n](?:(?<=[.!?…])[.!?…]*(?:\s?[\"'»”’)\]])*\s+|(?<=\n)\s*)")


# --------------------------------------------------------------------------- analysed text


@dataclass(frozen=True)
class AnalyzedField:
    """One field (``title`` or ``text``) of an article, analysed.

    Tokens are kept as parallel tuples with their indexes by form and by stem; what only
    explanations and tests read (all sentences, `Token` objects) is computed on first use.
    """

    name: str
    text: str  # NFC form of the field; token spans index into it
    positions: tuple[int, ...]  # per token: word position in the field
    end_positions: tuple[int, ...]  # last position covered (> position for a joined compound)
    starts: tuple[int, ...]  # character span in `text`
    ends: tuple[int, ...]
    forms: tuple[str, ...]  # folded
    stem_of: Mapping[str, str]  # distinct folded form -> stem in the document's language
    stems: frozenset[str]  # the values of `stem_of`
    by_form: Mapping[str, Sequence[int]]  # folded form -> token indexes, ascending
    by_stem: Mapping[str, Sequence[int]]  # stem in the document's language -> token indexes
    one_sentence: bool = False  # the title: one sentence whatever its punctuation

    def stems_of(self, language: str | None) -> Mapping[str, str]:
        """Distinct form -> stem in ``language`` (the document's: `stem_of`)."""
        forms = list(self.stem_of)
        return dict(zip(forms, stem_forms(forms, language), strict=True))

    def index_by(self, stem_of: Mapping[str, str]) -> Mapping[str, Sequence[int]]:
        """Stem -> token indexes, given each distinct form's stem in another language
        (`stems_of`: for watchlists that fix theirs)."""
        return StemIndex(self.by_form, stem_of)

    @cached_property
    def _forms_text(self) -> str:
        """The distinct forms, each after a line break (which no form holds): a prefix is
        searched for as a substring, in C, with no sort or set of the forms to build first."""
        return "\n" + "\n".join(self.stem_of) if self.stem_of else ""

    def has_prefix(self, prefix: str) -> bool:
        """Whether some form of the field starts with ``prefix``."""
        return "\n" not in prefix and "\n" + prefix in self._forms_text

    def forms_with_prefix(self, prefix: str) -> list[str]:
        """The distinct forms of the field that start with ``prefix``."""
        joined, needle = self._forms_text, "\n" + prefix
        found: list[str] = []
        at = -1 if "\n" in prefix else joined.find(needle)
        while at >= 0:
            end = joined.find("\n", at + 1)
            if end < 0:
                end = len(joined)
            found.append(joined[at + 1 : end])
            at = joined.find(needle, end)
        return found

    @cached_property
    def sentences(self) -> tuple[tuple[int, int], ...]:
        """Character spans of the sentences."""
        if self.one_sentence:
            return ((0, len(self.text)),)
        return tuple(_sentence_spans(self.text))

    @cached_property
    def _sentence_starts(self) -> list[int]:
        return [start for start, _ in self.sentences[1:]]

    @cached_property
    def sentence_starts(self) -> list[int]:
        """Where each sentence starts: ``bisect_right(sentence_starts, offset) - 1`` is the
        index of the sentence holding ``offset``. The starts of `sentences`, found in half
        the time when the spans themselves are not needed (relevance needs only these)."""
        if "sentences" in self.__dict__ or self.one_sentence:
            return [start for start, _ in self.sentences]
        return _sentence_starts(self.text)

    @cached_property
    def paragraph_starts(self) -> list[int]:
        """Where each paragraph (line) starts."""
        starts = [0]
        at = self.text.find("\n")
        while at >= 0:
            starts.append(at + 1)
            at = self.text.find("\n", at + 1)
        return starts

    @cached_property
    def aside_ranges(self) -> list[tuple[int, int]]:
        """Related-link lines and captions (see `asides`), looked for only around the
        words markers are made of: most texts have none of them, found by a dict lookup."""
        if self.one_sentence:
            return []
        by_form, starts = self.by_form, self.starts
        near = [starts[index] for word in ASIDE_WORDS for index in by_form.get(word, ())]
        return asides(self.text, near) if near else []

    def in_aside(self, offset: int) -> bool:
        ranges = self.aside_ranges
        index = bisect_right(ranges, (offset, len(self.text) + 1)) - 1
        return index >= 0 and ranges[index][0] <= offset < ranges[index][1]

    @cached_property
    def counted_sentences(self) -> int:
        """Sentences outside asides (at least 1)."""
        starts = self.sentence_starts
        inside = sum(  # the ranges are sorted and apart (`asides` merges them)
            bisect_left(starts, end) - bisect_left(starts, start)
            for start, end in self.aside_ranges
        )
        return max(1, len(starts) - inside)

    def sentence_of(self, index: int) -> int:
        """0-based sentence index of token ``index``."""
        return bisect_right(self._sentence_starts, self.starts[index])

    def sentence_span_at(self, offset: int) -> tuple[int, int]:
        """Character span of the sentence holding ``offset``, the start of a token:
        ``sentences[sentence_of(index)]`` for that token.

        Snippets need the sentences of a few tokens only, so unless all sentences are known
        already, just the boundaries around this offset are looked for.
        """
        if self.one_sentence:
            return (0, len(self.text))
        if "sentences" in self.__dict__:
            return self.sentences[bisect_right(self._sentence_starts, offset)]
        return _sentence_span_at(self.text, offset)

    @cached_property
    def tokens(self) -> tuple[Token, ...]:
        """The tokens one tuple each (matching reads the parallel tuples instead)."""
        return tuple(
            Token(position, end_position, start, end, form, self.sentence_of(index))
            for index, (position, end_position, start, end, form) in enumerate(
                zip(
                    self.positions,
                    self.end_positions,
                    self.starts,
                    self.ends,
                    self.forms,
                    strict=True,
                )
            )
        )


@dataclass(frozen=True)
class AnalyzedText:
    """An article analysed once for every watchlist."""

    language: str | None  # stemming language (ISO 639-1), None = forms only
    language_source: str  # "declared", "detected" or "unknown"
    title: AnalyzedField
    text: AnalyzedField

    @property
    def fields(self) -> tuple[AnalyzedField, AnalyzedField]:
        return (self.title, self.text)


_NOT_SPACE = re.compile(r"\S")
_ASIDE_SENTENCE_END = re.compile(r"[.!?…](?=\s|$)", re.MULTILINE)


def asides(text: str, near: Iterable[int] | None = None) -> list[tuple[int, int]]:
    """Character ranges of related-link lines and captions in ``text`` (one paragraph a line):
    from the marker to the end of its line when the line starts with it and is short, else to
    the end of its sentence, where pages that inline such boxes put the linked titles.

    ``near``: the offsets of the words a marker is built on (`ASIDE_WORDS`), when the caller
    knows them: the pattern is then tried only around them, not over the whole text.
    """
    ranges: list[tuple[int, int]] = []
    for marker in _markers(text, near):
        start = marker.start()
        line_start = text.rfind("\n", 0, start) + 1
        line_end = text.find("\n", start)
        if line_end < 0:
            line_end = len(text)
        if not text[line_start:start].strip() and line_end - line_start <= MAX_ASIDE_LINE_CHARS:
            end = line_end
        else:
            stop = _ASIDE_SENTENCE_END.search(text, marker.end(), line_end)
            end = stop.end() if stop else line_end
        if ranges and start <= ranges[-1][1]:
            ranges[-1] = (ranges[-1][0], max(ranges[-1][1], end))
        else:
            ranges.append((start, end))
    return ranges


def _markers(text: str, near: Iterable[int] | None) -> Iterator[re.Match[str]]:
    if near is None:
        yield from ASIDE_MARKER.finditer(text)
        return
    after = 0
    for at in sorted(near):
        window_start = max(after, at - MAX_ASIDE_WORD_OFFSET)
        marker = ASIDE_MARKER.search(text, window_start, at + MAX_MARKER_CHARS)
        if marker is not None and marker.start() <= at:
            after = marker.end()
            yield marker


def _sentence_starts(text: str) -> list[int]:
    """The starts of `_sentence_spans`, without working out where each sentence ends."""
    starts: list[int] = []
    previous = 0
    has_text = _NOT_SPACE.search
    for boundary in _SENTENCE_END.finditer(text):
        # A sentence is kept when it holds more than white space: a boundary of
        # punctuation always does (the punctuation itself), a line break never.
        start, end = boundary.span()
        if text[start] != "\n" or has_text(text, previous, start):
            starts.append(previous)
        previous = end
    if has_text(text, previous):
        starts.append(previous)
    return starts or [0]


def _sentence_spans(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    start = 0
    for boundary in _SENTENCE_END.finditer(text):
        boundary_start = boundary.start()
        if text[boundary_start] == "\n":
            end = start + len(text[start:boundary_start].rstrip())
        else:
            end = boundary_start + len(boundary.group().rstrip())
        if text[start:end].strip():
            spans.append((start, end))
        start = boundary.end()
    if text[start:].strip():
        spans.append((start, len(text)))
    return spans or [(0, len(text))]


# What a sentence boundary is made of; a position after any other character is never inside one.
_OUTSIDE_BOUNDARY = re.compile(r"[^.!?…\"'»”’)\]\s]")
_SENTENCE_SEARCH_WINDOW = 128


def _sentence_span_at(text: str, offset: int) -> tuple[int, int]:
    """The `_sentence_spans` span holding ``offset``, the start of a token (so outside any
    boundary), found from the boundaries around it only.

    The text before ``offset`` is scanned back in growing regions, each ending where the
    previous one began: right after a character that no boundary holds, so that no boundary
    straddles two regions and each scan finds the boundaries one from the start would.
    """
    window = _SENTENCE_SEARCH_WINDOW
    scan_to = offset
    while True:
        scan_from = max(0, scan_to - window)
        if scan_from > 0:
            anchor = _OUTSIDE_BOUNDARY.search(text, scan_from - 1, scan_to)
            if anchor is None:
                window *= 2
                continue
            scan_from = anchor.end()
        last = deque(_SENTENCE_END.finditer(text, scan_from, scan_to), maxlen=1)
        if last:
            start = last[0].end()
            break
        if scan_from == 0:
            start = 0
            break
        scan_to = scan_from
        window *= 2
    following = _SENTENCE_END.search(text, offset)
    if following is None:
        return (start, len(text))
    boundary_start = following.start()
    if text[boundary_start] == "\n":
        return (start, start + len(text[start:boundary_start].rstrip()))
    return (start, boundary_start + len(following.group().rstrip()))


class StemIndex(Mapping[str, Sequence[int]]):
    """Stem -> token indexes, ascending, for stems in another language than the analysis's.

    Worked out per stem when asked, from the index by form: a check needs the positions of a
    few stems. Indexing every token again cost 0.4 ms on a long article, and inverting the
    forms' stems 0.1 ms; picking one stem's forms out is a C-level pass of about 10 us.
    """

    __slots__ = ("_by_form", "_forms", "_found", "_stems")

    def __init__(self, by_form: Mapping[str, Sequence[int]], stem_of: Mapping[str, str]):
        self._by_form = by_form
        self._forms = list(stem_of)
        self._stems = list(stem_of.values())
        self._found: dict[str, Sequence[int]] = {}

    def __getitem__(self, stem: str) -> Sequence[int]:
        found = self._found.get(stem)
        if found is None:
            forms = list(compress(self._forms, map(stem.__eq__, self._stems)))
            if not forms:
                raise KeyError(stem)
            by_form = self._by_form
            found = self._found[stem] = (
                by_form[forms[0]]
                if len(forms) == 1
                else sorted(chain.from_iterable(map(by_form.__getitem__, forms)))
            )
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(self._stems))

    def __len__(self) -> int:
        return len(set(self._stems))


def _index_tokens(
    token_keys: Iterable[str], keys: Iterable[str], count: int
) -> dict[str, list[int]]:
    """Key -> indexes of the tokens with that key, ascending; ``token_keys`` has one per token.

    One C-level pass (``list.append`` mapped over the tokens): an article's index costs
    about a tenth of a millisecond instead of three times that in a Python loop.
    """
    index: dict[str, list[int]] = {key: [] for key in keys}
    deque(map(list.append, map(index.__getitem__, token_keys), range(count)), maxlen=0)
    return index


def analyze_field(
    name: str, text: str, language: str | None, *, one_sentence: bool = False
) -> AnalyzedField:
    text = unicodedata.normalize("NFC", text)
    tokens = _tokenize(text)
    distinct = list(dict.fromkeys(tokens.forms))  # each form stemmed once
    stem_of = dict(zip(distinct, stem_forms(distinct, language), strict=True))
    count = len(tokens.forms)
    return AnalyzedField(
        name=name,
        text=text,
        positions=tuple(tokens.positions),
        end_positions=tuple(tokens.end_positions),
        starts=tuple(tokens.starts),
        ends=tuple(tokens.ends),
        forms=tuple(tokens.forms),
        stem_of=stem_of,
        stems=frozenset(stem_of.values()),
        by_form=_index_tokens(tokens.forms, distinct, count),
        by_stem=_index_tokens(map(stem_of.__getitem__, tokens.forms), stem_of.values(), count),
        one_sentence=one_sentence,
    )


def analyze(title: str, text: str, language: str | None) -> AnalyzedText:
    """Analyse an article once; ``language`` None means detect it from title and text."""
    declared = primary_language(language)
    chosen: str | None
    if declared:
        chosen, source = declared, "declared"
    else:
        chosen = detect_language(f"{title}\n{text}")
        source = "unknown" if chosen is None else "detected"
    return AnalyzedText(
        language=chosen,
        language_source=source,
        title=analyze_field("title", title, chosen, one_sentence=True),
        text=analyze_field("text", text, chosen),
    )
