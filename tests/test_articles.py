"""The article step on plain values: where the text comes from, and the hits on it."""

from __future__ import annotations

from datetime import UTC, datetime

from monitor.articles import InlineArticles, article_text, process_article
from monitor.matching import Matcher
from monitor.models import ArticleJob, ArticleText, Entry, Fetched, TextSource, Watchlist
from monitor.query import parse_query

PUBLISHED = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
ENTRY = Entry(
    key="k1",
    link="https://news.example.org/togo",
    title="Le Togo et la Russie",
    summary="Lomé et Moscou signent un accord de coopération militaire.",
    content="",
    published=PUBLISHED,
)
PAGE_HTML = (
    "<html lang='fr'><head><title>Accord militaire</title></head><body><article>"
    "<h1>Accord militaire</h1>"
    "<p>Le Togo a signé mardi un accord de coopération militaire avec la Russie, "
    "qui prévoit la formation d'officiers togolais.</p>"
    "<p>Le Parlement doit encore ratifier le texte dans les semaines à venir.</p>"
    "</article></body></html>"
).encode()
WATCHLISTS = [
    Watchlist(name="Togo", query=parse_query('Togo AND "coopération militaire"', {})),
    Watchlist(name="Parlement", query=parse_query("Parlement", {})),
]


def page(html: bytes = PAGE_HTML) -> Fetched:
    return Fetched(url="https://news.example.org/togo", status=200, headers={}, content=html)


def job(**changes: object) -> ArticleJob:
    values: dict[str, object] = {"entry": ENTRY, "feed_name": "News", "feed_language": "fr"}
    values.update(changes)
    return ArticleJob(**values)  # type: ignore[arg-type]


def test_a_page_that_yields_an_article_is_used_and_matched() -> None:
    article, hits, _ = process_article(job(page=page()), Matcher(WATCHLISTS))
    assert article.source is TextSource.PAGE
    assert "Parlement" in article.text
    assert article.published == PUBLISHED
    assert sorted(hit.watchlist for hit in hits) == ["Parlement", "Togo"]


def test_without_a_page_the_feed_text_is_matched_and_the_reason_kept() -> None:
    article, hits, _ = process_article(
        job(no_page_reason="https://news.example.org/togo: HTTP 404"), Matcher(WATCHLISTS)
    )
    assert article.source is TextSource.FEED
    assert article.text == ENTRY.summary
    assert article.note == "https://news.example.org/togo: HTTP 404; using the feed's text"
    assert [hit.watchlist for hit in hits] == ["Togo"]  # "Parlement" is only on the page


def test_a_page_without_article_text_falls_back_with_the_pages_reason() -> None:
    empty = b"<html><body><nav><a href='/'>Accueil</a></nav></body></html>"
    article = article_text(job(page=page(empty)))
    assert article.source is TextSource.FEED
    assert article.note == "the page yielded no article text; using the feed's text"


def test_a_stored_article_is_reused_as_it_is() -> None:
    known = ArticleText(
        url=ENTRY.link,
        title="Stocké",
        text="Le Parlement togolais.",
        source=TextSource.PAGE,
        language="fr",
    )
    article, hits, _ = process_article(job(known=known, page=page()), Matcher(WATCHLISTS))
    assert article is known
    assert [hit.watchlist for hit in hits] == ["Parlement"]


def test_an_entry_without_link_uses_the_feed_text() -> None:
    entry = Entry(
        key="k2",
        link=None,
        title="Togo",
        summary="La coopération militaire.",
        content="",
        published=None,
    )
    article = article_text(job(entry=entry))
    assert (article.source, article.url) == (TextSource.FEED, None)
    assert article.note == "the entry has no web link; using the feed's text"


def test_inline_articles_follow_new_watchlists() -> None:
    inline = InlineArticles(WATCHLISTS[:1])
    _, hits, _ = inline.process(job(page=page()))
    assert [hit.watchlist for hit in hits] == ["Togo"]
    inline.set_watchlists(WATCHLISTS[1:])
    _, hits, _ = inline.process(job(page=page()))
    assert [hit.watchlist for hit in hits] == ["Parlement"]
