"""Text analysis shared by articles and watchlist terms: normalise, tokenise, stem, detect language.

Pure: text in, `AnalyzedText` out. The same functions analyse both sides of a match, so a term
and the article word it should find always meet in the same form.

Normalisation (`normalize`, and `fold` for one word), in this order:

1. Unicode NFKC (full-width letters, ligatures such as ``ﬁ``, superscripts become plain);
2. typographic apostrophes ``’ ‘ ʼ ´ ` ′`` become ``'``;
3. case folding (``str.casefold``: ``ß`` → ``ss``);
4. ``œ`` → ``oe``, ``æ`` → ``ae``;
5. accent folding: combining marks are removed from Latin letters only (``é`` → ``e``,
   ``ç`` → ``c``); other scripts keep their marks (Devanagari vowel signs, Arabic harakat),
   digits and non-Latin letters pass through unchanged.

Tokenisation: a word is a run of letters, digits and combining marks; an apostrophe or hyphen
between two such runs keeps them in one *compound*, which is then split:

* French elisions ``l' d' j' m' n' s' t' c' qu' jusqu' lorsqu' puisqu'`` are detached as their
  own token (``l'accord`` → ``l`` ``accord``); an English possessive ``'s`` is dropped;
* other apostrophes stay inside the word (``aujourd'hui``);
* a hyphenated compound yields each part at consecutive positions *and* the parts joined,
  spanning the same positions (``anti-terroriste`` → ``anti`` ``terroriste`` + ``antiterroriste``),
  so it is found as ``anti-terroriste``, ``anti terroriste`` and ``antiterroriste``, and a name
  like ``Saint-Louis`` behaves as the phrase ``saint louis``.

Stemming: Snowball (PyStemmer) in the text's language, applied to the *folded* form on both
sides. Folding first keeps the two sides consistent: the French stemmer turns ``sécurité``
into ``sécur`` but ``securite`` into ``securit``; on folded input both ``securite`` and
``sécurités`` give ``securit``. Languages without a Snowball stemmer, and text whose language
is unknown, are matched on folded forms only.

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
import threading
import unicodedata
from bisect import bisect_right
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from itertools import accumulate, chain, compress
from typing import Any, NamedTuple

import py3langid.langid as langid
import Stemmer

ELISIONS = frozenset({"l", "d", "j", "m", "n", "s", "t", "c", "qu", "jusqu", "lorsqu", "puisqu"})

SNOWBALL_LANGUAGES: Mapping[str, str] = {
    "ar": "arabic", "hy": "armenian", "eu": "basque", "ca": "catalan", "cs": "czech",
    "da": "danish", "nl": "dutch", "en": "english", "eo": "esperanto", "et": "estonian",
    "fi": "finnish", "fr": "french", "de": "german", "el": "greek", "hi": "hindi",
    "hu": "hungarian", "id": "indonesian", "ga": "irish", "it": "italian", "lt": "lithuanian",
    "ne": "nepali", "no": "norwegian", "nb": "norwegian", "nn": "norwegian", "fa": "persian",
    "pl": "polish", "pt": "portuguese", "ro": "romanian", "ru": "russian", "sr": "serbian",
    "st": "sesotho", "es": "spanish", "sv": "swedish", "ta": "tamil", "tr": "turkish",
    "yi": "yiddish",
}  # fmt: skip

# Below this probability the detector's guess is not trusted (measured: a French sentence of
# five words scores about 0.9, two words about 0.5, a lone name under 0.1).
DETECTION_MIN_CONFIDENCE = 0.5
DETECTION_SAMPLE_CHARS = 1000  # measured: same answers as 3,000 on the corpus, in half the time

_APOSTROPHES = "'’‘ʼ´`′"
_HYPHENS = "-‐‑"
_TYPOGRAPHY = str.maketrans({**dict.fromkeys(_APOSTROPHES, "'"), "œ": "oe", "æ": "ae"})


def _combining_marks() -> str:
    # Python's \w excludes combining marks, which would cut Devanagari or vocalised Arabic
    # words apart; the Basic Multilingual Plane holds all marks met in news text.
    ranges: list[str] = []
    start = previous = -2
    for code in range(0x300, 0x10000):
        if not unicodedata.category(chr(code)).startswith("M"):
            continue
        if code != previous + 1:
            if start >= 0:
                ranges.append(_char_range(start, previous))
            start = code
        previous = code
    ranges.append(_char_range(start, previous))
    return "".join(ranges)


def _char_range(first: int, last: int) -> str:
    return (
        re.escape(chr(first))
        if first == last
        else f"{re.escape(chr(first))}-{re.escape(chr(last))}"
    )


_LETTER = rf"(?:[^\W_]|[{_combining_marks()}])"
_SEPARATOR = "[" + "".join(re.escape(char) for char in _APOSTROPHES + _HYPHENS) + "]"
_COMPOUND = re.compile(rf"{_LETTER}+(?:{_SEPARATOR}{_LETTER}+)*")
_PIECE = re.compile(rf"{_LETTER}+")
# A boundary is a run of sentence-ending punctuation (then closing quotes) followed by white
# space, or a line break with the white space around it. Each match starts on one of
# ``.!?…`` or a line break, which lets the engine skip to those characters instead of trying
# every position; white space before a line break is trimmed by `_sentence_spans`.
_SENTENCE_END = re.compile(r"[.!?…\n](?:(?<=[.!?…])[.!?…]*(?:\s?[\"'»”’)\]])*\s+|(?<=\n)\s*)")


# --------------------------------------------------------------------------- normalisation


def _is_latin(char: str) -> bool:
    return char < "\u0250" or "\u1e00" <= char <= "\u1eff" or "\u2c60" <= char <= "\u2c7f"


def normalize(text: str) -> str:
    """NFKC, ’ → ', casefold, œ/æ expanded, accents removed from Latin letters (see module doc)."""
    folded = unicodedata.normalize("NFKC", text).casefold().translate(_TYPOGRAPHY)
    if folded.isascii():
        return folded
    kept: list[str] = []
    base_is_latin = False
    for char in unicodedata.normalize("NFD", folded):
        if unicodedata.combining(char):
            if not base_is_latin:
                kept.append(char)
        else:
            base_is_latin = _is_latin(char)
            kept.append(char)
    return unicodedata.normalize("NFC", "".join(kept))


@lru_cache(maxsize=65536)
def fold(word: str) -> str:
    """`normalize` for one word, cached: the per-token hot path."""
    return normalize(word)


# --------------------------------------------------------------------------- stemming


def primary_language(language: str | None) -> str | None:
    """``"fr-FR"`` → ``"fr"``; None for an empty or malformed tag."""
    if not language:
        return None
    primary = language.strip().lower().replace("_", "-").split("-")[0]
    return primary if primary.isalpha() and primary.isascii() else None


def snowball_language(language: str | None) -> str | None:
    """``"fr-FR"`` → ``"fr"`` when Snowball has a stemmer for it, else None."""
    primary = primary_language(language)
    return primary if primary in SNOWBALL_LANGUAGES else None


_stemmers = threading.local()  # PyStemmer objects are not thread-safe


def _stemmer(language: str) -> Any:
    cache: dict[str, Any] | None = getattr(_stemmers, "cache", None)
    if cache is None:
        cache = _stemmers.cache = {}
    stemmer = cache.get(language)
    if stemmer is None:
        stemmer = cache[language] = Stemmer.Stemmer(SNOWBALL_LANGUAGES[language], 100_000)
    return stemmer


def stem_forms(forms: Sequence[str], language: str | None) -> list[str]:
    """Stems of folded forms in ``language``; the forms themselves when there is no stemmer."""
    code = snowball_language(language)
    if code is None:
        return list(forms)
    stems: list[str] = _stemmer(code).stemWords(forms)
    return stems


# --------------------------------------------------------------------------- language


@lru_cache(maxsize=1)
def _identifier() -> Any:
    return langid.LanguageIdentifier.from_model_file(langid.MODEL_FILE, norm_probs=True)


def detect_language(text: str) -> str | None:
    """ISO 639-1 code of ``text``'s language, or None when the detector is unsure."""
    sample = text[:DETECTION_SAMPLE_CHARS]
    if sum(1 for _ in _PIECE.finditer(sample)) < 2:
        return None
    language, probability = _identifier().classify(sample)
    if probability < DETECTION_MIN_CONFIDENCE or not language.isalpha() or len(language) != 2:
        return None
    return str(language)


# --------------------------------------------------------------------------- tokens


class Token(NamedTuple):
    """One word of a field. A tuple, because an article holds thousands of them."""

    position: int  # word position in the field
    end_position: int  # last position covered (> position only for a joined compound)
    start: int  # character span in the field's text
    end: int
    form: str  # folded
    sentence: int = 0  # 0-based sentence index in the field


# (position, end position, start, end, form)
_RawToken = tuple[int, int, int, int, str]


class _Tokens(NamedTuple):
    """A field's tokens as parallel lists (an article holds thousands: no object per token)."""

    positions: list[int]
    end_positions: list[int]
    starts: list[int]
    ends: list[int]
    forms: list[str]


# The compounds of a text and the runs between them, in one C-level pass: the parts alternate
# separator, compound, separator, ..., and their cumulated lengths give every compound's span.
_COMPOUND_SPLIT = re.compile(f"({_COMPOUND.pattern})")


def _tokenize(text: str) -> _Tokens:
    parts = _COMPOUND_SPLIT.split(text)
    words = parts[1::2]
    offsets = list(accumulate(map(len, parts), initial=0))
    starts = offsets[1 : len(parts) - 1 : 2]
    ends = offsets[2::2]
    forms = list(map(fold, words))
    # The common word holds no apostrophe, hyphen or combining mark: it is its own token.
    compounds = [index for index, simple in enumerate(map(str.isalnum, words)) if not simple]
    if not compounds:
        positions = list(range(len(words)))
        return _Tokens(positions, positions, starts, ends, forms)
    tokens = _Tokens([], [], [], [], [])
    position = previous = 0
    for index in compounds:
        _extend_simple(tokens, position, starts, ends, forms, previous, index)
        position += index - previous
        raw, count = _compound_tokens(words[index])
        offset = starts[index]
        for token_position, end_position, start, end, form in raw:
            tokens.positions.append(position + token_position)
            tokens.end_positions.append(position + end_position)
            tokens.starts.append(offset + start)
            tokens.ends.append(offset + end)
            tokens.forms.append(form)
        position += count
        previous = index + 1
    _extend_simple(tokens, position, starts, ends, forms, previous, len(words))
    return tokens


def _extend_simple(
    tokens: _Tokens,
    position: int,
    starts: list[int],
    ends: list[int],
    forms: list[str],
    first: int,
    stop: int,
) -> None:
    """Append the simple words ``first`` to ``stop`` (exclusive), from ``position`` on."""
    numbers = range(position, position + stop - first)
    tokens.positions.extend(numbers)
    tokens.end_positions.extend(numbers)
    tokens.starts.extend(starts[first:stop])
    tokens.ends.extend(ends[first:stop])
    tokens.forms.extend(forms[first:stop])


@lru_cache(maxsize=65536)
def _compound_tokens(compound: str) -> tuple[tuple[_RawToken, ...], int]:
    """A compound's tokens from position and offset 0 (``l'accord``, ``d'un`` recur), and the
    number of positions they take."""
    raw: list[_RawToken] = []
    count = _split_compound(compound, 0, 0, raw)
    return tuple(raw), count


def _split_compound(compound: str, offset: int, position: int, out: list[_RawToken]) -> int:
    """Append the tokens of one compound; return the next free position."""
    pieces = [(piece.start(), piece.end()) for piece in _PIECE.finditer(compound)]
    if len(pieces) == 1:
        out.append((position, position, offset, offset + len(compound), fold(compound)))
        return position + 1

    def joined_by_apostrophe(index: int) -> bool:  # piece `index` and the one before it
        return compound[pieces[index][0] - 1] in _APOSTROPHES

    first = 0
    while (
        first < len(pieces) - 1
        and joined_by_apostrophe(first + 1)
        and fold(compound[pieces[first][0] : pieces[first][1]]) in ELISIONS
    ):
        start, end = pieces[first]
        out.append((position, position, offset + start, offset + end, fold(compound[start:end])))
        position += 1
        first += 1
    last = len(pieces) - 1
    if last > first and joined_by_apostrophe(last) and fold(compound[pieces[last][0] :]) == "s":
        last -= 1  # English possessive

    # Group the remaining pieces into words (apostrophes join, hyphens separate).
    words: list[tuple[int, int]] = []
    for index in range(first, last + 1):
        start, end = pieces[index]
        if words and index > first and joined_by_apostrophe(index):
            words[-1] = (words[-1][0], end)
        else:
            words.append((start, end))
    first_position = position
    forms: list[str] = []
    for start, end in words:
        form = fold(compound[start:end])
        forms.append(form)
        out.append((position, position, offset + start, offset + end, form))
        position += 1
    if len(words) > 1:
        out.append(
            (
                first_position,
                position - 1,
                offset + words[0][0],
                offset + words[-1][1],
                "".join(forms),
            )
        )
    return position


def term_variants(text: str) -> tuple[tuple[str, ...], ...]:
    """The folded word sequences a watchlist term stands for.

    One sequence for plain words and phrases; a term with hyphenated compounds also gives the
    sequence with each compound joined (``anti-terroriste`` → ``(anti, terroriste)`` and
    ``(antiterroriste,)``). Empty when the term holds no word at all.
    """
    tokens = _tokenize(unicodedata.normalize("NFC", text))
    triples = list(zip(tokens.positions, tokens.end_positions, tokens.forms, strict=True))
    split = tuple(form for position, end_position, form in triples if end_position == position)
    joined_parts: list[str] = []
    covered_until = -1
    for position, end_position, form in sorted(triples, key=lambda raw: (raw[0], -raw[1])):
        if position <= covered_until:
            continue
        joined_parts.append(form)
        covered_until = end_position
    joined = tuple(joined_parts)
    if not split:
        return ()
    return (split,) if joined == split else (split, joined)


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
