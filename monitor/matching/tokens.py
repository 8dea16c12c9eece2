"""Words of a text, the same for articles and watchlist terms: normalise, tokenise, stem,
detect the language.

Pure, and shared by both sides of a match (`monitor.matching.analysis` for articles,
`term_variants` and `stem_forms` for terms), so a term and the article word it should find
always meet in the same form.

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
is unknown, are matched on folded forms only. Language tags are read by
`monitor.text.primary_language`, the rule every stage shares.

Cost: tokenisation runs on every article, so a field's tokens come out as parallel lists
(no object per token), found in one C-level pass over the text, and each word is folded once
(`fold` is cached, and so are the tokens of a compound such as ``l'accord``).
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Mapping, Sequence
from functools import lru_cache
from itertools import accumulate
from typing import Any, NamedTuple

import py3langid.langid as langid
import Stemmer

from monitor.text import primary_language

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
_JOINER = re.compile(_SEPARATOR)


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


# Function words of French and English: alone, a term like these is in nearly every article.
_STOPWORDS_TEXT = (
    "a au aux avec ce ces cet cette d dans de des du elle en est et il ils je l la le les leur "
    "lui m ma mais me mes n ne nous on ou par pas pour qu que qui s sa se ses son sur t ta te "
    "tes ton tu un une vous y "
    "an and are as at be but by for from has have he her his i in is it its of on or she "
    "that the their they this to was we were with you"
)
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


# --------------------------------------------------------------------------- stemming


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
    text = unicodedata.normalize("NFC", text)
    if _JOINER.search(text) is None:
        # No apostrophe or hyphen: each word is its own token, split and joined alike
        # (what `_tokenize` gives, without its spans; 300,000 names are compiled at start).
        # `fold` lower-cases an ASCII word and does nothing else to it (no apostrophe here).
        words = (
            tuple(_COMPOUND.findall(text.lower()))
            if text.isascii()
            else tuple(map(fold, _COMPOUND.findall(text)))
        )
        return (words,) if words else ()
    return _variants_of_tokens(text)


def _variants_of_tokens(text: str) -> tuple[tuple[str, ...], ...]:
    """`term_variants` of NFC ``text`` from its tokens: the general way, for any text."""
    tokens = _tokenize(text)
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
