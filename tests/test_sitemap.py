"""News sitemaps as a source: parsing (news, plain, index, hostile XML), what one poll
reads, and whole polls against a real server on 127.0.0.1 with a real SQLite file
(newest first, the per-poll cap and its carry-over, gzip, 304, auto-detection).

The fixtures in tests/data/sitemaps imitate real sitemaps (each file says which);
http://SITE in them is replaced by the test server's address.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from monitor.articles import InlineArticles
from monitor.cli import main
from monitor.fetch import Fetcher
from monitor.models import (
    ArticleText,
    Entry,
    FeedSpec,
    FetchLimits,
    ParseFailed,
    PollOutcome,
    Watchlist,
)
from monitor.pipeline import FeedReport, Pipeline
from monitor.query import parse_query
from monitor.sitemaps import (
    MAX_CHILD_SITEMAPS,
    SITEMAP_LOOKBACK,
    ChildSitemap,
    ParsedSitemap,
    children_to_read,
    entries_to_read,
    looks_like_sitemap,
    parse_sitemap,
    read_since,
    w3c_datetime,
)
from monitor.store import Store
from tests.servers import HTTPTestServer, Reply

DATA = Path(__file__).parent / "data" / "sitemaps"
NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
WATCHLISTS = [Watchlist(name="Togo", query=parse_query("Togo", {}))]
XML = {"Content-Type": "application/xml; charset=utf-8"}
HTML = {"Content-Type": "text/html; charset=utf-8"}


def fixture(name: str, site: str) -> bytes:
    """A data file with http://SITE pointing at `site` (``127.0.0.1:PORT``)."""
    return (DATA / name).read_text(encoding="utf-8").replace("SITE", site).encode()


def site_of(server: HTTPTestServer) -> str:
    return f"127.0.0.1:{server.port}"


def page(title: str) -> bytes:
    return (
        f"<html lang='fr'><head><title>{title}</title></head><body><article><h1>{title}</h1>"
        "<p>Lomé et ses partenaires ont signé mardi un accord qui prévoit la formation "
        "d'officiers togolais et des exercices communs dans le golfe de Guinée.</p>"
        "<p>Le texte doit encore être ratifié par le Parlement du Togo dans les semaines "
        "à venir, selon le ministère.</p></article></body></html>"
    ).encode()


def news_sitemap(urls: list[tuple[str, datetime]]) -> bytes:
    items = "".join(
        f"<url><loc>{loc}</loc><news:news><news:publication><news:name>Le Fil</news:name>"
        f"<news:language>fr</news:language></news:publication>"
        f"<news:publication_date>{published.isoformat()}</news:publication_date>"
        f"<news:title>Le Togo, dépêche {n}</news:title></news:news></url>"
        for n, (loc, published) in enumerate(urls)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
        f'xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">{items}</urlset>'
    ).encode()


@pytest.fixture
def server() -> Iterator[HTTPTestServer]:
    with HTTPTestServer() as running:
        yield running


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "monitor.db") as opened:
        yield opened


Clock = list[datetime]
PipelineFactory = Callable[..., tuple[Pipeline, Clock]]


@pytest.fixture
def make_pipeline(store: Store) -> Iterator[PipelineFactory]:
    """A pipeline with a real fetcher, the article step inline and a clock the test moves."""
    with ExitStack() as stack:

        def make(max_sitemap_urls: int = 200) -> tuple[Pipeline, Clock]:
            fetcher = stack.enter_context(Fetcher(FetchLimits(timeout=5.0, connect_timeout=2.0)))
            now = [NOW]
            pipeline = Pipeline(
                store=store,
                fetcher=fetcher,
                articles=InlineArticles(WATCHLISTS),
                clock=lambda: now[0],
                page_threads=1,  # pages in entry order, so request order can be checked
                max_sitemap_urls=max_sitemap_urls,
            )
            stack.callback(pipeline.close)
            return pipeline, now

        yield make


def stored(store: Store) -> dict[str, ArticleText]:
    return {article.url or "": article for _, article, _ in store.articles_since(None)}


def page_paths(server: HTTPTestServer) -> list[str]:
    return [request.path for request in server.requests if request.path.endswith(".html")]


def polled(report: FeedReport, outcome: PollOutcome) -> FeedReport:
    assert report.outcome is outcome, report
    return report


# --------------------------------------------------------------------------- parsing


def test_news_sitemap_gives_title_date_language_and_publication() -> None:
    parsed = parse_sitemap(fixture("news-sitemap.xml", "news.test"), url="http://news.test/n.xml")
    assert isinstance(parsed, ParsedSitemap), parsed
    assert parsed.title == "Le Quotidien d'Afrique"
    assert not parsed.is_index and parsed.warnings == ()
    first, second, third = parsed.entries
    assert first == Entry(
        key="http://news.test/afrique/article/2026/11/28/togo-accord-de-defense.html",
        link="http://news.test/afrique/article/2026/11/28/togo-accord-de-defense.html",
        title="Le Togo signe un accord de défense avec ses voisins",
        summary="",
        content="",
        published=datetime(2026, 11, 28, 7, 15, tzinfo=UTC),
        language="fr",
    )
    assert second.title == "Ghana : la commission électorale publie les résultats"  # CDATA
    assert second.published == datetime(2026, 11, 28, 6, 40, 12, tzinfo=UTC)
    # publication_date wins over lastmod; fr-FR is reduced to its primary subtag.
    assert third.published == datetime(2026, 11, 27, 21, 5, tzinfo=UTC)
    assert third.title == "Sahel : un sommet à Niamey sur la sécurité & le commerce"
    assert third.language == "fr"


def test_plain_sitemap_gives_lastmod_and_no_title() -> None:
    parsed = parse_sitemap(fixture("plain-sitemap.xml", "site.test"), url="http://site.test/s.xml")
    assert isinstance(parsed, ParsedSitemap), parsed
    assert [(entry.link, entry.published, entry.title) for entry in parsed.entries] == [
        ("http://site.test/2026/11/25/conseil-des-ministres/", datetime(2026, 11, 25, 10, 2, 41, tzinfo=UTC), ""),
        ("http://site.test/2026/11/27/port-de-lome/", datetime(2026, 11, 27, 16, 30, tzinfo=UTC), ""),
        ("http://site.test/2026/11/28/accord-de-defense/", datetime(2026, 11, 28, 7, 45, tzinfo=UTC), ""),
        ("http://site.test/a-propos/", None, ""),
    ]  # fmt: skip
    assert all(entry.key == entry.link for entry in parsed.entries)


def test_sitemap_index_gives_its_children() -> None:
    parsed = parse_sitemap(fixture("sitemap-index.xml", "site.test"), url="http://site.test/i.xml")
    assert isinstance(parsed, ParsedSitemap), parsed
    assert parsed.is_index and parsed.entries == ()
    assert [(child.url, child.lastmod) for child in parsed.children] == [
        ("http://site.test/post-sitemap.xml", datetime(2026, 10, 2, 9, 12, 44, tzinfo=UTC)),
        ("http://site.test/post-sitemap2.xml.gz", datetime(2026, 11, 28, 7, 50, 3, tzinfo=UTC)),
        ("http://site.test/page-sitemap.xml", datetime(2026, 11, 27, 18, 0, tzinfo=UTC)),
    ]


def test_bad_locations_are_skipped_and_repeats_read_once() -> None:
    body = (
        b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        b"<url><loc>/relative/ok</loc></url><url><loc>javascript:alert(1)</loc></url>"
        b"<url><loc></loc></url><url><loc>https://site.test/relative/ok</loc></url>"
        b"<url><lastmod>2026-11-28</lastmod></url></urlset>"
    )
    parsed = parse_sitemap(body, url="https://site.test/sitemap.xml")
    assert isinstance(parsed, ParsedSitemap), parsed
    assert [entry.link for entry in parsed.entries] == ["https://site.test/relative/ok"]
    assert parsed.warnings == (
        "3 location(s) skipped: not an absolute http(s) URL",
        "1 location(s) listed twice: read once",
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-28", datetime(2026, 11, 28, tzinfo=UTC)),
        ("2026-11-28T08:15+01:00", datetime(2026, 11, 28, 7, 15, tzinfo=UTC)),
        ("2026-11-28T08:15:30.123Z", datetime(2026, 11, 28, 8, 15, 30, 123000, tzinfo=UTC)),
        ("2026-11-28T08:15:30", datetime(2026, 11, 28, 8, 15, 30, tzinfo=UTC)),
        ("Sat, 28 Nov 2026 08:15:00 +0100", datetime(2026, 11, 28, 7, 15, tzinfo=UTC)),
        ("0000-00-00", None),
        ("1900-01-01", None),
        ("2026-13-45", None),
        ("yesterday", None),
        ("", None),
    ],
)
def test_sitemap_dates(text: str, expected: datetime | None) -> None:
    assert w3c_datetime(text) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'<?xml version="1.0"?>\n<urlset xmlns="x">', True),
        (b"\xef\xbb\xbf  <sitemapindex>", True),
        (b"<!-- a <url> in a comment --><?xml-stylesheet href='s.xsl'?><urlset>", True),
        (b"<sm:urlset xmlns:sm='http://www.sitemaps.org/schemas/sitemap/0.9'>", True),
        (b'<?xml version="1.0"?><rss version="2.0"><channel>', False),
        (b"<feed xmlns='http://www.w3.org/2005/Atom'>", False),
        (b"<!DOCTYPE html><html>", False),
        (b'{"version": "https://jsonfeed.org/version/1.1"}', False),
        (b"", False),
    ],
)
def test_looks_like_sitemap(body: bytes, expected: bool) -> None:
    assert looks_like_sitemap(body) is expected


@pytest.mark.parametrize(
    "body",
    [
        b"<!DOCTYPE html><html><body>Log in</body></html>",
        b'<?xml version="1.0"?><rss version="2.0"><channel/></rss>',
        b"not xml at all",
        b"",
    ],
)
def test_what_is_not_a_sitemap_fails_with_the_url_and_what_to_do(body: bytes) -> None:
    failed = parse_sitemap(body, url="https://site.test/sitemap.xml")
    assert isinstance(failed, ParseFailed), failed
    assert failed.message.startswith("https://site.test/sitemap.xml is not a")
    assert "type: sitemap" in failed.message


def test_a_broken_sitemap_keeps_what_came_before_the_break() -> None:
    body = (
        b"<urlset><url><loc>https://site.test/a</loc></url>"
        b"<url><loc>https://site.test/b</loc></url><url><loc>https://site.test/c</lo"
    )
    parsed = parse_sitemap(body, url="https://site.test/sitemap.xml")
    assert isinstance(parsed, ParsedSitemap), parsed
    assert [entry.link for entry in parsed.entries][:2] == [
        "https://site.test/a",
        "https://site.test/b",
    ]
    assert parsed.warnings[0].startswith("the sitemap is not well-formed XML (")


def _titled(title: str) -> str:
    return (
        '<urlset xmlns:news="http://www.google.com/schemas/sitemap-news/0.9"><url>'
        "<loc>https://site.test/a</loc><news:news>"
        f"<news:title>{title}</news:title></news:news></url></urlset>"
    )


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        # Latin-1 bytes, as the XML declaration says.
        (('<?xml version="1.0" encoding="ISO-8859-1"?>' + _titled("Défense à Lomé")).encode("latin-1"), {}),
        # UTF-8 bytes served under a wrong charset: valid UTF-8 wins, as for feeds.
        (_titled("Défense à Lomé").encode(), {"Content-Type": "text/xml; charset=iso-8859-1"}),
        # A byte order mark and blank lines before the declaration.
        (b"\xef\xbb\xbf\n\n" + ('<?xml version="1.0"?>' + _titled("Défense à Lomé")).encode(), {}),
    ],
    ids=["latin-1-declared", "utf-8-mislabelled", "bom-and-blank-lines"],
)  # fmt: skip
def test_sitemap_text_is_decoded_as_feeds_are(body: bytes, headers: dict[str, str]) -> None:
    parsed = parse_sitemap(body, url="https://site.test/sitemap.xml", headers=headers)
    assert isinstance(parsed, ParsedSitemap), parsed
    assert [entry.title for entry in parsed.entries] == ["Défense à Lomé"]
    assert parsed.warnings == ()


def test_bytes_in_no_encoding_are_read_as_windows_1252_with_a_warning() -> None:
    body = _titled("Défense").encode()
    body = body.replace("Défense".encode(), b"D\xe9fense \x93Lom\xe9\x94")
    parsed = parse_sitemap(body, url="https://site.test/sitemap.xml")
    assert isinstance(parsed, ParsedSitemap), parsed
    assert [entry.title for entry in parsed.entries] == ["Défense “Lomé”"]
    assert parsed.warnings == (
        "some bytes are not valid UTF-8 (no charset declared); read them as windows-1252",
    )


def test_bare_ampersands_and_html_entities_are_mended() -> None:
    body = (
        b'<urlset xmlns:news="http://www.google.com/schemas/sitemap-news/0.9"><url>'
        b"<loc>https://site.test/article?id=12&lang=fr&amp;page=2</loc><news:news>"
        b"<news:title>Lom&eacute;&nbsp;: l&#8217;accord &amp; la suite "
        b"<![CDATA[& le reste]]></news:title></news:news></url></urlset>"
    )
    parsed = parse_sitemap(body, url="https://site.test/sitemap.xml")
    assert isinstance(parsed, ParsedSitemap), parsed
    (entry,) = parsed.entries
    assert entry.link == "https://site.test/article?id=12&lang=fr&page=2"
    assert entry.title == "Lomé : l’accord & la suite & le reste"
    assert parsed.warnings == ()


# --------------------------------------------------------------------------- hostile XML


def test_entity_expansion_is_not_performed() -> None:
    levels = ['<!ENTITY lol0 "lollollollollollollollollollol">'] + [
        f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, 10)
    ]
    body = (
        f'<?xml version="1.0"?><!DOCTYPE urlset [{"".join(levels)}]>'
        "<urlset><url><loc>https://site.test/a</loc><news:news "
        'xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">'
        "<news:title>&lol9;</news:title></news:news></url></urlset>"
    ).encode()
    failed = parse_sitemap(body, url="https://site.test/sitemap.xml")
    # libxml2 stops at the first reference that would expand: 10**9 "lol"s are never made.
    assert isinstance(failed, ParseFailed), failed
    assert failed.message.startswith(
        "https://site.test/sitemap.xml is not a readable sitemap (Maximum entity amplification"
    )
    # One entry before the attack is kept, with a warning.
    body = body.replace(b"<urlset>", b"<urlset><url><loc>https://site.test/first</loc></url>")
    parsed = parse_sitemap(body, url="https://site.test/sitemap.xml")
    assert isinstance(parsed, ParsedSitemap), parsed
    assert [entry.link for entry in parsed.entries] == ["https://site.test/first"]
    assert "amplification" in parsed.warnings[0]


def test_external_entities_and_dtds_are_never_loaded(
    tmp_path: Path, server: HTTPTestServer
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE")
    server.routes["/evil.dtd"] = Reply(body=b'<!ENTITY remote "REMOTE-VALUE">')
    dtd_url = server.url("/evil.dtd")
    body = (
        f'<?xml version="1.0"?><!DOCTYPE urlset SYSTEM "{dtd_url}" ['
        f'<!ENTITY file SYSTEM "file://{secret}">'
        f'<!ENTITY % param SYSTEM "{dtd_url}"> %param;]>'
        "<urlset><url><loc>https://site.test/a</loc><news:news "
        'xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">'
        "<news:title>&file; &remote;</news:title></news:news></url></urlset>"
    ).encode()
    parsed = parse_sitemap(body, url="https://site.test/sitemap.xml")
    assert isinstance(parsed, ParsedSitemap), parsed
    assert "TOP-SECRET-VALUE" not in parsed.entries[0].title
    assert "REMOTE-VALUE" not in parsed.entries[0].title
    assert server.count("/evil.dtd") == 0


def test_a_deeply_nested_document_is_refused_or_read_without_crashing() -> None:
    body = b"<urlset>" + b"<url>" * 100_000 + b"</url>" * 100_000 + b"</urlset>"
    result = parse_sitemap(body, url="https://site.test/sitemap.xml")
    assert isinstance(result, ParsedSitemap | ParseFailed)
    if isinstance(result, ParsedSitemap):
        assert result.entries == ()


# --------------------------------------------------------------------------- what a poll reads


def dated(name: str, published: datetime | None) -> Entry:
    link = f"https://site.test/{name}"
    return Entry(key=link, link=link, title="", summary="", content="", published=published)


def test_entries_to_read_are_the_newest_fresh_ones_within_the_limit() -> None:
    since = datetime(2026, 11, 27, tzinfo=UTC)
    unseen = [
        dated("old", datetime(2026, 11, 1, tzinfo=UTC)),
        dated("undated", None),
        dated("b", datetime(2026, 11, 28, 6, tzinfo=UTC)),
        dated("a", datetime(2026, 11, 28, 8, tzinfo=UTC)),
        dated("c", datetime(2026, 11, 27, 12, tzinfo=UTC)),
    ]
    chosen, waiting = entries_to_read(unseen, since, 2)
    assert [entry.key.rsplit("/", 1)[1] for entry in chosen] == ["a", "b"]
    assert waiting == 2  # c and the undated one; "old" is before `since`
    everything, none_left = entries_to_read(unseen, None, 10)
    assert [entry.key.rsplit("/", 1)[1] for entry in everything] == [
        "a",
        "b",
        "c",
        "old",
        "undated",
    ]
    assert none_left == 0


def test_children_to_read_are_the_changed_ones_newest_first() -> None:
    children = [
        ChildSitemap("https://site.test/2026-10.xml", datetime(2026, 10, 31, tzinfo=UTC)),
        ChildSitemap("https://site.test/news.xml", None),
        ChildSitemap("https://site.test/2026-11.xml", datetime(2026, 11, 28, tzinfo=UTC)),
    ]
    since = datetime(2026, 11, 26, tzinfo=UTC)
    assert [child.url for child in children_to_read(children, since)] == [
        "https://site.test/2026-11.xml",
        "https://site.test/news.xml",
    ]
    many = [ChildSitemap(f"https://site.test/{n}.xml", None) for n in range(50)]
    assert len(children_to_read(many, None)) == MAX_CHILD_SITEMAPS


def test_read_since_looks_back_from_the_last_success() -> None:
    assert read_since(None) is None
    assert read_since(NOW) == NOW - SITEMAP_LOOKBACK


# --------------------------------------------------------------------------- whole polls


def test_a_news_sitemap_poll_stores_its_articles_and_hits(
    server: HTTPTestServer, store: Store, make_pipeline: PipelineFactory
) -> None:
    site = site_of(server)
    server.routes["/sitemap_news.xml"] = Reply(headers=XML, body=fixture("news-sitemap.xml", site))
    togo = "/afrique/article/2026/11/28/togo-accord-de-defense.html"
    sahel = "/international/article/2026/11/27/sahel-sommet.html"
    server.routes[togo] = Reply(headers=HTML, body=page("Accord de défense à Lomé"))
    server.routes[sahel] = Reply(headers=HTML, body=page("Sommet de Niamey"))
    # The Ghana page is gone: its article falls back to the sitemap's title.
    pipeline, _ = make_pipeline()

    report = polled(
        pipeline.poll_feed(FeedSpec(url=server.url("/sitemap_news.xml"), kind="sitemap")),
        PollOutcome.UPDATED,
    )
    assert (report.entries, report.new_entries, report.waiting) == (3, 3, 0)
    assert report.name == "Le Quotidien d'Afrique"  # news:publication/news:name
    articles = stored(store)
    assert articles[server.url(togo)].title == "Accord de défense à Lomé"
    assert articles[server.url(togo)].published == datetime(2026, 11, 28, 7, 15, tzinfo=UTC)
    ghana = articles[server.url("/afrique/article/2026/11/28/ghana-elections.html")]
    assert ghana.title == "Ghana : la commission électorale publie les résultats"
    assert ghana.language == "fr"
    assert ghana.note is not None and "404" in ghana.note
    # Newest first: publication dates 07:15, 06:40 and (the day before) 21:05 UTC.
    assert page_paths(server) == [
        togo,
        "/afrique/article/2026/11/28/ghana-elections.html",
        sahel,
    ]
    assert {hit.url for hit in store.hits()} == {server.url(togo), server.url(sahel)}
    assert store.feed_state(server.url("/sitemap_news.xml")).title == "Le Quotidien d'Afrique"


def test_a_plain_sitemap_takes_titles_from_the_pages(
    server: HTTPTestServer, store: Store, make_pipeline: PipelineFactory
) -> None:
    site = site_of(server)
    server.routes["/wp-sitemap-posts-post-1.xml"] = Reply(
        headers=XML, body=fixture("plain-sitemap.xml", site)
    )
    for path, title in [
        ("/2026/11/25/conseil-des-ministres/", "Conseil des ministres"),
        ("/2026/11/27/port-de-lome/", "Le port de Lomé"),
        ("/2026/11/28/accord-de-defense/", "Accord de défense"),
        ("/a-propos/", "À propos"),
    ]:
        server.routes[path] = Reply(headers=HTML, body=page(title))
    pipeline, _ = make_pipeline()
    spec = FeedSpec(url=server.url("/wp-sitemap-posts-post-1.xml"), name="Site", kind="sitemap")

    report = polled(pipeline.poll_feed(spec), PollOutcome.UPDATED)
    assert (report.entries, report.new_entries) == (4, 4)
    articles = stored(store)
    assert articles[server.url("/2026/11/27/port-de-lome/")].title == "Le port de Lomé"
    assert articles[server.url("/2026/11/28/accord-de-defense/")].published == datetime(
        2026, 11, 28, 7, 45, tzinfo=UTC
    )
    assert articles[server.url("/a-propos/")].published is None
    # Newest lastmod first, the undated page last.
    assert [request.path for request in server.requests[1:]] == [
        "/2026/11/28/accord-de-defense/",
        "/2026/11/27/port-de-lome/",
        "/2026/11/25/conseil-des-ministres/",
        "/a-propos/",
    ]


def plain_sitemap(paths: list[tuple[str, str]], site: str) -> bytes:
    urls = "".join(
        f"<url><loc>http://{site}{path}</loc><lastmod>{lastmod}</lastmod></url>"
        for path, lastmod in paths
    )
    return (f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>').encode()


def test_an_index_is_read_newest_child_first_gzip_included(
    server: HTTPTestServer, store: Store, make_pipeline: PipelineFactory
) -> None:
    site = site_of(server)
    server.routes["/sitemap_index.xml"] = Reply(
        headers=XML, body=fixture("sitemap-index.xml", site)
    )
    server.routes["/post-sitemap.xml"] = Reply(  # October: never read
        headers=XML, body=plain_sitemap([("/2026/10/02/vieux.html", "2026-10-02")], site)
    )
    newest = [
        ("/2026/11/28/togo-1.html", "2026-11-28T07:50:03Z"),
        ("/2026/11/28/togo-2.html", "2026-11-28T07:10:00Z"),
    ]
    server.routes["/post-sitemap2.xml.gz"] = Reply(
        headers={"Content-Type": "application/x-gzip"},
        body=gzip.compress(plain_sitemap(newest, site)),
    )
    server.routes["/page-sitemap.xml"] = Reply(
        headers=XML, body=plain_sitemap([("/qui-sommes-nous.html", "2026-11-27T18:00Z")], site)
    )
    for path in ["/2026/11/28/togo-1.html", "/2026/11/28/togo-2.html", "/qui-sommes-nous.html"]:
        server.routes[path] = Reply(headers=HTML, body=page("Le Togo"))
    pipeline, now = make_pipeline(max_sitemap_urls=2)
    spec = FeedSpec(url=server.url("/sitemap_index.xml"), name="Yoast", kind="sitemap")

    first = polled(pipeline.poll_feed(spec), PollOutcome.UPDATED)
    assert first.new_entries == 2
    # The newest child alone held enough new URLs for this poll.
    assert [request.path for request in server.requests] == [
        "/sitemap_index.xml",
        "/post-sitemap2.xml.gz",
        "/2026/11/28/togo-1.html",
        "/2026/11/28/togo-2.html",
    ]
    # An index is read again at every poll: its children change without it.
    state = store.feed_state(spec.url)
    assert state.body_hash is None and state.validators.etag is None

    now[0] = NOW + timedelta(minutes=15)
    server.requests.clear()
    second = polled(pipeline.poll_feed(spec), PollOutcome.UPDATED)
    assert second.new_entries == 1
    assert [request.path for request in server.requests] == [
        "/sitemap_index.xml",
        "/post-sitemap2.xml.gz",
        "/page-sitemap.xml",
        "/qui-sommes-nous.html",
    ]
    assert server.count("/post-sitemap.xml") == 0  # older than the last poll's lookback
    assert server.count("/2026/10/02/vieux.html") == 0


def test_the_cap_leaves_the_rest_unseen_for_the_next_polls(
    server: HTTPTestServer, store: Store, make_pipeline: PipelineFactory
) -> None:
    urls = [(server.url(f"/depeche-{n}.html"), NOW - timedelta(hours=n)) for n in range(5)]
    server.routes["/news.xml"] = Reply(headers=XML, body=news_sitemap(urls), etag='"v1"')
    for n in range(5):
        server.routes[f"/depeche-{n}.html"] = Reply(headers=HTML, body=page(f"Dépêche {n}"))
    pipeline, now = make_pipeline(max_sitemap_urls=2)
    spec = FeedSpec(url=server.url("/news.xml"), kind="sitemap")

    def poll() -> tuple[FeedReport, list[str], str | None]:
        server.requests.clear()
        report = pipeline.poll_feed(spec)
        sent = server.requests[0].headers.get("if-none-match")
        now[0] += timedelta(minutes=15)
        return report, page_paths(server), sent

    report, pages, sent = poll()
    assert (report.outcome, report.new_entries, report.waiting) == ("updated", 2, 3)
    assert pages == ["/depeche-0.html", "/depeche-1.html"]
    assert "2 new, 3 waiting for the next poll" in report.log_line()
    # Not remembered: the next poll must not stop at a 304 while URLs wait.
    assert store.feed_state(spec.url).validators.etag is None

    report, pages, sent = poll()
    assert sent is None
    assert (report.outcome, report.new_entries, report.waiting) == ("updated", 2, 1)
    assert pages == ["/depeche-2.html", "/depeche-3.html"]

    report, pages, sent = poll()
    assert (report.outcome, report.new_entries, report.waiting) == ("updated", 1, 0)
    assert pages == ["/depeche-4.html"]
    assert store.feed_state(spec.url).validators.etag == '"v1"'

    report, pages, sent = poll()  # nothing waits: a conditional GET again
    assert sent == '"v1"'
    assert report.outcome is PollOutcome.NOT_MODIFIED
    assert pages == []
    assert len(stored(store)) == 5


def test_a_sitemap_is_fetched_conditionally(
    server: HTTPTestServer, store: Store, make_pipeline: PipelineFactory
) -> None:
    site = site_of(server)
    server.routes["/sitemap.xml"] = Reply(
        headers=XML,
        body=plain_sitemap([("/a.html", "2026-11-28")], site),
        last_modified="Sat, 28 Nov 2026 08:00:00 GMT",
    )
    server.routes["/a.html"] = Reply(headers=HTML, body=page("A"))
    pipeline, now = make_pipeline()
    spec = FeedSpec(url=server.url("/sitemap.xml"), kind="sitemap")
    polled(pipeline.poll_feed(spec), PollOutcome.UPDATED)

    now[0] = NOW + timedelta(minutes=15)
    polled(pipeline.poll_feed(spec), PollOutcome.NOT_MODIFIED)
    assert server.requests[-1].headers["if-modified-since"] == "Sat, 28 Nov 2026 08:00:00 GMT"
    assert server.count("/a.html") == 1


def test_a_feed_url_serving_a_sitemap_is_read_as_one(
    server: HTTPTestServer, store: Store, make_pipeline: PipelineFactory
) -> None:
    site = site_of(server)
    server.routes["/feed"] = Reply(  # configured without type:, served as a gzip file
        headers={"Content-Type": "application/gzip"},
        body=gzip.compress(fixture("news-sitemap.xml", site)),
    )
    pipeline, _ = make_pipeline()
    report = polled(pipeline.poll_feed(FeedSpec(url=server.url("/feed"))), PollOutcome.UPDATED)
    assert (report.entries, report.new_entries) == (3, 3)


def test_type_sitemap_on_a_feed_fails_saying_what_to_do(
    server: HTTPTestServer, store: Store, make_pipeline: PipelineFactory
) -> None:
    server.routes["/rss.xml"] = Reply(
        headers={"Content-Type": "application/rss+xml"},
        body=b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title></channel></rss>',
    )
    pipeline, _ = make_pipeline()
    url = server.url("/rss.xml")
    report = polled(pipeline.poll_feed(FeedSpec(url=url, kind="sitemap")), PollOutcome.FAILED)
    assert report.error == (
        f"{url} is not a sitemap (its root element is <rss>); check the URL (a sitemap has "
        "<urlset> or <sitemapindex> at its root), or drop `type: sitemap` if the URL serves "
        "RSS, Atom or JSON Feed"
    )


def test_a_broken_child_is_skipped_and_all_broken_fails_the_poll(
    server: HTTPTestServer, store: Store, make_pipeline: PipelineFactory
) -> None:
    site = site_of(server)
    index = (
        '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<sitemap><loc>http://{site}/gone.xml</loc><lastmod>2026-11-28</lastmod></sitemap>"
        f"<sitemap><loc>http://{site}/ok.xml</loc><lastmod>2026-11-27</lastmod></sitemap>"
        "</sitemapindex>"
    ).encode()
    server.routes["/index.xml"] = Reply(headers=XML, body=index)
    server.routes["/ok.xml"] = Reply(headers=XML, body=plain_sitemap([("/a.html", "")], site))
    server.routes["/a.html"] = Reply(headers=HTML, body=page("A"))
    pipeline, now = make_pipeline()
    spec = FeedSpec(url=server.url("/index.xml"), kind="sitemap")
    assert polled(pipeline.poll_feed(spec), PollOutcome.UPDATED).new_entries == 1

    del server.routes["/ok.xml"]
    now[0] = NOW + timedelta(minutes=15)
    report = polled(pipeline.poll_feed(spec), PollOutcome.FAILED)
    assert report.error is not None
    assert report.error.startswith(f"http://{site}/gone.xml: the server answered 404 Not Found")


def test_monitor_poll_reads_a_configured_sitemap_within_its_cap(
    server: HTTPTestServer, tmp_path: Path
) -> None:
    urls = [(server.url(f"/depeche-{n}.html"), NOW - timedelta(hours=n)) for n in range(3)]
    server.routes["/sitemap_news.xml"] = Reply(headers=XML, body=news_sitemap(urls))
    for n in range(3):
        server.routes[f"/depeche-{n}.html"] = Reply(headers=HTML, body=page(f"Dépêche {n}"))
    config = tmp_path / "feeds.yaml"
    config.write_text(
        "poll:\n"
        "  max_sitemap_urls: 2\n"
        "feeds:\n"
        f"  - url: {server.url('/sitemap_news.xml')}\n"
        "    name: Le Fil\n"
        "    type: sitemap\n"
        "watchlists:\n"
        "  - name: Togo\n"
        "    all: [Togo]\n"
        "digest:\n"
        "  from: veille@example.org\n"
        "  to: [analyste@example.org]\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        main, ["-c", str(config), "poll", "--format", "json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    (report,) = json.loads(result.output)
    assert (report["outcome"], report["new_entries"], report["waiting"]) == ("updated", 2, 1)
    # The two newest; fetched by parallel page threads, so in any order.
    assert sorted(page_paths(server)) == ["/depeche-0.html", "/depeche-1.html"]
