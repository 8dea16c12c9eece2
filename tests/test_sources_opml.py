"""OPML import and export: the export shapes of six feed readers (two real NetNewsWire
files from the corpus, fixtures in tests/data/opml for the others), tags from folders
and category attributes, duplicates, an entity bomb, and an export → import round trip."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from lxml import etree

from monitor.cli import main
from monitor.config import load_config
from monitor.errors import SourceError
from monitor.sources.edit import FeedsDocument
from monitor.sources.opml import OpmlFeed, read_opml, write_opml
from tests.corpus import require_corpus
from tests.test_sources_edit import COMMENTED

DATA = Path(__file__).parent / "data" / "opml"

# A configuration without feeds yet: valid once an import has added one.
EMPTY = """\
database: monitor.db
feeds: []
watchlists:
  - name: Togo
    query: Togo
digest:
  from: veille@example.org
  to: [analyste@example.org]
"""


def invoke(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["-c", str(config), *args], catch_exceptions=False)


def read(name: str) -> list[OpmlFeed]:
    path = DATA / name
    return list(read_opml(path.read_bytes(), source=str(path)).feeds)


# --------------------------------------------------------------------------- reading


def test_feedly_categories_become_tags() -> None:
    feeds = read("feedly.opml")
    assert [(feed.title, feed.tags) for feed in feeds] == [
        ("RFI - Afrique", ("Afrique",)),
        ("Le Monde.fr - Afrique", ("Afrique",)),
        ("Zone Militaire", ("Défense & sécurité",)),
        ("RFI - Afrique", ("Défense & sécurité",)),  # Feedly lists it in both categories
    ]
    assert feeds[0].html_url == "https://www.rfi.fr/fr/afrique/"


def test_inoreader_feed_outside_folders_has_no_tags() -> None:
    feeds = read("inoreader.xml")
    assert [(feed.title, feed.tags) for feed in feeds] == [
        ("Studio Tamani", ("Sahel",)),
        ("LeFaso.net", ("Sahel",)),
        ("Jeune Afrique", ()),
    ]


def test_miniflux_outlines_without_type() -> None:
    feeds = read("miniflux.opml")
    assert [(feed.url, feed.tags) for feed in feeds] == [
        ("https://apanews.net/feed/", ("All",)),
        ("https://www.republicoftogo.com/rss.xml", ("Togo",)),
        ("https://icilome.com/feed/", ("Togo",)),
    ]


def test_freshrss_category_attribute_adds_tags_and_text_is_unescaped() -> None:
    feeds = read("freshrss.opml.xml")
    assert feeds[0].tags == ("Afrique de l'Ouest", "Afrique/Ouest", "vidéo")
    assert feeds[2].title == "Le Blog <Sahel>"
    assert feeds[2].url == "https://sahel.example.org/index.php?feed=rss2&lang=fr"


def test_ttrss_nested_categories_settings_and_unusable_outlines() -> None:
    path = DATA / "ttrss.opml"
    opml = read_opml(path.read_bytes(), source=str(path))
    assert [(feed.title, feed.url, feed.tags) for feed in opml.feeds] == [
        (
            "Togo Breaking News",
            "https://www.togobreakingnews.info/feed/",
            ("Presse", "Togo", "politique"),
        ),
        ("Le Monde Afrique", "HTTPS://WWW.LEMONDE.FR:443/afrique/rss_full.xml", ("Presse",)),
        ("Ancien flux", "http://old.example.org/rss", ()),  # feed:// read as http://
    ]
    assert opml.skipped == (
        "Podcast sans flux: no xmlUrl",
        "Flux FTP: 'ftp://files.example.org/feed.xml' is not an http(s) address",
        "Flux privé: its address holds a user name or password (user:password@), not supported",
        "tt-rss-prefs: Tiny Tiny RSS settings, not feeds",
        "tt-rss-labels: Tiny Tiny RSS settings, not feeds",
    )


@pytest.mark.corpus
@pytest.mark.parametrize("name", ["Subs.opml", "SubsNoTitleAttributes.opml"])
def test_netnewswire_exports_from_the_corpus(name: str) -> None:
    path = require_corpus("feeds", "netnewswire", name)
    opml = read_opml(path.read_bytes(), source=str(path))
    outlines = etree.parse(str(path)).getroot().findall(".//outline[@xmlUrl]")
    assert len(opml.feeds) == len(outlines) > 200
    assert opml.feeds[0] == OpmlFeed(
        url="http://daringfireball.net/feeds/main",
        title="Daring Fireball",
        html_url="http://daringfireball.net/",
    )
    assert any(feed.title == "chat & code" for feed in opml.feeds)


def test_an_entity_bomb_is_refused_without_expansion() -> None:
    path = DATA / "billion_laughs.opml"
    with pytest.raises(SourceError, match="declares XML entities") as refused:
        read_opml(path.read_bytes(), source=str(path))
    assert "lollol" not in str(refused.value)


@pytest.mark.parametrize(
    "document",
    [
        (DATA / "billion_laughs.opml").read_text(encoding="utf-8"),
        '<?xml version="1.0" encoding="UTF-8"?><!DOCTYPE opml [<!ENTITY x "harmless">]>'
        '<opml version="2.0"><body><outline text="&x;" xmlUrl="https://a.example.org/"/></body></opml>',
    ],
)
def test_entities_in_utf16_are_refused_too(document: str) -> None:
    data = document.replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")
    with pytest.raises(SourceError, match="declares XML entities"):
        read_opml(data, source="utf16.opml")


def test_an_external_entity_is_refused() -> None:
    xxe = b"""<?xml version="1.0"?><!DOCTYPE opml [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<opml version="2.0"><body><outline text="&secret;" xmlUrl="https://example.org/rss"/></body></opml>"""
    with pytest.raises(SourceError, match="declares XML entities"):
        read_opml(xxe, source="xxe.opml")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"<rss version='2.0'><channel/></rss>", "not an OPML file"),
        (b"<opml version='2.0'><head/></opml>", "has no <body>"),
        (b"<opml><body><outline", "not well-formed XML"),
        (b"", "not well-formed XML"),
    ],
)
def test_files_that_are_not_opml_are_refused_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        read_opml(data, source="file.opml")


# --------------------------------------------------------------------------- the commands


def test_import_adds_feeds_with_tags_and_skips_duplicates(tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text(
        COMMENTED.replace("https://apanews.net/feed/", "http://APANEWS.net/feed?utm_source=x"),
        encoding="utf-8",
    )
    result = invoke(config, "import-opml", str(DATA / "miniflux.opml"))
    assert result.exit_code == 0, result.output
    assert "added 1 feed(s)" in result.output
    assert "icilome" in result.output
    assert "skipped 2 duplicate(s)" in result.output
    assert 'already configured as "APA News"' in result.output
    assert 'already configured as "République togolaise"' in result.output
    feeds = load_config(config).feeds
    assert [(feed.name, feed.url) for feed in feeds][-1] == ("icilome", "https://icilome.com/feed/")
    text = config.read_text(encoding="utf-8")
    assert "- url: https://icilome.com/feed/\n  name: icilome\n  tags: [Togo]\n" in text


def test_import_merges_a_feed_listed_under_two_categories(tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text(EMPTY, encoding="utf-8")
    result = invoke(config, "import-opml", str(DATA / "feedly.opml"))
    assert result.exit_code == 0, result.output
    assert "added 3 feed(s)" in result.output
    assert "listed again in the OPML file" in result.output
    text = config.read_text(encoding="utf-8")
    assert "  - url: https://www.rfi.fr/fr/afrique/rss\n    name: RFI - Afrique\n" in text
    assert "    tags: [Afrique, Défense & sécurité]\n" in text
    assert len(load_config(config).feeds) == 3


def test_import_gives_unique_names(tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text(COMMENTED, encoding="utf-8")
    opml = tmp_path / "same-names.opml"
    opml.write_text(
        '<opml version="2.0"><body>'
        '<outline text="APA News" xmlUrl="https://other.example.org/apa.xml"/>'
        '<outline text="APA News" xmlUrl="https://third.example.org/apa.xml"/>'
        '<outline xmlUrl="https://www.untitled.example.org/rss"/>'
        "</body></opml>",
        encoding="utf-8",
    )
    result = invoke(config, "import-opml", str(opml))
    assert result.exit_code == 0, result.output
    names = [feed.name for feed in load_config(config).feeds]
    assert names[2:] == [
        "APA News (other.example.org)",
        "APA News (third.example.org)",
        "untitled.example.org",
    ]


def test_import_dry_run_and_a_refused_file_change_nothing(tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text(COMMENTED, encoding="utf-8")
    dry = invoke(config, "import-opml", "--dry-run", str(DATA / "inoreader.xml"))
    assert dry.exit_code == 0, dry.output
    assert "would add 3 feed(s)" in dry.output
    bomb = invoke(config, "import-opml", str(DATA / "billion_laughs.opml"))
    assert bomb.exit_code == 2
    assert "declares XML entities" in bomb.output
    missing = invoke(config, "import-opml", str(tmp_path / "nowhere.opml"))
    assert missing.exit_code == 2
    assert "cannot read it" in missing.output
    assert config.read_text(encoding="utf-8") == COMMENTED


def test_export_is_valid_escaped_opml_2(tmp_path: Path) -> None:
    written = write_opml(
        [
            OpmlFeed(
                url="https://a.example.org/rss?x=1&y=2", title='Le "Blog" <A>', tags=("b&c", "d")
            ),
            OpmlFeed(url="https://b.example.org/rss"),
        ],
        title="monitor",
        created=datetime(2026, 12, 1, 8, 0, tzinfo=UTC),
    )
    root = etree.fromstring(written)
    assert root.get("version") == "2.0"
    assert root.findtext("head/dateCreated") == "Tue, 01 Dec 2026 08:00:00 +0000"
    folder = root.find("body/outline")
    assert folder is not None and folder.get("text") == "b&c" and folder.get("xmlUrl") is None
    feed = folder.find("outline")
    assert feed is not None
    assert feed.attrib == {
        "type": "rss",
        "text": 'Le "Blog" <A>',
        "title": 'Le "Blog" <A>',
        "xmlUrl": "https://a.example.org/rss?x=1&y=2",
        "category": "b&c,d",
    }
    untagged = root.findall("body/outline")[1]
    assert untagged.get("xmlUrl") == "https://b.example.org/rss"
    assert untagged.get("text") == "https://b.example.org/rss"  # text is required by the spec
    # Read back, an address standing in for the title is no title.
    assert read_opml(written, source="export.opml").feeds[1].title is None


def test_export_then_import_into_an_empty_config_round_trips_feeds_and_tags(
    tmp_path: Path,
) -> None:
    source = tmp_path / "source.yaml"
    source.write_text(
        EMPTY.replace(
            "feeds: []\n",
            "feeds:\n"
            "  - url: https://www.rfi.fr/fr/afrique/rss\n"
            "    name: RFI Afrique\n"
            "    tags: [afrique, radio]\n"
            "  - url: https://apanews.net/feed/\n"
            "    name: APA & co <agence>\n"
            "  - url: https://www.lemonde.fr/afrique/rss_full.xml?a=1&b=2\n"
            "    name: Le Monde Afrique\n"
            "    tags: [presse, afrique]\n",
        ),
        encoding="utf-8",
    )
    exported = tmp_path / "export.opml"
    result = invoke(source, "export-opml", str(exported))
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(exported.stat().st_mode) == 0o666 & ~umask()
    nowhere = invoke(source, "export-opml", str(tmp_path / "missing" / "export.opml"))
    assert nowhere.exit_code == 2
    assert "cannot write it" in nowhere.output
    stdout_copy = invoke(source, "export-opml")
    assert stdout_copy.output.startswith("<?xml")
    target = tmp_path / "target.yaml"
    target.write_text(EMPTY, encoding="utf-8")
    imported = invoke(target, "import-opml", str(exported))
    assert imported.exit_code == 0, imported.output

    def feeds_and_tags(path: Path) -> set[tuple[str, str | None, tuple[str, ...]]]:
        return {(feed.url, feed.name, feed.tags) for feed in FeedsDocument.read(path).feeds}

    assert feeds_and_tags(target) == feeds_and_tags(source)
    assert len(load_config(target).feeds) == 3


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
