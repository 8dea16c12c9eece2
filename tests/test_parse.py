"""monitor.parse: real feeds from the shared corpus, hostile fixtures, and properties.

Fixtures under tests/data/feeds/ describe themselves in a leading comment. The corpus
(../shared/corpus/feeds) is read in place, never copied.
"""

from __future__ import annotations

import builtins
import gzip
import json
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.models import ParsedFeed, ParseFailed, ParseResult
from monitor.parse import parse_feed
from tests.corpus import corpus_path, require_corpus

FIXTURES = Path(__file__).parent / "data" / "feeds"
FEED_URL = "https://example.org/feeds/main.xml"


def parse_fixture(name: str, url: str = FEED_URL, **kwargs: Any) -> ParseResult:
    return parse_feed((FIXTURES / name).read_bytes(), url=url, **kwargs)


def parsed(name: str) -> ParsedFeed:
    result = parse_fixture(name)
    assert isinstance(result, ParsedFeed), result
    return result


# --------------------------------------------------------------------------- corpus


def _is_corpus_feed(path: Path) -> bool:
    return (
        path.is_file()
        and ".expected.json" not in path.name
        and path.name not in ("MANIFEST.md", "index.json")
    )


def _corpus_files(pattern: str, keep: Any) -> list[Path]:
    root = corpus_path()
    if root is None or not (root / "feeds").is_dir():
        return []
    return sorted(path for path in (root / "feeds").rglob(pattern) if keep(path))


def _read_maybe_gzipped(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


def _corpus_id(path: Path | None) -> str:
    return "no-corpus" if path is None else f"{path.parent.name}/{path.name}"


CORPUS_FEEDS: list[Path | None] = [*_corpus_files("*", _is_corpus_feed)] or [None]
CORPUS_EXPECTATIONS: list[Path | None] = [
    *_corpus_files("*.expected.json*", lambda path: path.is_file())
] or [None]


@pytest.mark.corpus
@pytest.mark.parametrize("path", CORPUS_FEEDS, ids=_corpus_id)
def test_every_corpus_feed_parses_without_raising(path: Path | None) -> None:
    if path is None:
        require_corpus("feeds")
        return
    result = parse_feed(_read_maybe_gzipped(path), url="https://example.com/feed.xml")
    assert isinstance(result, ParsedFeed | ParseFailed)
    if isinstance(result, ParseFailed):
        assert "https://example.com/feed.xml" in result.message
        return
    keys = [entry.key for entry in result.entries]
    assert len(keys) == len(set(keys))
    for entry in result.entries:
        assert entry.link is None or urlsplit(entry.link).scheme in ("http", "https")
        assert "\n" not in entry.title and "\r" not in entry.title
        assert entry.published is None or entry.published.tzinfo is UTC


def _normal_text(value: object) -> str:
    return " ".join(value.split()) if isinstance(value, str) else ""


def _normal_url(value: str) -> str:
    parts = urlsplit(value)
    return parts._replace(
        scheme=parts.scheme.lower(), netloc=parts.netloc.lower(), path=parts.path or "/"
    ).geturl()


def _expected_model(document: dict[str, Any]) -> tuple[str, list[tuple[str, str | None]]]:
    """(feed title, [(entry title, entry link)]) from rss-parser or feed-rs output."""
    if "feed" in document:  # rss-parser: {"feed": {"title", "items": [{"title", "link"}]}}
        feed = document["feed"]
        items = [
            item
            for item in feed.get("items", [])
            # An item with nothing that identifies it is skipped by us, on purpose.
            if any(item.get(name) for name in ("title", "link", "guid", "id", "content"))
        ]
        return _normal_text(feed.get("title")), [
            (_normal_text(item.get("title")), item.get("link")) for item in items
        ]
    # feed-rs: {"title": {"content"}, "entries": [{"title": {"content"}, "links": [{"href"}]}]}
    entries = document.get("entries", [])
    return _normal_text((document.get("title") or {}).get("content")), [
        (
            _normal_text((entry.get("title") or {}).get("content")),
            (entry.get("links") or [{}])[0].get("href"),
        )
        for entry in entries
    ]


@pytest.mark.corpus
@pytest.mark.parametrize("expected_path", CORPUS_EXPECTATIONS, ids=_corpus_id)
def test_corpus_feed_matches_upstream_expectations(expected_path: Path | None) -> None:
    """Feed title, entry count, entry titles and links as rss-parser / feed-rs expect.

    Deliberate differences, each checked here rather than ignored:
    - relative links: upstream keeps them relative, we resolve them against the feed URL;
    - a missing link upstream: we take the permalink from an RSS guid (isPermaLink
      defaults to true) or from an Atom id that is a URL, as feedparser does;
    - host case and an empty path ("https://example.com" → "https://example.com/") are
      normalised on both sides, as URL parsers do;
    - upstream titles containing U+FFFD were decoded wrongly upstream (a Latin-1 feed
      read as UTF-8); ours are decoded correctly, so those titles are not compared;
    - an entry with no title, link, id or content is skipped by us.
    """
    if expected_path is None:
        require_corpus("feeds")
        return
    stem = expected_path.name.split(".expected.json")[0]
    feed_paths = [
        path
        for path in expected_path.parent.iterdir()
        if path.name.startswith(stem + ".") and ".expected.json" not in path.name
    ]
    assert len(feed_paths) == 1, f"no single feed for {expected_path}"
    raw_expected = _read_maybe_gzipped(expected_path)
    try:
        text = raw_expected.decode("utf-8")
    except UnicodeDecodeError:  # rss-parser's encoding.expected.json is itself Latin-1
        text = raw_expected.decode("latin-1")
    expected_title, expected_entries = _expected_model(json.loads(text))

    feed_url = "https://example.com/feed.xml"
    result = parse_feed(_read_maybe_gzipped(feed_paths[0]), url=feed_url)
    assert isinstance(result, ParsedFeed), result

    assert _normal_text(result.title) == expected_title
    assert len(result.entries) == len(expected_entries)
    for entry, (title, link) in zip(result.entries, expected_entries, strict=True):
        if "\ufffd" not in title:
            assert _normal_text(entry.title) == title
        if link is not None:
            assert entry.link is not None
            assert _normal_url(entry.link) == _normal_url(urljoin(feed_url, link))


# --------------------------------------------------------------------------- no I/O


def test_parse_never_opens_files_or_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    """feedparser given a str may fetch it as a URL or open() it as a file; we pass bytes."""
    parse_fixture("relative_links.xml")  # finish any lazy imports before the trap is set

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"parse_feed tried to do I/O with {args!r}")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(builtins, "open", refuse)
    for body in (b"https://example.org/feed.xml", b"/etc/passwd", b"feed.xml"):
        result = parse_feed(body, url=FEED_URL)
        assert isinstance(result, ParseFailed)
    for name in sorted(path.name for path in FIXTURES.iterdir()):
        parse_fixture(name)


# --------------------------------------------------------------------------- not a feed


def test_html_page_is_reported_as_not_a_feed() -> None:
    result = parse_fixture("login_wall.html", headers={"Content-Type": "text/html"})
    assert result == ParseFailed(
        url=FEED_URL,
        message=f"{FEED_URL} is an HTML page, not a feed; check the feed URL "
        "(the site's feed may have moved)",
    )


def test_html_page_is_recognised_without_a_content_type() -> None:
    result = parse_feed(b"\n\n<HTML><body><h1>Object moved</h1></body></HTML>", url=FEED_URL)
    assert isinstance(result, ParseFailed)
    assert "is an HTML page, not a feed" in result.message


def test_feed_served_as_text_html_is_still_read() -> None:
    body = (FIXTURES / "duplicate_guids.xml").read_bytes()
    result = parse_feed(body, url=FEED_URL, headers={"content-type": "text/html; charset=utf-8"})
    assert isinstance(result, ParsedFeed)
    assert result.title == "Dupes"


def test_empty_body_fails_with_the_url() -> None:
    result = parse_feed(b"  \n", url=FEED_URL)
    assert isinstance(result, ParseFailed)
    assert FEED_URL in result.message


def test_broken_xml_with_no_entries_fails_with_the_line() -> None:
    body = b'<?xml version="1.0"?>\n<rss version="2.0"><channel><title>T</title>\n<item><title>x'
    result = parse_feed(body, url=FEED_URL)
    assert isinstance(result, ParseFailed)
    assert result.message.startswith(f"{FEED_URL} is not well-formed XML (line 3, column")


def test_broken_xml_with_entries_is_read_with_a_warning() -> None:
    body = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
        b"<item><guid>a</guid><title>Kept &amp; fine</title></item>"
        b"<item><guid>b</guid><title>Also kept</title></item>"
        b"<item><guid>c</guid><title>Broken <b>tag</title></item></channel></rss>"
    )
    result = parse_feed(body, url=FEED_URL)
    assert isinstance(result, ParsedFeed)
    assert [entry.title for entry in result.entries][:2] == ["Kept & fine", "Also kept"]
    assert any("not well-formed XML" in warning for warning in result.warnings)


def test_json_that_is_not_a_json_feed_fails() -> None:
    result = parse_fixture("not_json_feed.json", headers={"content-type": "application/json"})
    assert isinstance(result, ParseFailed)
    assert 'not a JSON Feed (it has no "items" list)' in result.message


def test_invalid_json_fails_with_the_reason() -> None:
    result = parse_feed(b'{"version": "https://jsonfeed.org/version/1", "items": [', url=FEED_URL)
    assert isinstance(result, ParseFailed)
    assert "looks like JSON but cannot be read" in result.message


# --------------------------------------------------------------------------- entities


def test_billion_laughs_keeps_entries_with_literal_references() -> None:
    feed = parsed("billion_laughs.xml")
    assert [entry.title for entry in feed.entries] == ["Attack &lol9;", "Innocent neighbour"]
    assert all(len(entry.summary) < 100 for entry in feed.entries)
    assert any("XML entities" in warning for warning in feed.warnings)


def test_quadratic_blowup_is_defused() -> None:
    """A quadratic blowup: one 20 KB entity × 20,000 references made feedparser build a
    400-million-character description (1.17 GB). The declaration must be dropped."""
    entity = "A" * 20_000
    body = (
        f'<?xml version="1.0"?>\n<!DOCTYPE rss [<!ENTITY big "{entity}">]>\n'
        '<rss version="2.0"><channel><title>Blowup</title><item><guid>x</guid>'
        f"<title>Boom</title><description>{'&big;' * 20_000}</description></item>"
        "</channel></rss>"
    ).encode()
    feed = parse_feed(body, url=FEED_URL)
    assert isinstance(feed, ParsedFeed)
    assert len(feed.entries) == 1
    assert len(feed.entries[0].summary) <= len(body)
    assert any("400,000,000+ characters" in warning for warning in feed.warnings)


def test_long_entity_is_dropped_but_the_feed_is_read() -> None:
    feed = parsed("long_entity.xml")
    assert [entry.title for entry in feed.entries] == ["Padded &pad; title"]


def test_small_text_entity_is_kept() -> None:
    feed = parsed("small_entities.xml")
    assert feed.title == "News from Acme Corporation"
    assert feed.entries[0].title == "Acme Corporation opens an office"
    assert feed.warnings == ()


# --------------------------------------------------------------------------- fields


def test_invalid_and_absurd_dates_become_none() -> None:
    feed = parsed("invalid_dates.xml")
    published = {entry.title: entry.published for entry in feed.entries}
    assert published == {
        "Zero date": None,
        "Month 13": None,
        "Year 9999": None,
        "Year 1899": None,
        "Garbage": None,
        "Valid RFC 822 with offset": datetime(2024, 3, 5, 8, 30, tzinfo=UTC),
        "Valid ISO 8601": datetime(2024, 2, 29, 23, 15, tzinfo=UTC),
    }


def test_missing_fields_fall_back_and_only_the_empty_entry_is_skipped() -> None:
    feed = parsed("missing_fields.xml")
    keys = [entry.key for entry in feed.entries]
    assert keys[0] == "https://example.org/only-link"
    assert keys[1].startswith("sha1:") and len(keys[1]) == len("sha1:") + 40
    assert keys[2:] == ["urn:uuid:1234", "https://example.org/last"]
    assert feed.entries[1].link is None
    assert feed.warnings == ("entry 4 skipped: it has no id, link, title or text",)


def test_hash_key_is_stable_between_polls() -> None:
    first = parsed("missing_fields.xml").entries[1].key
    assert parsed("missing_fields.xml").entries[1].key == first


def test_duplicate_guids_keep_distinct_stories_and_drop_repeats() -> None:
    feed = parsed("duplicate_guids.xml")
    assert [(entry.key, entry.title) for entry in feed.entries] == [
        ("story", "First story"),
        ("story|https://example.org/two", "Second story"),
    ]
    assert len(feed.warnings) == 2
    assert "repeats an earlier entry" in feed.warnings[1]


def test_relative_links_are_resolved_against_the_feed_url_and_xml_base() -> None:
    feed = parsed("relative_links.xml")
    assert feed.link == "https://example.org/"
    assert [entry.link for entry in feed.entries] == [
        "https://example.org/articles/1.html",
        "https://example.org/feeds/2.html",
        "https://cdn.example.net/base/three.html",
        "https://other.example.com/4",
    ]


def test_non_http_links_become_none() -> None:
    feed = parsed("unsafe_links.xml")
    links = {entry.title: entry.link for entry in feed.entries}
    assert links == {
        "JavaScript": None,
        "Data": None,
        "File": None,
        "FTP": None,
        "Gopher": None,
        "HTTPS": "https://example.org/fine",
    }


def test_titles_are_one_line_and_summaries_plain_text() -> None:
    feed = parsed("crlf_title.xml")
    assert feed.title == "Line breaks"
    injected, html_title = feed.entries
    assert injected.title == "Subject: injected Bcc: victim@example.org"
    assert injected.summary == "First paragraph & more.\nSecond\nline"
    assert html_title.title == "Bold & élégant"


def test_language_is_the_primary_subtag_entry_else_feed() -> None:
    assert parsed("relative_links.xml").language == "fr"
    assert {entry.language for entry in parsed("relative_links.xml").entries} == {"fr"}
    body = (
        b'<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="IT-it"><title>T</title>'
        b'<entry xml:lang="de-CH"><id>urn:a</id><title>Deutsch</title></entry>'
        b"<entry><id>urn:b</id><title>Italiano</title></entry></feed>"
    )
    feed = parse_feed(body, url=FEED_URL)
    assert isinstance(feed, ParsedFeed)
    assert feed.language == "it"
    assert [entry.language for entry in feed.entries] == ["de", "it"]


# --------------------------------------------------------------------------- encodings


def test_one_cp1252_byte_does_not_turn_the_feed_into_mojibake() -> None:
    feed = parsed("cp1252_in_utf8.xml")
    assert feed.title == "Café du commerce"
    assert feed.entries[0].title == "Le café est servi"
    assert feed.entries[0].summary == "Crème brûlée à volonté"
    assert feed.entries[1].title == "L'accord ’ s'appelle « Élysée »"
    assert feed.warnings == (
        "1 byte(s) are not valid UTF-8 (declared utf-8); read them as windows-1252",
    )


def test_declared_latin1_is_decoded() -> None:
    feed = parsed("latin1_declared.xml")
    assert feed.title == "Élections régionales"
    assert feed.entries[0].title == "Résultats du scrutin à Besançon"
    assert feed.warnings == ()


def test_http_charset_is_used_for_an_undeclared_body() -> None:
    body = '<rss version="2.0"><channel><title>Noël à Besançon</title></channel></rss>'
    latin1 = body.encode("iso-8859-1")
    feed = parse_feed(
        latin1, url=FEED_URL, headers={"Content-Type": "text/xml; charset=ISO-8859-1"}
    )
    assert isinstance(feed, ParsedFeed)
    assert feed.title == "Noël à Besançon"


def test_utf8_body_wins_over_a_wrong_latin1_label() -> None:
    body = '<?xml version="1.0" encoding="iso-8859-1"?><rss version="2.0"><channel><title>Café</title></channel></rss>'
    feed = parse_feed(body.encode("utf-8"), url=FEED_URL)
    assert isinstance(feed, ParsedFeed)
    assert feed.title == "Café"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-8-sig"])
def test_wide_encodings_and_boms(encoding: str) -> None:
    declared = encoding.removesuffix("-sig").removesuffix("-le")
    body = (
        f'<?xml version="1.0" encoding="{declared}"?>'
        '<rss version="2.0"><channel><title>Œuvres complètes</title>'
        "<item><guid>1</guid><title>Été</title></item></channel></rss>"
    )
    feed = parse_feed(body.encode(encoding), url=FEED_URL)
    assert isinstance(feed, ParsedFeed), feed
    assert feed.title == "Œuvres complètes"
    assert feed.entries[0].title == "Été"


def test_invalid_xml_characters_do_not_break_the_feed() -> None:
    body = b'<rss version="2.0"><channel><title>Bad\x0b char\x1b</title><item><guid>1</guid><title>ok</title></item></channel></rss>'
    feed = parse_feed(body, url=FEED_URL)
    assert isinstance(feed, ParsedFeed)
    assert feed.title == "Bad char"
    assert feed.warnings == ()


# --------------------------------------------------------------------------- JSON Feed


def test_json_feed() -> None:
    feed = parsed("json_feed.json")
    assert (feed.title, feed.link, feed.language) == (
        "Le Journal JSON",
        "https://example.org/",
        "fr",
    )
    first, second, no_id, unsafe = feed.entries
    assert first.key == "1"
    assert first.link == "https://example.org/2024/01/premier"
    assert first.title == "Premier article"
    assert first.content == "Bonjour le monde\nDeuxième paragraphe"
    assert first.summary == "Résumé"
    assert first.published == datetime(2024, 1, 15, 7, 0, tzinfo=UTC)
    assert (second.key, second.language, second.published) == ("2", "en", None)
    assert second.content == "Plain text body"
    assert no_id.key == "https://example.org/no-id"
    assert unsafe.link is None
    assert unsafe.published == datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    assert feed.warnings == ("entry 5 skipped: it is a JSON str, not an object",)


# --------------------------------------------------------------------------- properties

_FRAGMENTS = st.sampled_from(
    [
        "<item>",
        "</item>",
        "<entry>",
        "</entry>",
        "<title>",
        "</title>",
        "<link>",
        "</link>",
        "<guid>",
        "</guid>",
        "<pubDate>",
        "</pubDate>",
        "<description>",
        "</description>",
        "<![CDATA[",
        "]]>",
        "&amp;",
        "&lt;b&gt;",
        "&#0;",
        "&bogus;",
        "javascript:alert(1)",
        "/relative",
        "0000-00-00",
        "2024-13-45",
        "Sat, 99 Foo 2024",
        "\r\n",
        "\x00",
        "\udcff",
        "é",
        "<!DOCTYPE x [<!ENTITY e 'v'>]>",
        "&e;",
        "{",
        "<html>",
    ]
)
_FEED_TEXT = st.lists(st.one_of(_FRAGMENTS, st.text(max_size=20)), max_size=40).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=_FEED_TEXT,
    wrapper=st.sampled_from(
        [
            '<rss version="2.0"><channel><title>t</title>{}</channel></rss>',
            '<feed xmlns="http://www.w3.org/2005/Atom">{}</feed>',
            "{}",
        ]
    ),
    encoding=st.sampled_from(["utf-8", "latin-1", "utf-16"]),
)
def test_any_input_gives_a_result_and_sane_entries(body: str, wrapper: str, encoding: str) -> None:
    data = wrapper.format(body).encode(
        encoding, errors="surrogateescape" if encoding == "utf-8" else "replace"
    )
    result = parse_feed(data, url=FEED_URL)
    assert isinstance(result, ParsedFeed | ParseFailed)
    if isinstance(result, ParsedFeed):
        keys = [entry.key for entry in result.entries]
        assert len(keys) == len(set(keys))
        for entry in result.entries:
            assert entry.link is None or entry.link.startswith(("http://", "https://"))
            assert not any(char in entry.title for char in "\r\n\x00")
            assert entry.published is None or 1970 <= entry.published.year <= 2100


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_give_a_result(data: bytes) -> None:
    assert isinstance(parse_feed(data, url=FEED_URL), ParsedFeed | ParseFailed)
