"""Benchmark and evaluation: one story, once (monitor/stories.py).

    .venv/bin/python bench/bench_stories.py           # everything (about a minute)
    .venv/bin/python bench/bench_stories.py --quick   # 40 built articles, no extraction of every page

Printed:

1. Cost per article, over the corpus texts (MasakhaNEWS and the ground-truth article texts of
   ../shared/corpus, or $MONITOR_CORPUS): the signature (words, shingles, MinHash), then the
   LSH query and insert against an index already holding 0, 10,000 and 100,000 signatures,
   and the time and memory to load that many signatures at start (as `StoryTracker` does,
   in one `add_all`). The stored signatures are
   random (uniform 32-bit values): as distinct stories, which most stored articles are.
2. Clustering on the corpus (tests/story_eval.py): texts signed, stories wrongly merged, the
   same-story pairs found; the closest pairs of two different stories. Unless --quick, the
   pages are the project's extraction of every corpus page (boilerplate and all) in place of
   their ground-truth texts.
3. Recall on built pairs (an article republished by another outlet's template, with a
   tweaked title and another URL; also edited, or truncated to 60 %), and how recall and
   the corpus's wrong merges move with the threshold.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.extract import extract_page
from monitor.stories import (
    NUM_PERM,
    SAME_STORY_JACCARD,
    StoryIndex,
    signature,
    similarity,
)
from tests.corpus import corpus_path
from tests.story_eval import (
    Document,
    built_pairs,
    built_recall,
    cluster,
    corpus_documents,
    nearest_other_stories,
    story_labels,
)


def random_signatures(count: int, seed: int = 1) -> list[bytes]:
    generator = np.random.default_rng(seed)
    values = generator.integers(0, 2**32, size=(count, NUM_PERM), dtype=np.uint32)
    return [row.astype("<u4").tobytes() for row in values]


def per_article_costs(texts: list[str]) -> None:
    started = time.perf_counter()
    signatures = [signature(text) for text in texts]
    elapsed = time.perf_counter() - started
    signed = [stored for stored in signatures if stored is not None]
    words = statistics.mean(len(text.split()) for text in texts)
    print(
        f"signature: {elapsed / len(texts) * 1000:.3f} ms per article "
        f"({len(texts)} texts, {words:.0f} words on average, {len(signed)} signed)"
    )
    for stored_count in (0, 10_000, 100_000):
        stored_signatures = random_signatures(stored_count)
        index = StoryIndex()
        tracemalloc.start()
        started = time.perf_counter()
        index.add_all((-1 - number, stored) for number, stored in enumerate(stored_signatures))
        load = time.perf_counter() - started
        memory = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        started = time.perf_counter()
        for number, stored in enumerate(signed):
            index.same_story(stored)
            index.add(number, stored)
        step = time.perf_counter() - started
        print(
            f"index of {stored_count:>7,}: query + insert {step / len(signed) * 1000:.3f} ms "
            f"per article; loading it took {load:.2f} s and {memory / 2**20:.0f} MiB"
        )


def extracted_pages(root: Path) -> list[Document]:
    documents = []
    for path in sorted((root / "articles").glob("*/*.html.gz")):
        if path.name.endswith(".expected.html.gz"):
            continue
        record_path = path.with_name(path.name.removesuffix(".html.gz") + ".json")
        record = json.loads(record_path.read_text(encoding="utf-8"))
        page = extract_page(gzip.decompress(path.read_bytes()), url=record.get("url"))
        name = f"{path.parent.name}/{path.name.removesuffix('.html.gz')}"
        documents.append(Document(name, "extracted", page.text, record.get("url"), page.title))
    return documents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer built pairs, no extraction")
    arguments = parser.parse_args()
    root = corpus_path()
    if root is None:
        sys.exit("no corpus: set MONITOR_CORPUS=/path/to/corpus")

    documents = corpus_documents(root)
    texts = [document.text for document in documents if document.kind in ("bbc", "page")]
    print("== cost per article")
    per_article_costs(texts)

    print("\n== clustering the corpus")
    if not arguments.quick:
        started = time.perf_counter()
        pages = extracted_pages(root)
        print(
            f"(every corpus page extracted: {len(pages)} in {time.perf_counter() - started:.0f} s)"
        )
        # The extracted pages stand for the ground-truth texts of the same pages.
        documents = [document for document in documents if document.kind in ("bbc", "feed")]
        documents += pages
    labels = story_labels(documents)
    result = cluster(documents, labels)
    print(
        f"{result.documents} texts signed, {result.unsigned} under the word minimum; "
        f"{len(result.wrong_merges)} stories wrongly merged; "
        f"{result.found_pairs} of {result.same_pairs} same-story pairs found "
        f"(recall {result.recall:.2f})"
    )
    for first, second, score in result.wrong_merges:
        print(f"  WRONG MERGE {score:.2f}: {first} + {second}")
    print("closest pairs of two different stories:")
    for score, first, second in nearest_other_stories(documents, labels, top=6):
        print(f"  {score:.2f}  {first}  {second}")

    print("\n== built pairs (another template, title and URL)")
    count = 40 if arguments.quick else 150
    pairs = built_pairs(documents, count=count, seed=7)
    for kind, (found, total, mean) in built_recall(pairs).items():
        print(
            f"{kind:>10}: {found}/{total} found (recall {found / total:.2f}), mean similarity {mean:.2f}"
        )
    print("\nthreshold sweep (estimated Jaccard; the chosen one is marked):")
    scores: dict[str, list[float]] = {}
    for pair in pairs:
        signed_first, signed_second = signature(pair.first), signature(pair.second)
        if signed_first is not None and signed_second is not None:
            scores.setdefault(pair.kind, []).append(similarity(signed_first, signed_second))
    others = nearest_other_stories(documents, labels, floor=0.4, top=1000)
    for threshold in (0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9):
        recall = "  ".join(
            f"{kind} {sum(score >= threshold for score in values) / len(values):.2f}"
            for kind, values in scores.items()
        )
        merged = sum(score >= threshold for score, _, _ in others)
        mark = " <-" if threshold == SAME_STORY_JACCARD else ""
        print(f"  {threshold:.2f}: recall {recall}; pairs of two stories over it: {merged}{mark}")


if __name__ == "__main__":
    main()
