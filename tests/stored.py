"""Filling a real store with articles the way a poll writes them (the decider's update,
then `Store.record`), for the tests of search and retention."""

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


def bbc_afrique() -> list[tuple[str, str]]:
    """(headline, text) of the MasakhaNEWS French test split (BBC Afrique articles)."""
    path: Path = require_corpus("articles", "masakhanews-fra", "masakhanews_fra_test.tsv.gz")
    with gzip.open(path, "rt", encoding="utf-8", newline="") as stream:
        return [(row["headline"], row["text"]) for row in csv.DictReader(stream, delimiter="\t")]
