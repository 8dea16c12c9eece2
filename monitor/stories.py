"""One story, once: canonical article URLs and near-duplicate texts. Pure: no I/O, no SQL.

**The same article** is one URL written many ways. `url_key` is its identity in the
store: the scheme (``http``/``https``), a leading ``www.`` or ``amp.``, the port a
scheme implies, a trailing slash, the fragment, the order of parameters, tracking
parameters and AMP variants (``/amp/`` path segment, ``.amp`` suffix, ``?amp``,
``outputType=amp``, the ``cdn.ampproject.org`` and ``google.com/amp/s/`` caches) do
not count. `clean_url` is what the reader is shown: the URL as published, minus
tracking parameters. `article_url` prefers the page's own ``<link rel=canonical>`` or
``og:url`` when it names the same site (registrable domain, from the public suffix
list through courlan), since a page naming another site as its canonical is either
a syndicated copy or a mistake, and the story step below handles copies.

Tracking parameters dropped (names compared lower-cased), because they say where a
click came from, never which article it is:

* click identifiers of ad and social platforms: ``fbclid gclid gclsrc dclid msclkid
  twclid yclid ysclid igshid igsh mibextid wbraid gbraid``;
* campaign tags: every ``utm_*``, AT Internet / Piano ``at_*`` and ``xtor``/``xtref``
  (French media), comScore ``ns_*`` (BBC), Matomo/Piwik ``pk_* mtm_*``, Mailchimp
  ``mc_*`` (``mc_cid``, ``mc_eid``), Google ``_ga _gl ga_*``, HubSpot ``_hsenc _hsmi
  hsa_*``, Marketo ``mkt_*``, Webtrends ``wt.* wt_*``, ``itm_* oly_* vero_*``, and
  ``cmp cmpid icid ito ocid smid smtyp s_cid sr_share guccounter guce_referrer*``;
* referrers: ``from`` (``?from=rss``), ``ref``, ``ref_src``, ``ref_url``,
  ``referrer``, ``source`` (``?source=rss``).

The list follows courlan's ``TRACKERS_RE`` but as whole names: that pattern is not
anchored at the end, so it also drops ``gallery``, ``global`` or ``affaire``, and
courlan's ``clean_query`` drops parameters without a value, which some sites use as
the article's id (``story.php?12345``). Both would make two articles one.

**The same story** is the same text under another URL, title or outlet: a wire
story republished, or an article moved to a new address. `signature` turns the first
`MAX_WORDS` words of a text into a MinHash of their 5-word shingles (casefolded,
accents folded, punctuation removed); `StoryIndex` finds stored signatures whose estimated Jaccard similarity is
at least `SAME_STORY_JACCARD`, through LSH banding. Texts under `MIN_WORDS`
words get no signature: a summary of two sentences says too little to tell one
story from another. Both numbers were chosen on the shared corpus (see
tests/test_stories.py and bench/bench_stories.py for the figures).
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import SplitResult, quote, unquote_plus, urlsplit, urlunsplit

import numpy as np
from courlan import normalize_url
from courlan.clean import normalize_fragment
from courlan.urlutils import get_tldinfo

__all__ = [
    "MAX_WORDS",
    "MIN_WORDS",
    "NUM_PERM",
    "SAME_STORY_JACCARD",
    "SHINGLE_WORDS",
    "StoryIndex",
    "article_url",
    "clean_url",
    "is_tracking_parameter",
    "same_site",
    "signature",
    "similarity",
    "text_words",
    "url_key",
]

# --------------------------------------------------------------------------- URLs

_TRACKING_NAMES = frozenset(
    {
        "fbclid", "gclid", "gclsrc", "dclid", "msclkid", "twclid", "yclid", "ysclid",
        "igshid", "igsh", "mibextid", "wbraid", "gbraid",
        "xtor", "xtref", "_ga", "_gl", "_hsenc", "_hsmi",
        "cmp", "cmpid", "icid", "ito", "ocid", "smid", "smtyp", "s_cid", "sr_share",
        "guccounter", "guce_referrer", "guce_referrer_sig",
        "from", "ref", "ref_src", "ref_url", "referrer", "source",
    }
)  # fmt: skip
_TRACKING_PREFIXES = (
    "utm_", "at_", "ns_", "pk_", "mtm_", "mc_", "ga_", "hsa_", "mkt_", "wt.", "wt_",
    "itm_", "oly_", "vero_",
)  # fmt: skip
# Parameters that only ask for the AMP rendering of the same article.
_AMP_PARAMETERS = {"amp": None, "_amp": None, "outputtype": "amp"}  # name: value, None = any
_AMP_HOST_PREFIXES = ("www.", "amp.")
_AMP_CACHE = re.compile(r"^/[cv]/(?:s/)?(?P<rest>.+)$")  # *.cdn.ampproject.org/c/s/host/path
_GOOGLE_AMP = re.compile(r"^/amp/(?:s/)?(?P<rest>.+)$")  # www.google.com/amp/s/host/path
_DEFAULT_PORTS = {"http": 80, "https": 443}


def is_tracking_parameter(name: str) -> bool:
    """True for a query parameter that only tags where a click came from."""
    return _is_tracker(unquote_plus(name).lower())


def _parts(url: str) -> SplitResult | None:
    """`url` split, or None when it is not an absolute http(s) URL we can rewrite safely."""
    try:
        parts = urlsplit(url.strip())
        _ = parts.port  # raises on an invalid port
    except ValueError:
        return None
    if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return parts


def _query_pieces(query: str) -> list[tuple[str, str, str]]:
    """(raw piece, lower-cased name, value) of each parameter, in order, value-less ones kept."""
    pieces = []
    for piece in query.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        pieces.append((piece, unquote_plus(name).lower(), unquote_plus(value)))
    return pieces


def _netloc(parts: SplitResult, host: str) -> str:
    port = parts.port
    if port is not None and _DEFAULT_PORTS.get(parts.scheme.lower()) != port:
        host = f"{host}:{port}"
    return host


def _host(parts: SplitResult) -> str:
    host = (parts.hostname or "").lower()
    return f"[{host}]" if ":" in host else host


def clean_url(url: str) -> str:
    """The URL to show the reader: as published, minus tracking parameters (and the
    parameters asking for the AMP rendering).

    Scheme and host are lower-cased and a default port dropped; the path and the
    remaining parameters are kept as written (a server may depend on them). A URL
    that is not absolute http(s) is returned stripped, untouched.
    """
    parts = _parts(url)
    if parts is None:
        return url.strip()
    kept = [
        piece
        for piece, name, value in _query_pieces(parts.query)
        if not _is_tracker(name) and not _is_amp_parameter(name, value)
    ]
    fragment = parts.fragment
    if fragment and not normalize_fragment(fragment):  # courlan: a tracker in the fragment
        fragment = ""
    if fragment and "=" in fragment:
        fragment = "&".join(
            piece for piece, name, _ in _query_pieces(fragment) if not _is_tracker(name)
        )
    userinfo = parts.netloc.rpartition("@")[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(
        (
            parts.scheme.lower(),
            userinfo + _netloc(parts, _host(parts)),
            parts.path or "/",
            "&".join(kept),
            fragment,
        )
    )


def _is_tracker(name: str) -> bool:
    return name in _TRACKING_NAMES or name.startswith(_TRACKING_PREFIXES)


def _is_amp_parameter(name: str, value: str) -> bool:
    if name not in _AMP_PARAMETERS:
        return False
    wanted = _AMP_PARAMETERS[name]
    return wanted is None or value.lower() == wanted


def _unwrap_amp_cache(parts: SplitResult) -> SplitResult:
    """The publisher's URL behind an AMP cache URL (Google's and the AMP project's)."""
    host = (parts.hostname or "").lower()
    pattern = None
    if host.endswith(".cdn.ampproject.org"):
        pattern = _AMP_CACHE
    elif re.fullmatch(r"(?:www\.)?google\.[a-z.]+", host):
        pattern = _GOOGLE_AMP
    match = pattern.match(parts.path) if pattern is not None else None
    if match is None:
        return parts
    inner = _parts(f"https://{match['rest']}" + (f"?{parts.query}" if parts.query else ""))
    return inner if inner is not None else parts


def _key_path(path: str) -> str:
    # courlan's normalisation of the path: "/../" resolved, one percent-encoding.
    normalised = urlsplit(normalize_url(f"http://h{path or '/'}")).path
    segments = [segment for segment in normalised.split("/") if segment and segment != "amp"]
    if segments:
        last = segments[-1]
        if last.endswith(".amp"):
            segments[-1] = last[: -len(".amp")]
        elif last.endswith(".amp.html"):
            segments[-1] = last[: -len(".amp.html")] + ".html"
    return "/" + "/".join(segment for segment in segments if segment)


def url_key(url: str) -> str:
    """The identity of an article URL: two links to the same article give the same key.

    ``//host/path?sorted-parameters``, with no scheme, ``www.``/``amp.``, default
    port, trailing slash, fragment, tracking parameter or AMP marker (see the module
    docstring). A URL that is not absolute http(s) is its own key, stripped.
    """
    parts = _parts(url)
    if parts is None:
        return url.strip()
    parts = _unwrap_amp_cache(parts)
    host = _host(parts)
    for prefix in _AMP_HOST_PREFIXES:
        if host.startswith(prefix) and host.count(".") > 1:
            host = host[len(prefix) :]
    kept = sorted(
        _key_parameter(name, value)
        for _, name, value in _query_pieces(parts.query)
        if not _is_tracker(name) and not _is_amp_parameter(name, value)
    )
    query = f"?{'&'.join(kept)}" if kept else ""
    # A hash-bang fragment is the address of a page in some single-page sites.
    fragment = f"#{parts.fragment}" if parts.fragment.startswith("!") else ""
    return f"//{_netloc(parts, host)}{_key_path(parts.path)}{query}{fragment}"


def _key_parameter(name: str, value: str) -> str:
    return quote(name, safe="") + ("=" + quote(value, safe="") if value else "")


@lru_cache(maxsize=4096)
def _registrable_domain(scheme: str, netloc: str) -> str | None:
    """The registrable domain of a host (the public-suffix lookup costs about 0.1 ms,
    and every article asks it for two URLs, mostly of the same few sites)."""
    return get_tldinfo(urlunsplit((scheme, netloc, "/", "", "")))[1]


def same_site(url: str, other: str) -> bool:
    """True when both URLs belong to one registrable domain (``www.bbc.com`` and
    ``news.bbc.com``; ``a.github.io`` and ``b.github.io`` are two sites); hosts with
    no public suffix (IP addresses, ``localhost``) must be equal, port included."""
    first, second = _parts(url), _parts(other)
    if first is None or second is None:
        return False
    first_domain = _registrable_domain(first.scheme, first.netloc)
    second_domain = _registrable_domain(second.scheme, second.netloc)
    if first_domain is None or second_domain is None:
        return _netloc(first, _host(first)) == _netloc(second, _host(second))
    return bool(first_domain == second_domain)


def article_url(url: str, canonical: str | None = None) -> str:
    """The URL an article is stored and shown under: the page's declared canonical URL
    when it is an http(s) URL of the same site as `url`, else `url`; cleaned.

    A canonical URL naming the site's home page is ignored: some sites declare it on
    every article, and believing it would make all their articles one.
    """
    declared = _parts(canonical) if canonical else None
    if (
        canonical
        and declared is not None
        and declared.path.strip("/")
        and same_site(url, canonical)
    ):
        return clean_url(canonical)
    return clean_url(url)


# --------------------------------------------------------------------------- texts

SHINGLE_WORDS = 5
MIN_WORDS = 60
# Only the start of a text is compared: copies of a story agree most on the lead, and a copy
# cut short (or an article grown by an update) still matches. Measured on 150 built copies
# cut to 60 % of their text: 9 % found comparing whole texts, 76 % comparing the first 400
# words, with no more wrong merges on the corpus; it also bounds the cost of a long text.
MAX_WORDS = 400
_MAX_CHARS_PER_WORD = 12  # text beyond MAX_WORDS * this is not even read
NUM_PERM = 128
SAME_STORY_JACCARD = 0.75

_SEED = 1  # fixed: signatures are stored, and must stay comparable across versions


def _permutations() -> tuple[np.ndarray[Any, np.dtype[np.uint32]], ...]:
    """The 128 affine permutations h -> a·h + b (mod 2^32) of datasketch's MinHash
    (`MinHash(num_perm=NUM_PERM, seed=_SEED, scheme="affine32").permutations`), drawn the
    way it draws them. Computed here rather than by datasketch, whose import brings scipy
    (38 MB and half a second of the daemon's start) for no part of this; a test checks
    every signature against datasketch's."""
    draw = np.random.RandomState(_SEED)
    a = draw.randint(0, 1 << 31, NUM_PERM, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = draw.randint(0, 1 << 32, NUM_PERM, dtype=np.uint32)
    return a, b


_PERMUTE_A, _PERMUTE_B = _permutations()


def _premix(hashes: np.ndarray[Any, np.dtype[np.uint32]]) -> np.ndarray[Any, np.dtype[np.uint32]]:
    """MurmurHash3's 32-bit finalizer, which datasketch applies to each input hash first."""
    hashes = hashes ^ (hashes >> np.uint32(16))
    hashes = hashes * np.uint32(0x85EBCA6B)
    hashes = hashes ^ (hashes >> np.uint32(13))
    hashes = hashes * np.uint32(0xC2B2AE35)
    return hashes ^ (hashes >> np.uint32(16))


_SIGNATURE_DTYPE = np.dtype("<u4")
_WORD = re.compile(r"\w+")
_FNV_PRIME = np.uint64(0x100000001B3)
_COMBINING = re.compile(r"[\u0300-\u036f]+")


def text_words(text: str) -> list[str]:
    """The words of `text` as compared: casefolded, accents folded, punctuation gone."""
    folded = _COMBINING.sub("", unicodedata.normalize("NFKD", text.casefold()))
    return _WORD.findall(folded)


def _shingle_hashes(words: list[str]) -> list[int]:
    """A 32-bit hash of each run of `SHINGLE_WORDS` words, computed from the words' CRC-32
    with numpy rather than by joining strings: the per-article cost stays under a
    millisecond (bench/bench_stories.py)."""
    word_hashes = np.fromiter(
        map(zlib.crc32, map(str.encode, words)), dtype=np.uint64, count=len(words)
    )
    count = len(words) - SHINGLE_WORDS + 1
    combined = np.zeros(count, dtype=np.uint64)
    for offset in range(SHINGLE_WORDS):
        combined = combined * _FNV_PRIME ^ word_hashes[offset : offset + count]
    folded = (combined >> np.uint64(32)) ^ (combined & np.uint64(0xFFFFFFFF))
    hashes: list[int] = folded.tolist()  # repeats are harmless: a minimum is a minimum
    return hashes


def signature(text: str) -> bytes | None:
    """The MinHash of the word shingles of `text`'s first `MAX_WORDS` words, as bytes to
    store; None under `MIN_WORDS` words, too little to tell one story from another."""
    words = text_words(text[: MAX_WORDS * _MAX_CHARS_PER_WORD])[:MAX_WORDS]
    if len(words) < MIN_WORDS:
        return None
    hashes = _premix(np.array(_shingle_hashes(words), dtype=np.uint32).reshape(-1, 1))
    values = (hashes * _PERMUTE_A + _PERMUTE_B).min(axis=0)  # uint32: wraps mod 2^32
    stored: bytes = values.astype(_SIGNATURE_DTYPE).tobytes()
    return stored


def _values(stored: bytes) -> np.ndarray[tuple[int], np.dtype[np.uint32]]:
    values = np.frombuffer(stored, dtype=_SIGNATURE_DTYPE)
    if values.shape != (NUM_PERM,):
        raise ValueError(f"a story signature has {NUM_PERM} values, this one {values.size}")
    return values


def similarity(first: bytes, second: bytes) -> float:
    """The Jaccard similarity of two texts' shingles, as their signatures estimate it."""
    return float(np.count_nonzero(_values(first) == _values(second))) / NUM_PERM


@dataclass(frozen=True)
class StoryMatch:
    """A stored article whose text is the same story, and how similar it is."""

    article_id: int
    similarity: float


# LSH banding: 16 bands of 8 values, what datasketch's MinHashLSH picks for this threshold when
# missing a copy weighs 9 times more than checking a candidate (every candidate is then
# checked against the threshold). A text at Jaccard 0.75 shares a band with probability 0.98.
BANDS, ROWS = 16, 8
_BAND_MIX = np.uint64(0x9E3779B97F4A7C15)
_Array = np.ndarray[Any, np.dtype[Any]]


def _band_hashes(values: _Array) -> _Array:
    """(n, NUM_PERM) signature values -> (n, BANDS) one 64-bit hash per band."""
    bands = values.reshape(-1, BANDS, ROWS).astype(np.uint64)
    hashes = np.zeros(bands.shape[:2], dtype=np.uint64)
    for row in range(ROWS):
        hashes = (hashes ^ bands[:, :, row]) * _BAND_MIX
        hashes ^= hashes >> np.uint64(31)
    return hashes


class StoryIndex:
    """Signatures of recent articles, searchable for the same story (LSH banding).

    Rebuilt at start from the signatures the store keeps (`add_all`), then updated as
    articles arrive. Keys are article ids. Not thread-safe: the store uses it inside its
    write transaction only.

    datasketch's MinHashLSH keeps a Python set per band bucket: 5.9 KiB per article, 590 MiB
    for 100,000 (bench/bench_stories.py). Here the signatures are one numpy array and each
    band a sorted array of hashes searched by bisection, about 0.7 KiB per article; the
    latest additions are scanned until they are merged in.
    """

    def __init__(self, threshold: float = SAME_STORY_JACCARD) -> None:
        self.threshold = threshold
        self._row_of: dict[int, int] = {}  # article id -> row
        self._ids = np.zeros(0, dtype=np.int64)
        self._values = np.zeros((0, NUM_PERM), dtype=np.uint32)
        self._bands = np.zeros((0, BANDS), dtype=np.uint64)
        self._alive = np.zeros(0, dtype=bool)
        self._count = 0  # rows used
        self._merged = 0  # rows [0, _merged) are in the sorted band arrays
        self._sorted_hashes = np.zeros((BANDS, 0), dtype=np.uint64)
        self._sorted_rows = np.zeros((BANDS, 0), dtype=np.int64)

    def __len__(self) -> int:
        return len(self._row_of)

    def __contains__(self, article_id: object) -> bool:
        return article_id in self._row_of

    def ids(self) -> list[int]:
        return list(self._row_of)

    def add(self, article_id: int, stored: bytes) -> None:
        """Index an article's signature (a second add of the same id is ignored)."""
        self.add_all([(article_id, stored)])

    def add_all(self, signatures: Iterable[tuple[int, bytes]]) -> None:
        """Index many signatures at once (loading at start)."""
        fresh = [
            (article_id, stored)
            for article_id, stored in dict(signatures).items()
            if article_id not in self._row_of
        ]
        if not fresh:
            return
        values = np.stack([_values(stored) for _, stored in fresh])
        self._reserve(self._count + len(fresh))
        rows = slice(self._count, self._count + len(fresh))
        self._ids[rows] = [article_id for article_id, _ in fresh]
        self._values[rows] = values
        self._bands[rows] = _band_hashes(values)
        self._alive[rows] = True
        for offset, (article_id, _) in enumerate(fresh):
            self._row_of[article_id] = self._count + offset
        self._count += len(fresh)
        if self._count - self._merged > max(256, self._merged // 8):
            self._merge()

    def remove(self, article_id: int) -> None:
        row = self._row_of.pop(article_id, None)
        if row is None:
            return
        self._alive[row] = False
        if len(self._row_of) < self._count // 2:
            self._compact()

    def same_story(self, stored: bytes, limit: int | None = None) -> list[StoryMatch]:
        """Indexed articles telling the same story as `stored`, most similar first
        (ties: oldest id first); the first `limit` of them when given.

        Filtered and ordered in NumPy: a story can gather thousands of articles (a feed of
        near-identical notices, a wire story every outlet reprints), and a Python pass over
        them for each new article was a sixth of the daemon's CPU in such a world."""
        values = _values(stored)
        query = _band_hashes(values[np.newaxis, :])[0]
        found = [
            self._merged
            + np.flatnonzero((self._bands[self._merged : self._count] == query).any(axis=1))
        ]
        for band in range(BANDS):
            hashes = self._sorted_hashes[band]
            start, end = (
                np.searchsorted(hashes, query[band], side="left"),
                np.searchsorted(hashes, query[band], side="right"),
            )
            if end > start:
                found.append(self._sorted_rows[band, start:end])
        rows = np.unique(np.concatenate(found))
        rows = rows[self._alive[rows]]
        if rows.size == 0:
            return []
        scores = (self._values[rows] == values).sum(axis=1) / NUM_PERM
        kept = scores >= self.threshold
        ids, scores = self._ids[rows[kept]], scores[kept]
        order = np.lexsort((ids, -scores))  # the last key sorts first
        if limit is not None:
            order = order[:limit]
        return [StoryMatch(int(ids[row]), float(scores[row])) for row in order]

    def _reserve(self, size: int) -> None:
        if size <= len(self._ids):
            return
        capacity = max(size, 2 * len(self._ids), 1024)
        grow = capacity - len(self._ids)
        self._ids = np.concatenate([self._ids, np.zeros(grow, dtype=np.int64)])
        self._values = np.concatenate([self._values, np.zeros((grow, NUM_PERM), np.uint32)])
        self._bands = np.concatenate([self._bands, np.zeros((grow, BANDS), np.uint64)])
        self._alive = np.concatenate([self._alive, np.zeros(grow, dtype=bool)])

    def _merge(self) -> None:
        bands = self._bands[: self._count].T
        order = np.argsort(bands, axis=1, kind="stable")
        self._sorted_rows = order.astype(np.int64)
        self._sorted_hashes = np.take_along_axis(bands, order, axis=1)
        self._merged = self._count

    def _compact(self) -> None:
        keep = np.flatnonzero(self._alive[: self._count])
        self._ids = self._ids[keep]
        self._values = self._values[keep]
        self._bands = self._bands[keep]
        self._alive = self._alive[keep]
        self._count = len(keep)
        self._row_of = {int(article_id): row for row, article_id in enumerate(self._ids)}
        self._merge()
