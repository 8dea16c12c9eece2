"""`monitor search`: the FTS5 index narrows, the matcher decides; the results are those of
reading every article. A real store built from BBC Afrique articles of the corpus."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from monitor.cli import main
from monitor.matching import Matcher
from monitor.models import HitResult, Watchlist
from monitor.query import parse_query
from monitor.search import candidates_for
from monitor.service import search_store
from monitor.store import Store
from tests.stored import bbc_afrique, item, record_poll

NOW = datetime.now(UTC).replace(microsecond=0)
LONG_AGO = NOW - timedelta(days=100)
FEED = "https://bbc.example/afrique/rss"
OLD_BATCH = 80  # the first articles were first seen 100 days ago, the others now
ARTICLES = 160  # of the corpus's 422: reading each costs some 10 ms

EXTRA = [
    ("Visite à l'Élysée", "Le président a été reçu à l'Élysée mardi.", "fr"),
    ("Le cœur du Sahel", "Au cœur du Sahel, les maux de la région.", "fr"),
    ("Soldiers dying in the Sahel", "Many soldiers were dying; others lied about it.", "en"),
    ("Sans langue déclarée", "Une opération anti-terroriste a eu lieu aujourd'hui.", None),
]


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("search")
    path = folder / "monitor.db"
    articles = bbc_afrique()[:ARTICLES]
    with Store(path) as store:
        old = [
            item(f"https://bbc.example/a/{index}", title, text)
            for index, (title, text) in enumerate(articles[:OLD_BATCH])
        ]
        record_poll(store, FEED, old, LONG_AGO)
        recent = [
            item(f"https://bbc.example/a/{index}", title, text)
            for index, (title, text) in enumerate(articles[OLD_BATCH:], start=OLD_BATCH)
        ]
        recent += [
            item(f"https://bbc.example/extra/{index}", title, text, language=language)
            for index, (title, text, language) in enumerate(EXTRA)
        ]
        record_poll(store, FEED, recent, NOW)
    (folder / "feeds.yaml").write_text(
        "feeds:\n  - url: https://bbc.example/afrique/rss\n    name: BBC\n"
        "sets:\n  sahel: [Mali, Niger, Burkina]\n"
        "watchlists:\n  - name: Togo\n    query: Togo\n"
        "digest:\n  from: veille@example.org\n  to: [analyste@example.org]\n",
        encoding="utf-8",
    )
    yield path


def search_cli(database: Path, *args: str) -> Result:
    return CliRunner().invoke(
        main, ["-c", str(database.parent / "feeds.yaml"), "search", *args], catch_exceptions=False
    )


QUERIES = [
    "Togo",
    "militaire",
    '"coopération militaire"',
    '"Côte d\'Ivoire"',
    '"chef de l\'État"',
    '"coup d\'État"',
    "CEDEAO OR Cédéao",
    "sanction* NOT football",
    "title:Mali",
    "élection NEAR/5 présidentielle",
    "Burkina OR Niger OR Mali",
    "le OR la",  # stopwords: no safe index expression, every article is read
    "maux",
    "mal",
    "dying",
    "lie",
    "anti-terroriste",
    "antiterroriste",
    "aujourd'hui",
    "=Togo",
    "coeur",
    "elysee",
    "président* AND (armée OR militaires)",
]


@pytest.fixture(scope="module")
def every_article_read(database: Path) -> dict[str, set[tuple[int, HitResult]]]:
    """What each query of QUERIES matches when every article is read: one matcher holding
    them all, one pass (the matcher's results do not depend on the other watchlists)."""
    watchlists = [Watchlist(name=text, query=parse_query(text, {})) for text in QUERIES]
    found: dict[str, set[tuple[int, HitResult]]] = {text: set() for text in QUERIES}
    matcher = Matcher(watchlists)
    with Store(database, read_only=True) as store:
        for stored in store.stored_articles(None, since=None):
            for hit in matcher.match(stored.article):
                found[hit.watchlist].add((stored.article_id, replace(hit, watchlist="search")))
    return found


@pytest.mark.parametrize("text", [query for query in QUERIES if query != "le OR la"])
def test_search_finds_what_reading_every_article_finds(
    database: Path, every_article_read: dict[str, set[tuple[int, HitResult]]], text: str
) -> None:
    with Store(database, read_only=True) as store:
        run = search_store(store, parse_query(text, {}), since=None)
    assert {(r.stored.article_id, r.hit) for r in run.results} == every_article_read[text]
    assert len(run.results) == len(every_article_read[text])
    ranks = [(-r.hit.relevance, -r.stored.first_seen.timestamp()) for r in run.results]
    assert ranks == sorted(ranks)


def test_the_index_reads_fewer_articles_than_a_scan(
    database: Path, every_article_read: dict[str, set[tuple[int, HitResult]]]
) -> None:
    with Store(database, read_only=True) as store:
        total = sum(1 for _ in store.stored_articles(None, since=None))
        run = search_store(store, parse_query("Togo", {}), since=None)
        fallback = search_store(store, parse_query("le OR la", {}), since=None)
    assert run.used_index and run.results
    assert run.read < total / 5
    assert not fallback.used_index and fallback.read == total
    assert {(r.stored.article_id, r.hit) for r in fallback.results} == every_article_read[
        "le OR la"
    ]


def test_a_query_with_stemmed_words_reads_articles_of_other_languages_too() -> None:
    stemmed = candidates_for(parse_query("militaires", {}))
    names = candidates_for(parse_query("Togo OR =armée OR sanction*", {}))
    assert stemmed.expression == '"mili"*' and stemmed.other_languages
    assert names.expression is not None and not names.other_languages


@pytest.mark.parametrize("text", ["elysee", "ÉLYSÉE", "Élysée", "élysée"])
def test_accents_and_case_never_matter(database: Path, text: str) -> None:
    with Store(database, read_only=True) as store:
        run = search_store(store, parse_query(text, {}), since=None)
    assert [r.stored.article.title for r in run.results] == ["Visite à l'Élysée"]
    assert run.used_index


def test_a_ligature_is_found_either_way(database: Path) -> None:
    assert candidates_for(parse_query("coeur", {})).expression == '("coeu"* OR "cœu"*)'
    with Store(database, read_only=True) as store:
        titles = [
            r.stored.article.title
            for r in search_store(store, parse_query("coeur", {}), since=None).results
        ]
        ligature = [
            r.stored.article.title
            for r in search_store(store, parse_query("cœur", {}), since=None).results
        ]
    assert "Le cœur du Sahel" in titles and sorted(titles) == sorted(ligature)
    assert any("coeur" in title for title in titles)  # written without the ligature


def test_since_keeps_the_articles_first_seen_in_the_window(database: Path) -> None:
    query = parse_query("Togo OR Mali OR Niger", {})
    with Store(database, read_only=True) as store:
        everything = search_store(store, query, since=None).results
        recent = search_store(store, query, since=NOW - timedelta(days=30)).results
    assert any(r.stored.first_seen < NOW - timedelta(days=30) for r in everything)
    assert recent and all(r.stored.first_seen >= NOW - timedelta(days=30) for r in recent)
    assert {r.stored.article_id for r in recent} < {r.stored.article_id for r in everything}

    result = search_cli(database, "Togo OR Mali OR Niger", "--since", "30d", "--format", "json")
    assert result.exit_code == 0
    assert len(json.loads(result.output)) == min(len(recent), 50)


def test_json_lists_each_article_with_why_it_matched(database: Path) -> None:
    result = search_cli(database, "militaire*", "--format", "json", "--limit", "3")
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert len(found) == 3
    assert set(found[0]) == {
        "title",
        "url",
        "feed",
        "published",
        "first_seen",
        "relevance",
        "in_passing",
        "evidence",
        "matched",
        "clauses",
        "snippets",
        "text_dropped",
    }
    assert found[0]["feed"] == "BBC" and found[0]["matched"] == ["militaire*"]
    assert found[0]["clauses"][0]["clause"] == "militaire*"
    assert any("[[" in snippet for snippet in found[0]["snippets"])
    relevances = [entry["relevance"] for entry in found]
    assert relevances == sorted(relevances, reverse=True)


def test_the_table_and_the_exit_status(database: Path) -> None:
    found = search_cli(database, "@sahel")
    assert found.exit_code == 0
    assert "relevance" in found.output and "through the search index" in found.output
    nothing = search_cli(database, "zzyzx")
    assert nothing.exit_code == 1
    assert "0 matching articles" in nothing.output
    bad = search_cli(database, "Togo AND")
    assert bad.exit_code == 2
    assert "bad query" in bad.output and "^" in bad.output


def fts_is_in_step(path: Path) -> bool:
    """FTS5's own check that the index holds exactly what the articles table holds."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("INSERT INTO articles_fts (articles_fts, rank) VALUES ('integrity-check', 1)")
        return True
    except sqlite3.DatabaseError:
        return False
    finally:
        conn.close()


def test_the_index_follows_new_articles_and_dropped_texts(tmp_path: Path) -> None:
    path = tmp_path / "monitor.db"
    with Store(path) as store:
        record_poll(
            store,
            FEED,
            [item("https://bbc.example/x/1", "Titre quelconque", "Le mot qwertyuiop est rare.")],
            LONG_AGO,
        )
        record_poll(store, FEED, [item("https://bbc.example/x/2", "Zanzibar vote", "Texte.")], NOW)
        assert fts_is_in_step(path)
        rare = parse_query("qwertyuiop", {})
        assert [r.stored.article.url for r in search_store(store, rare, since=None).results] == [
            "https://bbc.example/x/1"
        ]
        assert store.drop_old_text(seen_before=NOW - timedelta(days=30), now=NOW) == 1
        assert fts_is_in_step(path)
        assert search_store(store, rare, since=None).results == []
        assert store.search_index_ids('"qwer"*') == []
        titled = search_store(store, parse_query("quelconque", {}), since=None).results
        assert [r.stored.text_dropped_at for r in titled] == [NOW]


def test_a_database_from_before_the_index_must_be_upgraded_first(
    database: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "monitor.db"
    with Store(database, read_only=True) as store:
        store.backup(copy)
    conn = sqlite3.connect(copy)
    with conn:
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = '0007_search_and_retention'")
    conn.close()
    (tmp_path / "feeds.yaml").write_text(
        (database.parent / "feeds.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    result = CliRunner().invoke(main, ["-c", str(tmp_path / "feeds.yaml"), "search", "Togo"])
    assert result.exit_code == 2
    assert "older monitor" in result.output and "monitor poll" in result.output
