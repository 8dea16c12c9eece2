"""Editing feeds.yaml in place: `monitor add`, `remove` and `add --replace` keep every other
byte of the file, refuse duplicates and invalid results, and write atomically.

The commands run through click's runner against feeds served by a real HTTP server on
127.0.0.1; the file edits are checked byte for byte against the original."""

from __future__ import annotations

import difflib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from monitor.cli import main
from monitor.config import load_config, parse_config
from monitor.errors import ConfigError, SourceError
from monitor.reload import ConfigWatcher
from monitor.sources.edit import FeedsDocument, NewFeed, save, write_atomically
from tests.corpus import REPO_ROOT
from tests.servers import HTTPTestServer, Reply

# A hand-written file in another style than the bundled one: items at column 0 under
# feeds:, comments everywhere, quoted values, a flow list, a trailing comment block.
COMMENTED = """\
# My feeds — edited by hand.
database: monitor.db   # beside this file

feeds:
# Togo first
- url: "https://www.republicoftogo.com/rss.xml"   # the government's site
  name: 'République togolaise'
  interval: 30m
- url: https://apanews.net/feed/
  name: APA News
  # language is detected
# - url: https://disabled.example.org/rss
#   name: Disabled

watchlists:
  - name: Togo
    query: Togo   # a single word
    feeds: [APA News, République togolaise]
digest:
  from: veille@example.org
  to: [analyste@example.org]
"""


def rss(title: str, *dates: str) -> bytes:
    items = "".join(
        f"<item><title>Article {number}</title><link>https://example.org/{number}</link>"
        f"<guid>{number}</guid><pubDate>{date}</pubDate></item>"
        for number, date in enumerate(dates)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>{title}</title><link>https://example.org/</link>{items}</channel></rss>"
    ).encode()


FEED_REPLY = Reply(
    headers={"Content-Type": "application/rss+xml"},
    body=rss("Le Flux Local", "Tue, 01 Dec 2026 08:00:00 GMT", "Mon, 30 Nov 2026 08:00:00 GMT"),
)


def invoke(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["-c", str(config), *args], catch_exceptions=False)


def added_lines(before: str, after: str) -> list[str]:
    """The lines `after` adds to `before`; fails if anything else changed."""
    diff = list(difflib.ndiff(before.splitlines(keepends=True), after.splitlines(keepends=True)))
    removed = [line for line in diff if line.startswith("- ")]
    assert removed == [], f"lines were changed or removed: {removed}"
    return [line[2:] for line in diff if line.startswith("+ ")]


@pytest.fixture
def commented(tmp_path: Path) -> Path:
    path = tmp_path / "feeds.yaml"
    path.write_text(COMMENTED, encoding="utf-8")
    return path


@pytest.fixture
def bundled(tmp_path: Path) -> Path:
    path = tmp_path / "feeds.yaml"
    path.write_bytes((REPO_ROOT / "feeds.yaml").read_bytes())
    return path


@pytest.fixture
def feed_server() -> Iterator[HTTPTestServer]:
    with HTTPTestServer({"/feed.xml": FEED_REPLY}) as server:
        yield server


# --------------------------------------------------------------------------- add


def test_add_to_a_commented_file_changes_nothing_but_the_new_block(
    commented: Path, feed_server: HTTPTestServer
) -> None:
    url = feed_server.url("/feed.xml")
    result = invoke(commented, "add", url, "--interval", "1h", "--tag", "local")
    assert result.exit_code == 0, result.output
    after = commented.read_text(encoding="utf-8")
    # Inserted after the last feed's own lines, before the comments that follow it.
    assert added_lines(COMMENTED, after) == [
        f"- url: http://127.0.0.1:{feed_server.port}/feed.xml\n",
        "  name: Le Flux Local\n",
        "  interval: 1h\n",
        "  tags: [local]\n",
    ]
    assert after.index("  # language is detected") < after.index("Le Flux Local")
    assert after.index("Le Flux Local") < after.index("# - url: https://disabled")
    feeds = load_config(commented).feeds
    assert [feed.name for feed in feeds][-1] == "Le Flux Local"
    assert "added" in result.output and "Le Flux Local" in result.output


def test_add_to_the_bundled_file_is_byte_identical_elsewhere(
    bundled: Path, feed_server: HTTPTestServer
) -> None:
    before = bundled.read_bytes()
    result = invoke(bundled, "add", feed_server.url("/feed.xml"), "--name", "Local: test #1")
    assert result.exit_code == 0, result.output
    after = bundled.read_bytes()
    new = added_lines(before.decode(), after.decode())
    assert new == [
        f"  - url: http://127.0.0.1:{feed_server.port}/feed.xml\n",
        "    name: 'Local: test #1'\n",  # quoted: ": " and " #" would change its meaning
    ]
    # Removing the added lines gives back the original bytes exactly.
    assert after.replace("".join(new).encode(), b"", 1) == before
    assert load_config(bundled).feeds[-1].name == "Local: test #1"


def test_add_keeps_crlf_line_endings_a_byte_order_mark_and_the_file_mode(
    tmp_path: Path, feed_server: HTTPTestServer
) -> None:
    path = tmp_path / "feeds.yaml"
    original = b"\xef\xbb\xbf" + COMMENTED.replace("\n", "\r\n").encode()
    path.write_bytes(original)
    os.chmod(path, 0o640)
    result = invoke(path, "add", feed_server.url("/feed.xml"))
    assert result.exit_code == 0, result.output
    after = path.read_bytes()
    assert after.startswith(b"\xef\xbb\xbf")
    assert after.count(b"\n") == after.count(b"\r\n")
    block = f"- url: http://127.0.0.1:{feed_server.port}/feed.xml\r\n  name: Le Flux Local\r\n"
    assert after.replace(block.encode(), b"", 1) == original
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [entry.name for entry in tmp_path.iterdir()] == ["feeds.yaml"]  # no temp file left


def test_add_refuses_a_url_already_present_under_another_spelling(
    commented: Path, feed_server: HTTPTestServer
) -> None:
    first = invoke(commented, "add", feed_server.url("/feed.xml"), "--name", "Local")
    assert first.exit_code == 0, first.output
    before = commented.read_bytes()
    requests = len(feed_server.requests)
    spelled = f"HTTPS://127.0.0.1:{feed_server.port}/feed.xml/?utm_source=news&utm_medium=email"
    result = invoke(commented, "add", spelled)
    assert result.exit_code == 2
    assert '"Local"' in result.output and "already in" in result.output
    assert commented.read_bytes() == before
    assert len(feed_server.requests) == requests  # refused without fetching anything


def test_add_refuses_a_name_already_used(commented: Path, feed_server: HTTPTestServer) -> None:
    before = commented.read_bytes()
    result = invoke(commented, "add", feed_server.url("/feed.xml"), "--name", "apa news")
    assert result.exit_code == 2
    assert 'already named "APA News"' in result.output
    assert commented.read_bytes() == before


def test_add_with_an_invalid_interval_changes_nothing(
    commented: Path, feed_server: HTTPTestServer
) -> None:
    before = commented.read_bytes()
    bad_unit = invoke(commented, "add", feed_server.url("/feed.xml"), "--interval", "15 minutes")
    assert bad_unit.exit_code == 2
    assert "bad duration" in bad_unit.output
    out_of_range = invoke(commented, "add", feed_server.url("/feed.xml"), "--interval", "10s")
    assert out_of_range.exit_code == 1
    assert "out of range" in out_of_range.output
    assert "the file was not changed" in out_of_range.output
    assert commented.read_bytes() == before


def test_add_from_a_site_without_feed_explains_what_was_tried(commented: Path) -> None:
    page = Reply(headers={"Content-Type": "text/html"}, body=b"<html><head></head></html>")
    with HTTPTestServer({"/": page, "/page": page}) as server:
        result = invoke(commented, "add", server.url("/page"))
    assert result.exit_code == 2
    assert "no feed found" in result.output
    assert "/robots.txt" in result.output  # the notes say what answered 404


# --------------------------------------------------------------------------- replace


def test_replace_changes_only_the_url_and_keeps_name_interval_and_comments(
    commented: Path, feed_server: HTTPTestServer
) -> None:
    result = invoke(
        commented, "add", feed_server.url("/feed.xml"), "--replace", "République togolaise"
    )
    assert result.exit_code == 0, result.output
    after = commented.read_text(encoding="utf-8")
    expected = COMMENTED.replace(
        '"https://www.republicoftogo.com/rss.xml"', f"http://127.0.0.1:{feed_server.port}/feed.xml"
    )
    assert after == expected
    feeds = load_config(commented).feeds
    assert feeds[0].name == "République togolaise"
    assert feeds[0].interval.total_seconds() == 1800


def test_replace_by_url_and_unknown_names(commented: Path, feed_server: HTTPTestServer) -> None:
    unknown = invoke(commented, "add", feed_server.url("/feed.xml"), "--replace", "APA Nwes")
    assert unknown.exit_code == 2
    assert 'did you mean "APA News"' in unknown.output
    assert feed_server.count("/feed.xml") == 0  # refused before any request
    by_url = invoke(
        commented, "add", feed_server.url("/feed.xml"), "--replace", "http://APANEWS.net/feed"
    )
    assert by_url.exit_code == 0, by_url.output
    assert load_config(commented).feeds[1].url == feed_server.url("/feed.xml")


# --------------------------------------------------------------------------- remove


def test_remove_takes_out_the_item_and_its_own_lines_only(commented: Path) -> None:
    document = FeedsDocument.read(commented)
    text = document.with_removed(document.feeds[1])
    assert text == COMMENTED.replace(
        "- url: https://apanews.net/feed/\n  name: APA News\n  # language is detected\n", ""
    )


def test_remove_refuses_a_feed_a_watchlist_names_and_says_what_to_edit(commented: Path) -> None:
    before = commented.read_bytes()
    result = invoke(commented, "remove", "APA News")
    assert result.exit_code == 2
    assert 'watchlist "Togo"' in result.output
    assert f"{commented}:18" in result.output  # the line of its feeds: list
    assert commented.read_bytes() == before


def test_remove_by_name_or_url_and_did_you_mean(commented: Path) -> None:
    commented.write_text(
        COMMENTED.replace("    feeds: [APA News, République togolaise]\n", ""), encoding="utf-8"
    )
    typo = invoke(commented, "remove", "APA Newz")
    assert typo.exit_code == 2
    assert 'did you mean "APA News"' in typo.output
    removed = invoke(commented, "remove", "https://apanews.net/feed")
    assert removed.exit_code == 0, removed.output
    assert "removed" in removed.output and "APA News" in removed.output
    assert [feed.name for feed in load_config(commented).feeds] == ["République togolaise"]
    last = invoke(commented, "remove", "République togolaise")
    assert last.exit_code == 2
    assert "only feed" in last.output and "needs at least one" in last.output
    assert len(load_config(commented).feeds) == 1


# --------------------------------------------------------------------------- saving


def test_an_edit_that_would_break_the_file_is_refused_and_nothing_is_written(
    commented: Path,
) -> None:
    document = FeedsDocument.read(commented)
    broken = document.with_added([NewFeed(url="https://new.example.org/rss", name="APA News")])
    with pytest.raises(ConfigError) as raised:
        save(document, broken)
    assert any('already named "APA News"' in problem for problem in raised.value.problems)
    assert commented.read_text(encoding="utf-8") == COMMENTED


def test_problems_the_file_already_had_do_not_block_an_edit(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    text = COMMENTED.replace("from: veille@example.org", "from: ${SENDER}")
    path.write_text(text, encoding="utf-8")
    document = FeedsDocument.read(path)
    new = document.with_added([NewFeed(url="https://new.example.org/rss", name="New")])
    report = save(document, new, environ={})
    assert report.remaining_problems
    assert all("SENDER" in problem for problem in report.remaining_problems)
    assert path.read_text(encoding="utf-8") == new


def test_a_file_changed_during_the_edit_is_not_overwritten(commented: Path) -> None:
    document = FeedsDocument.read(commented)
    new = document.with_added([NewFeed(url="https://new.example.org/rss", name="New")])
    commented.write_text(COMMENTED + "# edited meanwhile\n", encoding="utf-8")
    with pytest.raises(SourceError, match="changed while it was being edited"):
        save(document, new)
    assert commented.read_text(encoding="utf-8").endswith("# edited meanwhile\n")


def test_write_atomically_follows_a_symbolic_link(tmp_path: Path) -> None:
    real = tmp_path / "real.yaml"
    real.write_text("old", encoding="utf-8")
    link = tmp_path / "feeds.yaml"
    link.symlink_to(real)
    write_atomically(link, b"new")
    assert link.is_symlink()
    assert real.read_text(encoding="utf-8") == "new"


def test_a_flow_style_feeds_list_is_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_text("feeds: [{url: 'https://a.example.org/rss'}]\n", encoding="utf-8")
    document = FeedsDocument.read(path)
    with pytest.raises(SourceError, match="one feed per line"):
        document.with_added([NewFeed(url="https://b.example.org/rss")])


def test_the_daemon_watcher_sees_an_added_feed(commented: Path) -> None:
    watcher = ConfigWatcher(commented, sleep=lambda _seconds: None)
    assert len(watcher.current.feeds) == 2
    document = FeedsDocument.read(commented)
    inode = commented.stat().st_ino
    save(document, document.with_added([NewFeed(url="https://new.example.org/rss", name="New")]))
    assert commented.stat().st_ino != inode  # replaced by rename, not rewritten in place
    reloaded = watcher.poll()
    assert reloaded is not None
    assert [feed.name for feed in reloaded.feeds][-1] == "New"


def test_replace_by_a_sitemap_is_refused(commented: Path) -> None:
    routes = {
        "/news.xml": Reply(body=b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"/>')
    }
    with HTTPTestServer(routes) as server:
        result = invoke(commented, "add", server.url("/news.xml"), "--replace", "APA News")
    assert result.exit_code == 2
    assert "is a sitemap, not a feed" in result.output
    assert commented.read_text(encoding="utf-8") == COMMENTED


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (  # no feeds: key at all
            "database: x.db\n# end",
            "database: x.db\n# end\nfeeds:\n  - url: https://n.example.org/rss\n    name: N\n",
        ),
        (  # an empty key
            "feeds:\nwatchlists: []\n",
            "feeds:\n  - url: https://n.example.org/rss\n    name: N\nwatchlists: []\n",
        ),
        (  # an empty flow list, with a comment kept
            "  # c\nfeeds: []   # none yet\nsets: {}\n",
            "  # c\nfeeds:   # none yet\n  - url: https://n.example.org/rss\n    name: N\nsets: {}\n",
        ),
        (  # a dash alone on its line, deeper indentation, no final newline
            "feeds:\n    -\n        url: https://a.example.org/rss",
            "feeds:\n    -\n        url: https://a.example.org/rss\n"
            "    -   url: https://n.example.org/rss\n        name: N\n",
        ),
    ],
)
def test_feeds_lists_of_every_shape_get_the_new_item(
    tmp_path: Path, before: str, after: str
) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_text(before, encoding="utf-8")
    document = FeedsDocument.read(path)
    assert document.with_added([NewFeed(url="https://n.example.org/rss", name="N")]) == after


def test_remove_refuses_the_last_feed_with_a_tag_a_watchlist_uses(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    text = COMMENTED.replace("  name: APA News\n", "  name: APA News\n  tags: [Agences]\n")
    text = text.replace("    feeds: [APA News, République togolaise]\n", "    tags: [agences]\n")
    path.write_text(text, encoding="utf-8")
    load_config(path)
    result = invoke(path, "remove", "APA News")
    assert result.exit_code == 2
    assert 'only feed with the tag "Agences"' in result.output
    assert f'watchlist "Togo" ({path}:19)' in result.output
    assert path.read_text(encoding="utf-8") == text


_NAME_TEXT = (
    st.text(
        st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters="\ufeff"),
        min_size=1,
        max_size=40,
    )
    .map(str.strip)
    .filter(bool)
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=_NAME_TEXT,
    tags=st.lists(
        _NAME_TEXT.filter(lambda tag: "," not in tag), max_size=3, unique_by=str.casefold
    ),
    path=st.text("abcxyz-_.~%20/?=&", max_size=20),
)
def test_any_name_and_tags_are_written_so_that_they_read_back_unchanged(
    tmp_path: Path, name: str, tags: list[str], path: str
) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text(COMMENTED, encoding="utf-8")
    document = FeedsDocument.read(config)
    assume(name.casefold() not in {"apa news", "république togolaise"})
    url = f"https://new.example.org/{path}"
    assume(document.same_url(url) is None)
    text = document.with_added([NewFeed(url=url, name=name, tags=tuple(tags))])
    added_lines(COMMENTED, text)  # nothing else changed
    feed = parse_config(text, path=config, environ={}).feeds[-1]
    assert (feed.url, feed.name) == (url, name)
    assert FeedsDocument(config, text.encode()).feeds[-1].tags == tuple(tags)
