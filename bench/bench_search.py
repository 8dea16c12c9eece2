"""Benchmark: `monitor search` through the FTS5 index against reading every stored article.

    .venv/bin/python bench/bench_search.py             # 5,000 stored articles
    .venv/bin/python bench/bench_search.py --articles 2000

Articles: the French MasakhaNEWS (BBC Afrique) rows of the shared corpus (../shared/corpus,
or $MONITOR_CORPUS), headline + text, cycled to the requested count under distinct URLs
(the report says how many are repeats), stored through `Store.record` as a poll writes them.

Printed, per query: the articles the index made the matcher read, the matching articles,
the time through the index and the time reading every article (the fastest of two passes
each), and whether both found the same articles (they must).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.models import (
    ArticleText,
    Entry,
    FeedSpec,
    Fetched,
    NewArticle,
    NewBody,
    TextSource,
)
from monitor.query import parse_query
from monitor.schedule import decide_update
from monitor.search import search_articles
from monitor.service import search_store
from monitor.store import Store

QUERIES = [
    "Togo",
    "coup d'État",
    '"coup d\'État"',
    '"Côte d\'Ivoire"',
    "CEDEAO AND sanction*",
    "militaire NEAR/10 (Mali OR Niger)",
    "élection présidentielle NOT football",
]


def corpus_rows() -> list[tuple[str, str]]:
    root = Path(os.environ.get("MONITOR_CORPUS") or Path(__file__).parents[2] / "shared/corpus")
    path = root / "articles" / "masakhanews-fra" / "masakhanews_fra_test.tsv.gz"
    with gzip.open(path, "rt", encoding="utf-8", newline="") as stream:
        return [(row["headline"], row["text"]) for row in csv.DictReader(stream, delimiter="\t")]


def fill(store: Store, count: int) -> int:
    rows = corpus_rows()
    now = datetime.now(UTC)
    feed = "https://bbc.example/rss"
    new = []
    for index in range(count):
        title, text = rows[index % len(rows)]
        link = f"https://bbc.example/a/{index}"
        entry = Entry(key=link, link=link, title=title, summary="", content="", published=now)
        article = ArticleText(
            url=link, title=title, text=text, source=TextSource.PAGE, language="fr"
        )
        new.append(NewArticle(entry=entry, article=article, hits=()))
    fetched = Fetched(url=feed, status=200, headers={}, content=b"")
    body = NewBody(fetched=fetched, body_hash="h", feed_title="BBC", entries=count, new=tuple(new))
    spec = FeedSpec(url=feed, name="BBC")
    store.record(decide_update(store.feed_state(feed), spec, body, now))
    return len(rows)


def fastest(run: object, passes: int = 2) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(passes):
        started = time.perf_counter()
        result = run()  # type: ignore[operator]
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=5000)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, Store(Path(folder) / "monitor.db") as store:
        started = time.perf_counter()
        distinct = fill(store, arguments.articles)
        print(
            f"{arguments.articles} articles stored ({max(0, arguments.articles - distinct)} "
            f"repeats) and indexed in {time.perf_counter() - started:.1f} s"
        )
        print(f"{'query':42} {'read':>6} {'found':>6} {'index':>8} {'scan':>8}  same")
        for text in QUERIES:
            query = parse_query(text, {})
            indexed, run = fastest(lambda query=query: search_store(store, query, since=None))
            scanned, every = fastest(
                lambda query=query: search_articles(query, store.stored_articles(None, since=None)),
                passes=1,
            )
            same = {r.stored.article_id for r in run.results} == {  # type: ignore[attr-defined]
                r.stored.article_id
                for r in every  # type: ignore[attr-defined]
            }
            print(
                f"{text:42} {run.read:>6} {len(run.results):>6} "  # type: ignore[attr-defined]
                f"{indexed:>7.2f}s {scanned:>7.2f}s  {'yes' if same else 'NO'}"
            )


if __name__ == "__main__":
    main()
