"""``tags:`` on feeds and as a watchlist's scope: validation with file:line errors and
"did you mean", and the scope the matcher applies (tags, feeds, or their union)."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config import load_config, parse_config
from monitor.errors import ConfigError
from monitor.matching import Matcher, explain
from monitor.models import ArticleText, TextSource

CONFIG = """\
feeds:
  - url: https://rfi.example.org/rss
    name: RFI
    tags: [afrique, radio]
  - url: https://lemonde.example.org/rss
    name: Le Monde
    tags: [Presse, Afrique]
  - url: https://blog.example.org/rss
    name: Blog
watchlists:
  - name: Togo en Afrique
    query: Togo
    tags: [afrique]
  - name: Togo radio ou blog
    query: Togo
    tags: [radio]
    feeds: [Blog]
  - name: Togo partout
    query: Togo
digest:
  from: veille@example.org
  to: [analyste@example.org]
"""

ARTICLE = ArticleText(
    url="https://example.org/a",
    title="Le Togo vote",
    text="Les électeurs du Togo votent.",
    source=TextSource.PAGE,
    language="fr",
)


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "feeds.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    return raised.value.problems


def test_tags_scope_resolves_to_the_feeds_carrying_them(tmp_path: Path) -> None:
    config = parse_config(CONFIG, path=tmp_path / "feeds.yaml", environ={})
    scopes = {watchlist.name: watchlist.feeds for watchlist in config.watchlists}
    # Tags compare without case: "Afrique" on Le Monde is the tag "afrique".
    assert scopes == {
        "Togo en Afrique": ("RFI", "Le Monde"),
        "Togo radio ou blog": ("Blog", "RFI"),  # feeds: and tags: together: the union
        "Togo partout": (),
    }


@pytest.mark.parametrize(
    ("feed", "expected"),
    [
        ("RFI", ["Togo en Afrique", "Togo radio ou blog", "Togo partout"]),
        ("Le Monde", ["Togo en Afrique", "Togo partout"]),
        ("Blog", ["Togo radio ou blog", "Togo partout"]),
        ("Untagged elsewhere", ["Togo partout"]),
    ],
)
def test_the_matcher_applies_the_tag_scope(tmp_path: Path, feed: str, expected: list[str]) -> None:
    config = parse_config(CONFIG, path=tmp_path / "feeds.yaml", environ={})
    matcher = Matcher(config.watchlists)
    assert [hit.watchlist for hit in matcher.match(ARTICLE, feed_name=feed)] == expected


def test_explain_names_the_scope_that_excluded_the_article(tmp_path: Path) -> None:
    config = parse_config(CONFIG, path=tmp_path / "feeds.yaml", environ={})
    scoped = config.watchlists[0]
    result = explain(scoped, ARTICLE, feed_name="Blog")
    assert not result.matched
    assert any("RFI" in line and "Le Monde" in line for line in result.lines)


def test_an_unknown_tag_is_an_error_at_its_line_with_a_suggestion(tmp_path: Path) -> None:
    found = problems(tmp_path, CONFIG.replace("    tags: [afrique]\n", "    tags: [afriqe]\n"))
    assert len(found) == 1
    assert found[0].endswith(
        ':13:12: no feed has the tag "afriqe" (did you mean "afrique"?): a watchlist\'s tags: '
        "must use tags given with tags: under feeds: (e.g. tags: [afrique] on a feed)"
    )


def test_a_tag_used_as_scope_on_a_feed_without_name_is_an_error(tmp_path: Path) -> None:
    text = CONFIG.replace("    name: RFI\n", "")
    found = problems(tmp_path, text)
    assert len(found) == 2  # both tags of RFI are used by a watchlist
    assert ':3:12: this feed has the tag "afrique"' in found[0]
    assert "give it a name:" in found[0]
    assert ':3:21: this feed has the tag "radio"' in found[1]


def test_tags_on_a_feed_no_watchlist_uses_need_no_name(tmp_path: Path) -> None:
    text = CONFIG.replace("    name: Blog\n", "    tags: [perso]\n")
    text = text.replace("    feeds: [Blog]\n", "")
    config = parse_config(text, path=tmp_path / "feeds.yaml", environ={})
    assert len(config.feeds) == 3


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ("[a,b]", None),  # a flow list of two tags: valid
        ('["a,b"]', ':4:12: bad tag "a,b": a tag cannot contain a comma'),
        ("[]", ":4:11: feeds[1].tags is empty: give at least one tag"),
        ("afrique", ":4:11: expected a list"),
        (f"[{'x' * 51}]", ":4:12: text too long: at most 50 characters"),
    ],
)
def test_feed_tags_are_validated(tmp_path: Path, tags: str, message: str | None) -> None:
    text = CONFIG.replace("    tags: [afrique, radio]\n", f"    tags: {tags}\n")
    text = text.replace("    tags: [radio]\n", "").replace("    tags: [afrique]\n", "")
    if message is None:
        parse_config(text, path=tmp_path / "feeds.yaml", environ={})
        return
    found = problems(tmp_path, text)
    assert any(message in problem for problem in found), found
