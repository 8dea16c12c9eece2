"""Filling a real store with articles the way a poll writes them (the decider's update,
then `Store.record`), for the tests (search, retention, digests, alerts, clocks) and the
benchmarks that need stored hits."""

from __future__ import annotations

import csv
import gzip
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from monitor.models import (
    ArticleText,
    Entry,
    FeedSpec,
    Fetched,
    HitResult,
    MatchedClause,
    NewArticle,
    NewBody,
    TextSource,
    Validators,
)
from monitor.schedule import decide_update
from monitor.store import Store
from tests.corpus import require_corpus


def item(
    link: str,
    title: str,
    text: str,
    *,
    hits: Sequence[HitResult] = (),
    language: str | None = "fr",
    published: datetime | None = None,
) -> NewArticle:
    entry = Entry(key=link, link=link, title=title, summary="", content="", published=published)
    article = ArticleText(
        url=link,
        title=title,
        text=text,
        source=TextSource.PAGE,
        language=language,
        published=published,
    )
    return NewArticle(entry=entry, article=article, hits=tuple(hits))


def record_poll(
    store: Store, feed_url: str, items: Sequence[NewArticle], now: datetime, name: str = "BBC"
) -> None:
    """One successful poll of `feed_url` at `now` bringing `items`."""
    spec = FeedSpec(url=feed_url, name=name)
    fetched = Fetched(
        url=feed_url, status=200, headers={}, content=b"", validators=Validators(etag=str(now))
    )
    body = NewBody(
        fetched=fetched,
        body_hash=f"hash-{now.isoformat()}-{len(items)}",
        feed_title=name,
        entries=len(items),
        new=tuple(items),
    )
    store.record(decide_update(store.feed_state(feed_url), spec, body, now))


ACCORD_FEED = "https://news.example.org/feed.xml"


def record_accord_hit(
    store: Store,
    number: int,
    now: datetime,
    *,
    watchlist: str = "accord",
    title: str | None = None,
    in_passing: bool = False,
    feed_url: str = ACCORD_FEED,
) -> None:
    """One poll of ``feed_url`` at ``now`` that finds article ``number`` ("Accord N",
    https://news.example.org/N) with one hit of ``watchlist`` on the word "accord"."""
    link = f"https://news.example.org/{number}"
    title = title or f"Accord {number}"
    entry = Entry(key=link, link=link, title=title, summary="", content="", published=now)
    article = ArticleText(
        url=link, title=title, text="L’accord est signé.", source=TextSource.PAGE, language="fr"
    )
    hit = HitResult(
        watchlist=watchlist,
        matched=("accord",),
        clauses=(MatchedClause("accord", ("accord",), "text"),),
        snippets=("L’[[accord]] est signé à Lomé.",),
        in_passing=in_passing,
    )
    body = NewBody(
        fetched=Fetched(url=feed_url, status=200, headers={}, content=b""),
        body_hash=f"body-{number}",
        feed_title="News",
        entries=1,
        new=(NewArticle(entry=entry, article=article, hits=(hit,)),),
    )
    store.record(decide_update(store.feed_state(feed_url), FeedSpec(url=feed_url), body, now))


def bbc_afrique() -> list[tuple[str, str]]:
    """(headline, text) of the MasakhaNEWS French test split (BBC Afrique articles)."""
    path: Path = require_corpus("articles", "masakhanews-fra", "masakhanews_fra_test.tsv.gz")
    with gzip.open(path, "rt", encoding="utf-8", newline="") as stream:
        return [(row["headline"], row["text"]) for row in csv.DictReader(stream, delimiter="\t")]
