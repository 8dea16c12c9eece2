"""The digest of a corpus-wide day: how big the e-mail is, and how long it takes to make.

Every French BBC Afrique article of the corpus (MasakhaNEWS, test and few-shot train
files) arrives on one day and is matched by the evaluation's watchlists
(tests/data/evaluation/watchlists.yaml, the topics our relevance judgements are made
against) and by the bundled feeds.yaml's. The hits become one digest, rendered in
French and in English, and the script prints its figures: hits, watchlists, stories
in full and on one line, the HTML part's size as sent (the budget is 100,000 bytes,
under Gmail's clipping point) and the time to build and render it.

    .venv/bin/python bench/bench_digest.py
    .venv/bin/python bench/bench_digest.py --copies 3   # the same day with 3x the hits
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.config import load_config
from monitor.digest import HTML_BUDGET, build_digest, html_part, render_message, sent_size
from monitor.matching import Matcher
from monitor.models import ArticleText, ClaimedDigest, StoredHit, TextSource, Watchlist
from tests.corpus import corpus_path
from tests.test_evaluation import (
    MASAKHANEWS_DIR,
    MASAKHANEWS_TEST,
    MASAKHANEWS_TRAIN,
    load_watchlists,
    read_masakhanews,
)

REPOSITORY = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
LOME = ZoneInfo("Africa/Lome")


def corpus_articles(root: Path) -> list[ArticleText]:
    folder = root.joinpath(*MASAKHANEWS_DIR)
    rows = {
        **read_masakhanews(folder / MASAKHANEWS_TEST, key="url"),
        **{
            f"train:{headline}": value
            for headline, value in read_masakhanews(
                folder / MASAKHANEWS_TRAIN, key="headline"
            ).items()
        },
    }
    articles = []
    for key, (headline, text) in rows.items():
        path = key.removeprefix("train:")
        url = None
        if not key.startswith("train:"):  # the test split's keys are URLs, or paths of one
            url = (
                path
                if path.startswith("http")
                else f"https://www.bbc.com/afrique/{path.lstrip('/')}"
            )
        articles.append(
            ArticleText(url=url, title=headline, text=text, source=TextSource.PAGE, language="fr")
        )
    return articles


def watchlists() -> list[Watchlist]:
    evaluation = load_watchlists()
    found = [
        Watchlist(name=spec.name, query=spec.query, topic=spec.topic) for spec in evaluation.specs
    ]
    bundled = load_config(REPOSITORY / "feeds.yaml", environ={"SMTP_PASSWORD": "x"})
    names = {watchlist.name for watchlist in found}
    found += [watchlist for watchlist in bundled.watchlists if watchlist.name not in names]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--copies", type=int, default=1, help="N times the day's hits, as other articles"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="write each language's parts to OUT/digest-LANG.html and OUT/digest-LANG.txt",
    )
    arguments = parser.parse_args()
    root = corpus_path()
    if root is None:
        sys.exit("corpus not found: put it at ../shared/corpus or set MONITOR_CORPUS")
    articles = corpus_articles(root)
    chosen = watchlists()
    matcher = Matcher(chosen)
    started = time.perf_counter()
    hits: list[StoredHit] = []
    for copy in range(arguments.copies):
        for number, article in enumerate(articles):
            for found in matcher.match(article, feed_name="BBC Afrique"):
                hit_id = len(hits) + 1
                hits.append(
                    StoredHit(
                        hit_id=hit_id,
                        watchlist=found.watchlist,
                        article_id=copy * len(articles) + number,
                        # Copies are other articles (another day's stories), as a store
                        # that keys articles by URL would hold them.
                        title=article.title if copy == 0 else f"{article.title} ({copy + 1})",
                        url=article.url
                        if copy == 0 or article.url is None
                        else f"{article.url}?copy={copy + 1}",
                        feed="BBC Afrique",
                        published=NOW - timedelta(minutes=number),
                        found_at=NOW - timedelta(minutes=number),
                        matched=found.matched,
                        snippets=found.snippets,
                        relevance=found.relevance,
                        in_passing=found.in_passing,
                    )
                )
    matched = time.perf_counter() - started
    claimed = ClaimedDigest("bench", "<bench@monitor.local>", tuple(hits), NOW, 1)
    print(
        f"corpus day: {len(articles) * arguments.copies} articles, {len(chosen)} watchlists, "
        f"{len(hits)} hits ({sum(hit.in_passing for hit in hits)} in passing) in "
        f"{len({hit.watchlist for hit in hits})} watchlists; matched in {matched:.1f} s"
    )
    print(
        f"{'language':<9} {'in full':>8} {'one line':>9} {'HTML sent':>10} {'budget':>8} {'build+render':>13}"
    )
    for language in ("fr", "en"):
        started = time.perf_counter()
        content = build_digest(
            claimed,
            watchlist_order=[watchlist.name for watchlist in chosen],
            tz=LOME,
            now=NOW,
            topics={w.name: w.topic for w in chosen if w.topic},
            covers_from=NOW - timedelta(days=1),
        )
        message = render_message(
            content,
            sender="veille@example.org",
            recipients=["analyste@example.org"],
            subject="Veille",
            message_id="<bench@monitor.local>",
            tz=LOME,
            language=language,
        )
        elapsed = time.perf_counter() - started
        html = html_part(message)
        if arguments.out is not None:
            arguments.out.mkdir(parents=True, exist_ok=True)
            (arguments.out / f"digest-{language}.html").write_text(html, encoding="utf-8")
            plain = message.get_body(("plain",))
            if plain is not None:
                (arguments.out / f"digest-{language}.txt").write_text(
                    str(plain.get_content()).replace("\r\n", "\n"), encoding="utf-8"
                )
        full = len(re.findall(r'<div class="s"', html))
        lines = len(re.findall(r"<li", html))
        print(
            f"{language:<9} {full:>8} {lines:>9} {sent_size(message):>10,} {HTML_BUDGET:>8,} "
            f"{elapsed * 1000:>10.0f} ms"
        )


if __name__ == "__main__":
    main()
