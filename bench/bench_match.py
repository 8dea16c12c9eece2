"""Benchmark: one article against many watchlists, indexed matcher vs one regex per watchlist.

    .venv/bin/python bench/bench_match.py            # 1,000 articles; 100 ... 100,000 watchlists
    .venv/bin/python bench/bench_match.py --quick    # 200 articles; 100 ... 10,000 watchlists

Articles: real texts from the shared corpus (../shared/corpus, or $MONITOR_CORPUS): the French
MasakhaNEWS (BBC Afrique) rows, headline + text, then the ``text`` of every ground-truth JSON
that holds a complete article (``full_text``, and Readability's ``expected_html`` text). There
are 913 such texts; the list is cycled to reach the requested count (the report says how many
are repeats).

Watchlists: generated with a fixed seed from the corpus's own vocabulary (French and English
words whose folded form is seen in 0.1 % to 2 % of the texts, written in their most frequent
spelling, and adjacent pairs of such words, seen twice or more, as phrases), in six shapes:
``a AND b AND (c OR d OR e) NOT f``, ``"a b" AND c``, ``(a OR b) NEAR/10 (c OR d)``,
``a AND b AND c*``, ``title:a AND (b OR "c d")``, ``=a AND b``; one in ten fixes its language to
fr or en. A word's other forms are not counted: a rare form of a common stem ("abordables")
matches as often as its stem, as it would in a real watchlist.

Printed: analysis cost per article (normalise, tokenise, stem, detect language, index the
tokens: done once for all watchlists), on a first pass over the texts; then for each watchlist
count: build time, matching articles/s (each article is analysed, then matched at once, as in a
worker, and the two are timed apart: what matching works out on first use, such as sentences,
is paid at every count; the fastest of three passes, ``--repeat``), the same with the analysis,
candidates verified per article, hits per article, and the naive baseline (a regex per watchlist over the normalised text, then the
boolean, NEAR and NOT evaluated on its matches). At high counts the baseline runs on fewer
articles (in a fixed random order, as many as fit in 8 s, at least 2) and its per-article rate
is extrapolated; the table says on how many. Last, the time at 10,000 watchlists over the time
at 100: from the table, then over ``--paired`` passes at the two counts run back to back (their
median), which a drift of the machine between the two rows of the table does not skew.
"""

from __future__ import annotations

import argparse
import csv
import gc
import gzip
import io
import itertools
import json
import os
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import monitor.matching.hits as hits_module
import monitor.matching.relevance as relevance_module
from monitor.matching import AnalyzedText, Matcher, analyze, normalize
from monitor.models import Watchlist
from monitor.query import (
    And,
    FieldScope,
    Near,
    Node,
    Not,
    Or,
    SetRef,
    Term,
    leaves,
    parse_query,
    render,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
SEED = 20261128
NAIVE_BUDGET_SECONDS = 8.0
RATIO_SIZES = (100, 10_000)  # the issue's goal compares the time per article at these counts


def corpus_root() -> Path:
    configured = os.environ.get("MONITOR_CORPUS")
    root = Path(configured) if configured else REPO_ROOT.parent / "shared" / "corpus"
    if not root.is_dir():
        sys.exit(f"corpus not found at {root}: set MONITOR_CORPUS=/path/to/corpus")
    return root


@dataclass(frozen=True)
class Text:
    title: str
    body: str
    language: str | None


def load_texts(root: Path) -> list[Text]:
    texts: list[Text] = []
    csv.field_size_limit(10_000_000)
    for path in sorted((root / "articles" / "masakhanews-fra").glob("*.tsv.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                texts.append(Text(row["headline"], row["text"], "fr"))
    for path in sorted((root / "articles").glob("*/*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("ground_truth_type") in ("full_text", "expected_html") and record.get("text"):
            title = str((record.get("metadata") or {}).get("title") or "")
            texts.append(Text(title, str(record["text"]), None))
    return texts


# --------------------------------------------------------------------------- watchlists

_WORD = re.compile(r"[^\W\d_]{4,}")


def vocabulary(texts: Sequence[Text]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Words per language seen in 0.1 %..2 % of the texts, and adjacent pairs for phrases.

    Frequencies are counted on folded forms, as the matcher compares them: counted as written,
    a common word at the start of sentences ("Faire") would pass for a rare one. Each word is
    then written in its most frequent spelling, so names keep their capital.
    """
    document_frequency: dict[str, Counter[str]] = {"fr": Counter(), "en": Counter()}
    spellings: dict[str, dict[str, Counter[str]]] = {"fr": {}, "en": {}}
    pairs: dict[str, Counter[str]] = {"fr": Counter(), "en": Counter()}
    for text in texts:
        language = "fr" if text.language == "fr" else "en"
        words = _WORD.findall(f"{text.title} {text.body}")
        folded = [normalize(word) for word in words]
        document_frequency[language].update(set(folded))
        for word, form in zip(words, folded, strict=True):
            spellings[language].setdefault(form, Counter())[word] += 1
        pairs[language].update({f"{a} {b}" for a, b in itertools.pairwise(words)})
    words_by_language: dict[str, list[str]] = {}
    phrases_by_language: dict[str, list[str]] = {}
    for language, counts in document_frequency.items():
        total = sum(1 for text in texts if (text.language == "fr") == (language == "fr"))
        low, high = max(2, int(total * 0.001)), max(3, int(total * 0.02))
        band = sorted(form for form, n in counts.items() if low <= n <= high)
        words_by_language[language] = [
            spellings[language][form].most_common(1)[0][0] for form in band
        ]
        in_band = set(band)
        phrases_by_language[language] = sorted(
            pair
            for pair, n in pairs[language].items()
            if n >= 2 and all(normalize(word) in in_band for word in pair.split())
        )
    return words_by_language, phrases_by_language


def generate_queries(
    count: int, words: dict[str, list[str]], phrases: dict[str, list[str]]
) -> list[tuple[str, str | None]]:
    rng = random.Random(SEED + count)
    queries: list[tuple[str, str | None]] = []
    for index in range(count):
        language = "fr" if rng.random() < 0.6 else "en"
        pick = words[language]

        def w() -> str:
            return rng.choice(pick)  # noqa: B023 - called inside this iteration only

        def long_word() -> str:
            return next(word for word in iter(w, None) if len(word) >= 8)

        def p() -> str:
            return '"' + rng.choice(phrases[language]) + '"'  # noqa: B023

        shape = index % 6
        if shape == 0:
            query = f"{w()} AND {w()} AND ({w()} OR {w()} OR {w()}) NOT {w()}"
        elif shape == 1:
            query = f"{p()} AND {w()}"
        elif shape == 2:
            query = f"({w()} OR {w()}) NEAR/10 ({w()} OR {p()})"
        elif shape == 3:
            query = f"{w()} AND {w()} AND {long_word()[:6]}*"
        elif shape == 4:
            query = f"title:{w()} AND ({w()} OR {p()})"
        else:
            query = f"={w()} AND {w()}"
        fixed = language if rng.random() < 0.1 else None
        queries.append((query, fixed))
    return queries


def build_watchlists(
    queries: Sequence[tuple[str, str | None]], words: dict[str, list[str]] | None = None
) -> list[Watchlist]:
    """Watchlists of ``queries``; with ``words``, each gets a `topic:` of 6 to 12 words of
    its query's language (a separate random stream, so the queries stay those of before)."""
    rng = random.Random(SEED - len(queries))
    watchlists = []
    for i, (query, language) in enumerate(queries):
        topic = None
        if words is not None:
            pick = words["fr" if language is None or language == "fr" else "en"]
            topic = " ".join(rng.choice(pick) for _ in range(rng.randint(6, 12)))
        watchlists.append(
            Watchlist(f"generated {i}", parse_query(query, {}), language=language, topic=topic)
        )
    return watchlists


# --------------------------------------------------------------------------- naive baseline


class NaiveWatchlist:
    """One compiled regex per watchlist, run over the normalised text; the query tree is then
    evaluated on the set of terms the regex found (and their word offsets for NEAR)."""

    def __init__(self, query: Node) -> None:
        self.query = query
        terms = sorted({normalize(term.text) for term in leaves(query)}, key=len, reverse=True)
        self.pattern = re.compile(
            r"\b(" + "|".join(re.escape(term) for term in terms) + r")\w*", re.UNICODE
        )

    def matches(self, title: str, body: str) -> bool:
        found: dict[str, list[int]] = {}
        for field_text in (title, body):
            for match in self.pattern.finditer(field_text):
                found.setdefault(match.group(1), []).append(match.start())
        return self._holds(self.query, found)

    def _holds(self, node: Node, found: dict[str, list[int]]) -> bool:
        if isinstance(node, Term):
            return normalize(node.text) in found
        if isinstance(node, SetRef):
            return any(normalize(m.text) in found for m in node.members)
        if isinstance(node, FieldScope):
            return self._holds(node.child, found)
        if isinstance(node, Not):
            return not self._holds(node.child, found)
        if isinstance(node, And):
            return all(self._holds(child, found) for child in node.children)
        if isinstance(node, Or):
            return any(self._holds(child, found) for child in node.children)
        if isinstance(node, Near):  # character offsets, ~7 characters a word
            left = self._offsets(node.left, found)
            right = self._offsets(node.right, found)
            limit = node.distance * 7
            return any(abs(a - b) <= limit for a in left for b in right)
        return False

    def _offsets(self, node: Node, found: dict[str, list[int]]) -> list[int]:
        offsets: list[int] = []
        for term in leaves(node):
            offsets.extend(found.get(normalize(term.text), []))
        return offsets


# --------------------------------------------------------------------------- run


def timed_rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def matching_pass(matcher: Matcher, texts: Sequence[Text]) -> tuple[float, float, int]:
    """(matching seconds, analysis seconds, hits) over ``texts``, each analysed then matched."""
    hits = 0
    match_seconds = analysed_seconds = 0.0
    for text in texts:
        started = time.perf_counter()
        doc = analyze(text.title, text.body, text.language)
        analysed = time.perf_counter()
        hits += len(matcher.match_analyzed(doc))
        match_seconds += time.perf_counter() - analysed
        analysed_seconds += analysed - started
    return match_seconds, analysed_seconds, hits


def scoring_share(matcher: Matcher, texts: Sequence[Text]) -> tuple[float, float]:
    """(matching seconds, of which relevance scoring) over ``texts``, the fastest of three.

    The scoring steps of `monitor.matching.hits` (gathering each clause's evidence, the
    strength of the query's structure, the score and its words) are timed in place, so
    both figures come from the same passes on the same machine state.
    """
    spent = [0.0]

    def timed(function: Any) -> Any:
        def wrapper(*args: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args)
            finally:
                spent[0] += time.perf_counter() - started

        return wrapper

    strength = hits_module._plan_strength
    depth = [0]

    def outermost_strength(*args: Any) -> Any:  # recursive: time the outermost call only
        depth[0] += 1
        started = time.perf_counter()
        try:
            return strength(*args)
        finally:
            depth[0] -= 1
            if depth[0] == 0:
                spent[0] += time.perf_counter() - started

    # The names `hits` calls them by, patched in its namespace (and the class's method).
    evidence = relevance_module.ClauseEvidence
    original_of = evidence.__dict__["of"]
    in_hits = ("_plan_strength", "assess", "topic_density")
    originals = {name: getattr(hits_module, name) for name in in_hits}
    patches = {
        "_plan_strength": outermost_strength,
        "assess": timed(originals["assess"]),
        "topic_density": timed(originals["topic_density"]),
    }
    for name, patch in patches.items():
        setattr(hits_module, name, patch)
    evidence.of = classmethod(timed(original_of.__func__))  # type: ignore[method-assign,assignment]
    try:
        best: tuple[float, float] | None = None
        for _ in range(3):
            spent[0] = 0.0
            seconds = matching_pass(matcher, texts)[0]
            if best is None or seconds < best[0]:
                best = (seconds, spent[0])
        assert best is not None
        return best
    finally:
        evidence.of = original_of  # type: ignore[method-assign]
        for name, value in originals.items():
            setattr(hits_module, name, value)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="200 articles, up to 10,000 watchlists"
    )
    parser.add_argument("--articles", type=int, default=None)
    parser.add_argument(
        "--no-topics",
        action="store_true",
        help="watchlists without `topic:` (by default each has one, scored with the hit)",
    )
    parser.add_argument("--sizes", type=str, default=None, help="comma-separated watchlist counts")
    parser.add_argument(
        "--repeat", type=int, default=3, help="matching passes per count; the fastest is shown"
    )
    parser.add_argument(
        "--paired",
        type=int,
        default=5,
        help="back-to-back pairs of passes at 100 and 10,000 watchlists for their ratio",
    )
    options = parser.parse_args(argv)

    article_count = options.articles or (200 if options.quick else 1000)
    sizes = (
        [int(size) for size in options.sizes.split(",")]
        if options.sizes
        else ([100, 1_000, 10_000] if options.quick else [100, 1_000, 10_000, 100_000])
    )
    unique = load_texts(corpus_root())
    texts = [unique[i % len(unique)] for i in range(article_count)]
    repeats = max(0, article_count - len(unique))
    print(
        f"articles: {article_count} ({min(article_count, len(unique))} distinct corpus texts"
        + (f", {repeats} repeated to reach the count)" if repeats else ")")
    )

    # Timed one article at a time, as a worker analyses them: keeping a thousand analyses
    # alive while timing would mostly time the garbage collector walking them. Kept: one
    # article per language, which builds that language's index, and 50 to count candidates.
    languages: Counter[str | None] = Counter()
    samples: dict[str | None, AnalyzedText] = {}
    counted: list[AnalyzedText] = []
    started = time.perf_counter()
    for text in texts:
        doc = analyze(text.title, text.body, text.language)
        languages[doc.language] += 1
        samples.setdefault(doc.language, doc)
        if len(counted) < 50:
            counted.append(doc)
    analysis_seconds = time.perf_counter() - started
    print(
        f"analysis (normalise, tokenise, stem, detect language), once per article, first pass: "
        f"{analysis_seconds / article_count * 1000:.2f} ms/article = "
        f"{timed_rate(article_count, analysis_seconds):,.0f} articles/s"
    )
    print(f"languages: {dict(languages.most_common(6))}")
    normalised = [(normalize(t.title), normalize(t.body)) for t in texts]
    naive_order = random.Random(SEED).sample(range(article_count), article_count)
    # Everything built so far lives until the end: keep the collector from walking it again
    # and again (a daemon holds one article at a time, not a thousand).
    gc.collect()
    gc.freeze()

    words, phrases = vocabulary(unique)
    print(
        f"vocabulary: {len(words['fr'])} fr + {len(words['en'])} en words, "
        f"{len(phrases['fr'])} fr + {len(phrases['en'])} en phrases"
    )
    print()
    header = (
        f"{'watchlists':>10} {'build s':>8} {'match art/s':>12} {'with analysis':>14} "
        f"{'cand/art':>9} {'hits/art':>9} {'naive art/s':>12} {'naive on':>9} {'speed-up':>9}"
    )
    print(header)
    print("-" * len(header))
    results: dict[int, tuple[float, float]] = {}  # size -> (matching, analysis) seconds
    kept: dict[int, Matcher] = {}  # the matchers the ratio below compares, pass for pass
    for size in sizes:
        queries = generate_queries(size, words, phrases)
        started = time.perf_counter()
        watchlists = build_watchlists(queries, None if options.no_topics else words)
        matcher = Matcher(watchlists)
        for language in sorted(samples, key=str):
            matcher.match_analyzed(samples[language])  # builds this language's index
        build_seconds = time.perf_counter() - started
        gc.collect()
        gc.freeze()  # the matcher lives as long as its configuration

        # Each article is analysed, then matched at once, as in a worker; the two are timed
        # apart. (What matching works out lazily on an article is thus paid at every size.)
        # The fastest of --repeat passes: other work on the machine only ever adds time.
        passes = [matching_pass(matcher, texts) for _ in range(max(1, options.repeat))]
        match_seconds = min(seconds for seconds, _, _ in passes)
        analysed_seconds = min(seconds for _, seconds, _ in passes)
        hits = passes[0][2]
        results[size] = (match_seconds, analysed_seconds)
        if size in RATIO_SIZES:
            kept[size] = matcher
        candidates = sum(matcher.candidate_count(doc) for doc in counted) / len(counted)

        naive = [NaiveWatchlist(w.query) for w in watchlists]
        # Articles in a fixed random order (their lengths vary tenfold), as many as fit in
        # NAIVE_BUDGET_SECONDS, at least 2.
        naive_articles = 0
        started = time.perf_counter()
        for index in naive_order:
            title, body = normalised[index]
            for watchlist in naive:
                watchlist.matches(title, body)
            naive_articles += 1
            if naive_articles >= 2 and time.perf_counter() - started > NAIVE_BUDGET_SECONDS:
                break
        naive_rate = timed_rate(naive_articles, time.perf_counter() - started)

        match_rate = timed_rate(article_count, match_seconds)
        with_analysis = timed_rate(article_count, match_seconds + analysed_seconds)
        print(
            f"{size:>10,} {build_seconds:>8.1f} {match_rate:>12,.0f} {with_analysis:>14,.0f} "
            f"{candidates:>9,.0f} {hits / article_count:>9.2f} {naive_rate:>12,.1f} "
            f"{naive_articles:>9,} {match_rate / naive_rate:>8,.0f}×"
        )
        print(f"{'':>10} e.g. {render(watchlists[size // 2].query)}", file=sys.stderr)
    if 100 in results and 10_000 in results:
        matching_only = results[10_000][0] / results[100][0]
        whole = sum(results[10_000]) / sum(results[100])
        print(
            f"\ntime at 10,000 / time at 100: {matching_only:.2f} matching only, "
            f"{whole:.2f} with analysis"
        )
        # The two counts above were timed minutes apart, and a count's rate moves by a few
        # per cent from run to run on a shared machine: pair passes instead, back to back.
        ratios = []
        for _ in range(max(1, options.paired)):
            low = matching_pass(kept[100], texts)[0]
            high = matching_pass(kept[10_000], texts)[0]
            ratios.append(high / low)
        ratios.sort()
        print(
            f"the same over {len(ratios)} back-to-back pairs of passes: median "
            f"{ratios[len(ratios) // 2]:.2f} (from {ratios[0]:.2f} to {ratios[-1]:.2f})"
        )
    for size in sorted(kept):
        total, scoring = scoring_share(kept[size], texts)
        without = total - scoring
        print(
            f"relevance scoring at {size:,} watchlists: matching {without / article_count * 1000:.3f} "
            f"ms/article without it, {total / article_count * 1000:.3f} with it "
            f"(+{scoring / without:.1%})"
        )


if __name__ == "__main__":
    sys.stdout = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", line_buffering=True)
    main()
