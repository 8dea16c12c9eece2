"""Digest building and rendering: grouping, both parts, escaping of hostile feed text."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

import pytest

from monitor.digest import build_digest, clean_header, render_message
from monitor.models import ClaimedDigest, StoredHit

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
MESSAGE_ID = "<digest-2026-11-28-0123456789ab@monitor.local>"


def stored(
    hit_id: int,
    watchlist: str,
    *,
    title: str = "L’accord est signé",
    url: str | None = "https://news.example/accord",
    feed: str = "Le Monde",
    published: datetime | None = datetime(2026, 11, 27, 23, 30, tzinfo=UTC),
    snippets: tuple[str, ...] = ("Les ministres ont signé l’[[accord]] hier.",),
    matched: tuple[str, ...] = ("accord",),
    backfilled: bool = False,
) -> StoredHit:
    return StoredHit(
        hit_id=hit_id,
        watchlist=watchlist,
        article_id=hit_id,
        title=title,
        url=url,
        feed=feed,
        published=published,
        found_at=NOW - timedelta(hours=hit_id),
        matched=matched,
        snippets=snippets,
        backfilled=backfilled,
    )


def claimed(*hits: StoredHit) -> ClaimedDigest:
    return ClaimedDigest(
        key="2026-11-28", message_id=MESSAGE_ID, hits=hits, created_at=NOW, attempts=1
    )


def render(*hits: StoredHit, order: tuple[str, ...] = ("défense", "accord")) -> EmailMessage:
    content = build_digest(claimed(*hits), watchlist_order=order, tz=PARIS, now=NOW)
    message = render_message(
        content,
        sender="monitor@example.org",
        recipients=["alice@example.org", "bob@example.org"],
        subject="monitor",
        message_id=MESSAGE_ID,
        tz=PARIS,
    )
    # What a recipient sees: the message as bytes on the wire, parsed back.
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def parts(message: EmailMessage) -> tuple[str, str]:
    assert message.get_content_type() == "multipart/alternative"
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert plain is not None and html is not None
    # The wire format has CRLF line ends; compare with the templates' "\n".
    return plain.get_content().replace("\r\n", "\n"), html.get_content().replace("\r\n", "\n")


class _Elements(HTMLParser):
    """Every start tag with its attributes, and the text, of an HTML document."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def elements(html: str) -> _Elements:
    parser = _Elements()
    parser.feed(html)
    parser.close()
    return parser


ALLOWED_TAGS = {
    "html", "head", "meta", "title", "body", "p", "h2", "h3", "div", "span", "a", "strong",
    "blockquote", "mark", "ul", "li",
}  # fmt: skip


def assert_html_is_safe(html: str) -> _Elements:
    found = elements(html)
    for tag, attrs in found.tags:
        assert tag in ALLOWED_TAGS, f"unexpected <{tag}> in the digest"
        for name, value in attrs:
            assert not name.startswith("on"), f"event handler {name} in <{tag}>"
            assert name in ("href", "style", "charset", "class"), f"attribute {name} in <{tag}>"
            if name == "href":
                assert value is not None and value.lower().startswith(("http://", "https://"))
    return found


# --------------------------------------------------------------------------- structure


def test_build_groups_by_configured_order_and_newest_first() -> None:
    hits = (
        stored(1, "accord", published=datetime(2026, 11, 26, tzinfo=UTC)),
        stored(2, "removed-watchlist"),
        stored(3, "accord", published=datetime(2026, 11, 27, tzinfo=UTC)),
        stored(4, "défense"),
        stored(5, "accord", backfilled=True),
        stored(6, "another-removed"),
    )
    content = build_digest(claimed(*hits), watchlist_order=["défense", "accord"], tz=PARIS, now=NOW)
    assert [name for name, _ in content.groups] == [
        "défense",
        "accord",
        "another-removed",
        "removed-watchlist",
    ]
    assert [hit.hit_id for hit in content.groups[1][1]] == [3, 1]
    assert [(name, [h.hit_id for h in group]) for name, group in content.backfilled] == [
        ("accord", [5])
    ]
    assert content.total == 6
    assert sorted(content.hit_ids) == [1, 2, 3, 4, 5, 6]
    assert content.digest_key == "2026-11-28"
    assert content.generated_at == NOW


def test_render_has_both_parts_and_the_expected_headers() -> None:
    message = render(
        stored(1, "accord"),
        stored(2, "défense", title="Armée", snippets=("L’[[armée]] et la [[défense]].",)),
        stored(3, "accord", backfilled=True, title="Vieux texte"),
    )
    # Whitespace normalised: CPython's folding of a long encoded header adds a space.
    assert (
        " ".join(message["Subject"].split())
        == "monitor: 2 new hits in 2 watchlists, 1 found by backfill — 28 Nov 2026"
    )
    assert message["Message-ID"] == MESSAGE_ID
    assert message["From"] == "monitor@example.org"
    assert [str(a.addr_spec) for a in message["To"].addresses] == [
        "alice@example.org",
        "bob@example.org",
    ]
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Date"].datetime == NOW
    plain, html = parts(message)

    # Plain text: groups in config order, marks as *word*, dates in local time.
    assert plain.index("== défense (1) ==") < plain.index("== accord (1) ==")
    assert plain.index("== accord (1) ==") < plain.index("== Found by backfill ==")
    assert "* L’accord est signé\n  <https://news.example/accord>\n" in plain
    assert "  Le Monde · 28 Nov 2026 00:30\n" in plain  # 23:30 UTC is 00:30 in Paris
    assert "  > Les ministres ont signé l’*accord* hier." in plain
    assert "  > L’*armée* et la *défense*." in plain
    assert "[[" not in plain
    assert "<mark>" not in plain

    # HTML: same content, escaped, linked, marked.
    found = assert_html_is_safe(html)
    assert ("a", [("href", "https://news.example/accord")]) in found.tags
    assert "L’<mark>armée</mark> et la <mark>défense</mark>." in html
    assert html.index(">défense <") < html.index(">accord <") < html.index("Found by backfill")
    backfill_section = html[html.index("Found by backfill") :]
    assert "Vieux texte" in backfill_section
    assert "<blockquote" not in backfill_section  # the backfill section is short


def test_a_hit_without_date_or_link_still_renders() -> None:
    message = render(stored(1, "accord", published=None, url=None, title="", snippets=()))
    plain, html = parts(message)
    assert "* (untitled)\n  Le Monde · seen 28 Nov 2026 06:00\n" in plain
    assert "<a " not in html
    assert message["Subject"] == "monitor: 1 new hit in 1 watchlist — 28 Nov 2026"


def test_only_three_snippets_and_long_titles_are_cut() -> None:
    snippets = tuple(f"Phrase [[{n}]]." for n in range(5))
    message = render(stored(1, "accord", title="T" * 5000, snippets=snippets))
    plain, html = parts(message)
    assert plain.count("  > ") == 3
    assert html.count("<blockquote") == 3
    assert "T" * 299 + "…" in plain
    assert "T" * 300 not in plain


def test_truncation_never_leaves_half_a_mark() -> None:
    snippet = "x" * 590 + " [[accord]] and more text after the cut"
    plain, html = parts(render(stored(1, "accord", snippets=(snippet,))))
    assert "[[" not in plain and "[[" not in html
    assert "<mark>" not in html  # the mark was beyond the cut: dropped whole


# --------------------------------------------------------------------------- hostile input

HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '"><svg onload=alert(1)>',
    "</style><script>alert(1)</script>",
    "<style>body{display:none}</style>",
    "<iframe src='https://evil.example'></iframe>",
    "<form action='https://evil.example'><input name=p></form>",
    '<meta http-equiv="refresh" content="0;url=https://evil.example">',
    "<a href='javascript:alert(1)'>clic</a>",
    "<!-- comment --><![CDATA[ x ]]>",
    "&lt;script&gt; already escaped &amp; doubled",
    "' onmouseover='alert(1)",
    "<img src='https://tracker.example/pixel.gif'>",
    "Titre\r\nBcc: victim@example.org",
    "Titre\nX-Injected: yes",
    "Ligne\u2028séparée\u2029ici\x85",
    "\x00\x01\x07\x1b[31mcouleur\x7f",
    "{{ 7*7 }} {% raw %} ${7*7} #{7*7}",
    "<mark>faux</mark> [[<b>gras</b>]]",
    "[[<script>alert(1)</script>]]",
    "]] [[ unbalanced [[",
    "<<script>script>alert(1)<</script>/script>",
    "\u202egnp.exe",
    "<base href='https://evil.example/'>",
    "<object data='x'></object><embed src='x'>",
    "<svg><foreignObject><script>1</script></foreignObject></svg>",
    "A" * 10_000,
    "<table><tr><td>cellule</td></tr></table>",
    "<link rel=stylesheet href=https://evil.example/x.css>",
    "<body onload=alert(1)>",
]
HOSTILE_URLS = [
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    " javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "file:///etc/passwd",
    "/relative/path",
    "https://ok.example/a b",
    "https://ok.example/\r\nX: y",
    "http://",
]


@pytest.mark.parametrize("payload", HOSTILE)
def test_hostile_feed_text_is_inert_everywhere(payload: str) -> None:
    hit = stored(
        1,
        payload[:200],
        title=payload,
        feed=payload,
        matched=(payload,),
        snippets=(payload, f"avant [[{payload}]] après"),
    )
    message = render(hit)
    plain, html = parts(message)
    found = assert_html_is_safe(html)
    for header in ("Subject", "From", "To", "Message-ID"):
        assert "\r" not in str(message[header]) and "\n" not in str(message[header])
    assert message["Bcc"] is None and message["X-Injected"] is None
    assert "<script" not in html.lower()
    assert "<style" not in html.lower()
    # The text survives as text: escaped in HTML, not removed.
    visible = "".join(found.text)
    first_word = next((word for word in payload.split() if word.isalnum()), None)
    if first_word:
        assert first_word in visible
        assert first_word in plain


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_only_http_links_become_hrefs(url: str) -> None:
    _, html = parts(render(stored(1, "accord", url=url)))
    found = assert_html_is_safe(html)
    assert not any(tag == "a" for tag, _ in found.tags)


def test_quotes_in_an_http_url_cannot_break_out_of_the_attribute() -> None:
    url = 'https://ok.example/?q=\'x\'&r="y"<z>"onmouseover="alert(1)'
    _, html = parts(render(stored(1, "accord", url=url)))
    found = assert_html_is_safe(html)
    assert ("a", [("href", url)]) in found.tags


def test_hostile_configuration_headers_are_cleaned() -> None:
    content = build_digest(claimed(stored(1, "accord")), watchlist_order=[], tz=PARIS, now=NOW)
    message = render_message(
        content,
        sender="monitor@example.org\r\nBcc: victim@example.org",
        recipients=["alice@example.org\nCc: eve@example.org"],
        subject="Veille\r\nX-Evil: 1",
        message_id="<id\r\n@x>",
        tz=PARIS,
    )
    raw = message.as_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Bcc"] is None and parsed["X-Evil"] is None
    assert str(parsed["Subject"]).startswith("Veille X-Evil: 1: 1 new hit")


def test_clean_header() -> None:
    assert clean_header(" a\r\n\tb\x00c\u2028d  ") == "a b c d"
