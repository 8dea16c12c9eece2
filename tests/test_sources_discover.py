"""Feed discovery against real sites on 127.0.0.1: alternate links (one, several, none,
relative), the usual paths, and a site whose only source is a news sitemap named in
robots.txt. Every request goes through the project's Fetcher."""

from __future__ import annotations

import gzip
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from monitor.cli import main
from monitor.config import load_config
from monitor.errors import SourceError
from monitor.fetch import Fetcher
from monitor.sources.discover import alternate_links, discover, read_sitemap, sitemaps_in_robots
from tests.corpus import require_corpus
from tests.servers import HTTPTestServer, Reply
from tests.test_sources_edit import COMMENTED, rss

RSS = {"Content-Type": "application/rss+xml; charset=utf-8"}
HTML = {"Content-Type": "text/html; charset=utf-8"}


def page(head: str) -> Reply:
    return Reply(
        headers=HTML, body=f"<!doctype html><html><head>{head}</head><body>x</body></html>".encode()
    )


def atom(title: str, updated: str) -> Reply:
    body = (
        '<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>{title}</title><id>urn:x</id><updated>{updated}</updated>"
        f'<entry><title>A</title><id>urn:a</id><link href="https://example.org/a"/>'
        f"<updated>{updated}</updated></entry></feed>"
    )
    return Reply(headers={"Content-Type": "application/atom+xml"}, body=body.encode())


NEWS_SITEMAP = """<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"
        xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">
  <url><loc>https://news.example.org/2026/12/01/togo</loc>
    <news:news><news:publication><news:name>Exemple</news:name><news:language>fr</news:language></news:publication>
      <news:publication_date>2026-12-01T07:30:00+01:00</news:publication_date><news:title>Togo</news:title></news:news></url>
  <url><loc>https://news.example.org/2026/11/30/benin</loc>
    <news:news><news:publication><news:name>Exemple</news:name><news:language>fr</news:language></news:publication>
      <news:publication_date>2026-11-30T18:00:00Z</news:publication_date><news:title>Bénin</news:title></news:news></url>
</urlset>
""".encode()
PLAIN_SITEMAP = b"""<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <url><loc>https://news.example.org/about</loc><lastmod>2025-01-01</lastmod></url>
</urlset>
"""


@pytest.fixture
def fetcher() -> Iterator[Fetcher]:
    with Fetcher() as shared:
        yield shared


# --------------------------------------------------------------------------- pure parts


def test_alternate_links_are_resolved_and_filtered() -> None:
    html = b"""<html><head>
      <link rel="stylesheet" href="/style.css">
      <link rel="alternate" type="application/rss+xml" title="RSS" href="/rss.xml">
      <link rel="alternate" type="application/atom+xml" href="atom.xml">
      <link rel="alternate feed" type="application/feed+json" href="https://cdn.example.org/feed.json">
      <link rel="alternate" type="text/html" hreflang="en" href="/en/">
      <link rel="alternate" type="application/rss+xml" href="javascript:alert(1)">
      <link rel="alternate" type="application/rss+xml" href="/rss.xml?utm_source=dup">
    </head></html>"""
    assert alternate_links(html, "https://example.org/news/today.html") == [
        "https://example.org/rss.xml",
        "https://example.org/news/atom.xml",
        "https://cdn.example.org/feed.json",
    ]


def test_alternate_links_honour_the_base_element() -> None:
    html = b'<head><base href="https://static.example.org/site/"><link rel=alternate type="application/rss+xml" href="feed"></head>'
    assert alternate_links(html, "https://example.org/") == ["https://static.example.org/site/feed"]


def test_robots_sitemap_lines() -> None:
    robots = "User-agent: *\nDisallow: /admin\nSitemap: /sitemap.xml\nsitemap: https://example.org/news.xml # news\n"
    assert sitemaps_in_robots(robots, "https://example.org/robots.txt") == [
        "https://example.org/sitemap.xml",
        "https://example.org/news.xml",
    ]


def test_read_sitemap_knows_news_and_the_latest_date() -> None:
    info = read_sitemap(NEWS_SITEMAP, url="https://news.example.org/news.xml")
    assert info is not None and info.news and not info.index
    assert len(info.locations) == 2
    assert info.latest == datetime(2026, 12, 1, 6, 30, tzinfo=UTC)
    assert read_sitemap(b"<rss version='2.0'/>", url="x") is None
    assert read_sitemap(b"not xml", url="x") is None


# --------------------------------------------------------------------------- against a site


def test_a_feed_address_is_its_own_candidate(fetcher: Fetcher) -> None:
    feed = Reply(headers=RSS, body=rss("Direct", "Tue, 01 Dec 2026 08:00:00 GMT"))
    with HTTPTestServer({"/feed.xml": feed}) as server:
        found = discover(server.url("/feed.xml"), fetcher)
        assert len(server.requests) == 1
    [candidate] = found.candidates
    assert (candidate.title, candidate.entries, candidate.found_by) == (
        "Direct",
        1,
        "the address itself",
    )
    assert candidate.latest == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def test_a_page_with_one_relative_alternate_link(fetcher: Fetcher) -> None:
    routes = {
        "/articles/story.html": page(
            '<link rel="alternate" type="application/rss+xml" href="../feeds/all.rss">'
        ),
        "/feeds/all.rss": Reply(headers=RSS, body=rss("Tout", "Mon, 30 Nov 2026 10:00:00 GMT")),
    }
    with HTTPTestServer(routes) as server:
        found = discover(server.url("/articles/story.html"), fetcher)
    [candidate] = found.candidates
    assert candidate.url == server.url("/feeds/all.rss")
    assert candidate.title == "Tout"
    assert candidate.found_by == 'link rel="alternate"'


def test_a_page_with_several_feeds_lists_each_with_its_details(fetcher: Fetcher) -> None:
    routes = {
        "/": page(
            '<link rel="alternate" type="application/rss+xml" href="/feed/">'
            '<link rel="alternate" type="application/atom+xml" href="/comments.atom">'
            '<link rel="alternate" type="application/rss+xml" href="/broken.xml">'
            '<link rel="alternate" type="application/feed+json" href="/feed.json">'
        ),
        "/feed.json": Reply(
            headers={"Content-Type": "application/feed+json"},
            body=b'{"version": "https://jsonfeed.org/version/1.1", "title": "JSON", "items": '
            b'[{"id": "1", "url": "https://example.org/1", "date_published": "2026-11-28T10:00:00Z"}]}',
        ),
        "/feed/": Reply(
            headers=RSS,
            body=rss("Articles", "Tue, 01 Dec 2026 08:00:00 GMT", "Mon, 30 Nov 2026 08:00:00 GMT"),
        ),
        "/comments.atom": atom("Commentaires", "2026-11-29T12:00:00Z"),
        "/broken.xml": page(""),  # announced as a feed, serves HTML
    }
    with HTTPTestServer(routes) as server:
        found = discover(server.url("/"), fetcher)
    assert [(c.title, c.entries) for c in found.candidates] == [
        ("Articles", 2),
        ("Commentaires", 1),
        ("JSON", 1),
    ]
    assert any("broken.xml" in note and "HTML page" in note for note in found.notes)


def test_a_page_without_links_falls_back_to_the_usual_paths(fetcher: Fetcher) -> None:
    routes = {
        "/": page(""),
        "/section/page": page(""),
        "/feed": Reply(301, {"Location": "/feed/"}),
        "/feed/": Reply(headers=RSS, body=rss("Par défaut", "Tue, 01 Dec 2026 08:00:00 GMT")),
        "/rss": Reply(301, {"Location": "/feed/"}),  # the same feed again
        "/atom.xml": atom("Atom", "2026-12-01T00:00:00Z"),
    }
    with HTTPTestServer(routes) as server:
        found = discover(server.url("/section/page"), fetcher)
        assert server.count("/robots.txt") == 0  # feeds were found: no sitemap search
    assert [(c.url, c.found_by) for c in found.candidates] == [
        (server.url("/feed/"), "usual path /feed"),
        (server.url("/atom.xml"), "usual path /atom.xml"),
    ]


def test_a_site_with_only_a_news_sitemap_in_robots_txt(fetcher: Fetcher) -> None:
    routes = {
        "/": page(""),
        "/robots.txt": Reply(
            headers={"Content-Type": "text/plain"},
            body=b"User-agent: *\nSitemap: /sitemap.xml\nSitemap: /news-sitemap.xml\n",
        ),
        "/sitemap.xml": Reply(headers={"Content-Type": "application/xml"}, body=PLAIN_SITEMAP),
        "/news-sitemap.xml": Reply(headers={"Content-Type": "application/xml"}, body=NEWS_SITEMAP),
    }
    with HTTPTestServer(routes) as server:
        found = discover(server.url("/"), fetcher)
        assert all(count == 1 for count in Counter(r.path for r in server.requests).values())
    assert [(c.kind, c.news, c.url) for c in found.candidates] == [
        ("sitemap", True, server.url("/news-sitemap.xml")),  # news first
        ("sitemap", False, server.url("/sitemap.xml")),
    ]
    assert found.candidates[0].entries == 2


def test_a_sitemap_index_is_opened_for_its_news_sitemap(fetcher: Fetcher) -> None:
    with HTTPTestServer({"/": page("")}) as server:
        index = (
            '<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            f"<sitemap><loc>{server.url('/pages.xml')}</loc></sitemap>"
            f"<sitemap><loc>{server.url('/sitemap-news.xml')}</loc></sitemap></sitemapindex>"
        )
        server.routes.update(
            {
                "/robots.txt": Reply(body=b"Sitemap: /index.xml.gz\n"),
                "/index.xml.gz": Reply(body=index.encode()),
                "/sitemap-news.xml": Reply(body=NEWS_SITEMAP),
            }
        )
        found = discover(server.url("/"), fetcher)
    assert found.candidates[0].url == server.url("/sitemap-news.xml")
    assert found.candidates[0].news


def test_an_unreachable_address_is_an_error_naming_it(fetcher: Fetcher) -> None:
    with (
        HTTPTestServer({}) as server,
        pytest.raises(SourceError, match=r"/gone: the server answered 404"),
    ):
        discover(server.url("/gone"), fetcher)


def test_a_link_to_a_private_address_on_another_site_is_not_fetched(fetcher: Fetcher) -> None:
    """The typed address is trusted; a link it announces to another host must be public."""
    with HTTPTestServer({}) as target:
        routes = {
            "/": page(
                f'<link rel="alternate" type="application/rss+xml" href="{target.url("/rss", host="localhost")}">'
            ),
        }
        with HTTPTestServer(routes) as server:
            found = discover(server.url("/"), fetcher)
        assert target.requests == []
    assert any("refused to connect" in note for note in found.notes)


# --------------------------------------------------------------------------- the command


def test_add_lists_several_feeds_and_asks_for_pick(tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text(COMMENTED, encoding="utf-8")
    routes = {
        "/": page(
            '<link rel="alternate" type="application/rss+xml" href="/a.xml">'
            '<link rel="alternate" type="application/rss+xml" href="/b.xml">'
        ),
        "/a.xml": Reply(headers=RSS, body=rss("Flux A", "Tue, 01 Dec 2026 08:00:00 GMT")),
        "/b.xml": Reply(headers=RSS, body=rss("[Flux] B", "Sun, 29 Nov 2026 08:00:00 GMT")),
    }
    runner = CliRunner()
    with HTTPTestServer(routes) as server:
        listed = runner.invoke(main, ["-c", str(config), "add", server.url("/")])
        assert listed.exit_code == 2
        assert "Flux A" in listed.output and "[Flux] B" in listed.output
        assert "2026-12-01 08:00" in listed.output  # the latest entry of Flux A
        assert "--pick" in listed.output
        assert config.read_text(encoding="utf-8") == COMMENTED
        picked = runner.invoke(main, ["-c", str(config), "add", server.url("/"), "--pick", "2"])
        again = runner.invoke(main, ["-c", str(config), "add", server.url("/")])
    assert again.exit_code == 2
    assert "[Flux] B [already configured: [Flux] B]" in again.output
    assert picked.exit_code == 0, picked.output
    added = load_config(config).feeds[-1]
    assert (added.name, added.url) == ("[Flux] B", server.url("/b.xml"))


def test_add_a_sitemap_only_site_writes_type_sitemap(tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text(COMMENTED, encoding="utf-8")
    routes = {
        "/": page(""),
        "/robots.txt": Reply(body=b"Sitemap: /news.xml\n"),
        "/news.xml": Reply(headers={"Content-Type": "application/xml"}, body=NEWS_SITEMAP),
    }
    with HTTPTestServer(routes) as server:
        result = CliRunner().invoke(
            main, ["-c", str(config), "add", server.url("/"), "--name", "Exemple"]
        )
    assert result.exit_code == 0, result.output
    assert "type: sitemap" in result.output
    text = config.read_text(encoding="utf-8")
    assert f"- url: {server.url('/news.xml')}\n  name: Exemple\n  type: sitemap\n" in text
    load_config(config)  # valid


def test_a_broken_feed_address_says_why_it_is_not_a_feed(fetcher: Fetcher) -> None:
    broken = Reply(headers=RSS, body=b"<rss><channel><title>Cut</title><item><title>x")
    with HTTPTestServer({"/feed.xml": broken}) as server:
        found = discover(server.url("/feed.xml"), fetcher)
    assert found.candidates == ()
    assert "feed.xml is not well-formed XML" in found.notes[0]


@pytest.mark.corpus
def test_alternate_links_of_a_real_wordpress_page() -> None:
    path = require_corpus("articles", "dragnet", "dragnet_T148.html.gz")
    page_bytes = gzip.decompress(path.read_bytes())
    links = alternate_links(page_bytes, "http://www.nyasatimes.com/2012/11/some-article/")
    assert links[:3] == [
        "http://www.nyasatimes.com/feed/",
        "http://www.nyasatimes.com/feed/rss/",
        "http://www.nyasatimes.com/feed/atom/",
    ]
