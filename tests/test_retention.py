"""`retention: {article_text: ...}`: old articles lose their text unless an unsent hit needs
it; titles, links, dates and hits stay. Real SQLite files; the daemon's hourly run driven
with a fixed clock."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from monitor.articles import InlineArticles
from monitor.cli import main
from monitor.config import load_config
from monitor.daemon import RETENTION_EVERY, Daemon
from monitor.errors import ConfigError
from monitor.matching import Matcher
from monitor.models import FetchErrorKind, FetchFailed, FetchResult, NewArticle, Validators
from monitor.pipeline import Pipeline
from monitor.reload import ConfigWatcher
from monitor.service import apply_retention
from monitor.store import Store
from tests.stored import item, record_poll

NOW = datetime.now(UTC).replace(microsecond=0)
OLD = NOW - timedelta(days=200)
FEED = "https://news.example.org/rss"
NO_VALIDATORS = Validators()

CONFIG = """
feeds:
  - url: https://news.example.org/rss
    name: News
watchlists:
  - name: Togo
    query: Togo
  - name: Ghana
    query: Ghana
digest:
  from: veille@example.org
  to: [analyste@example.org]
retention:
  article_text: 180d
"""


def write_config(folder: Path, text: str = CONFIG) -> Path:
    path = folder / "feeds.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def invoke(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["-c", str(config), *args], catch_exceptions=False)


def fill(path: Path, config: Path) -> None:
    """Old articles: one without hits, one whose hit is unsent, one whose hit was sent, one
    with a quiet backfilled hit; and a recent one."""
    matcher = Matcher(load_config(config).watchlists)

    def matched(link: str, title: str, text: str) -> NewArticle:
        new = item(link, title, text)
        return item(link, title, text, hits=matcher.match(new.article, feed_name="News"))

    with Store(path) as store:
        record_poll(
            store,
            FEED,
            [matched("https://news.example.org/sent", "Le Togo vote", "Le Togo vote mardi.")],
            OLD,
            name="News",
        )
        store.claim_digest("2026-01-01", now=OLD)
        store.finish_digest("2026-01-01", now=OLD)
        record_poll(
            store,
            FEED,
            [
                matched("https://news.example.org/none", "Cacao", "Les cours du cacao montent."),
                matched("https://news.example.org/unsent", "Ghana", "Le Ghana vote mardi."),
                item("https://news.example.org/quiet", "Bénin", "Le Bénin et le Togo."),
            ],
            OLD + timedelta(days=1),
            name="News",
        )
        record_poll(
            store,
            FEED,
            [matched("https://news.example.org/recent", "Togo", "Le Togo, cette semaine.")],
            NOW,
            name="News",
        )
        # A quiet backfill found Togo in the Bénin article: stored, never to be mailed.
        quiet = [
            (article_id, hit)
            for article_id, article, feed in store.articles_since(None)
            if article.url == "https://news.example.org/quiet"
            for hit in matcher.match(article, feed_name=feed)
        ]
        assert store.add_backfill_hits("Togo", quiet, now=OLD, quiet=True) == 1


def texts(path: Path) -> dict[str, tuple[str, bool]]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT url, text, text_dropped_at FROM articles").fetchall()
    finally:
        conn.close()
    return {url.rsplit("/", 1)[1]: (text, dropped is not None) for url, text, dropped in rows}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = write_config(tmp_path)
    fill(tmp_path / "monitor.db", path)
    return path


def test_old_text_without_an_unsent_hit_is_dropped_and_everything_else_kept(
    config: Path,
) -> None:
    database = config.parent / "monitor.db"
    with Store(database) as store:
        hits_before = store.hits()
        assert apply_retention(store, load_config(config), now=NOW) == 3
        assert store.hits() == hits_before  # hits and their snippets stay
        assert apply_retention(store, load_config(config), now=NOW) == 0  # done once
    kept = texts(database)
    assert kept["none"] == ("", True)
    assert kept["sent"] == ("", True)
    assert kept["quiet"] == ("", True)  # a quiet backfilled hit is never sent
    assert kept["unsent"] == ("Le Ghana vote mardi.", False)  # the next digest needs it
    assert kept["recent"] == ("Le Togo, cette semaine.", False)
    conn = sqlite3.connect(database)
    titles = dict(conn.execute("SELECT url, title FROM articles").fetchall())
    conn.close()
    assert titles["https://news.example.org/sent"] == "Le Togo vote"


def test_without_the_key_text_is_kept_forever(tmp_path: Path) -> None:
    config = write_config(tmp_path, CONFIG.replace("retention:\n  article_text: 180d\n", ""))
    fill(tmp_path / "monitor.db", config)
    assert load_config(config).retention.article_text is None
    with Store(tmp_path / "monitor.db") as store:
        assert apply_retention(store, load_config(config), now=NOW + timedelta(days=3650)) == 0
    assert all(not dropped for _, dropped in texts(tmp_path / "monitor.db").values())


def test_the_text_of_an_unsent_hit_goes_once_its_digest_is_sent(config: Path) -> None:
    database = config.parent / "monitor.db"
    with Store(database) as store:
        claimed = store.claim_digest("today", now=NOW)
        assert claimed is not None
        assert apply_retention(store, load_config(config), now=NOW) == 3  # "unsent" is sending
        store.finish_digest("today", now=NOW)
        assert apply_retention(store, load_config(config), now=NOW) == 1
    assert texts(database)["unsent"] == ("", True)


@pytest.mark.parametrize(
    ("value", "column", "message"),
    [
        ("6 months", 17, 'bad duration "6 months"'),
        ("12h", 17, "12h is out of range: use between 1d and"),
        ("0d", 17, "0s is out of range"),
    ],
)
def test_a_bad_retention_is_a_positioned_error(
    tmp_path: Path, value: str, column: int, message: str
) -> None:
    path = write_config(tmp_path, CONFIG.replace("article_text: 180d", f"article_text: {value}"))
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert any(
        problem.startswith(f"{path}:14:{column}: ") and message in problem
        for problem in raised.value.problems
    ), raised.value.problems


def test_an_unknown_retention_key_suggests_the_right_one(tmp_path: Path) -> None:
    path = write_config(tmp_path, CONFIG.replace("article_text: 180d", "article_texts: 180d"))
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert raised.value.problems == [
        f'{path}:14:3: unknown key "article_texts" (did you mean "article_text"?): '
        "allowed here: article_text"
    ]
    assert invoke(path, "check").exit_code == 1


def test_vacuum_applies_retention(config: Path) -> None:
    result = invoke(config, "vacuum")
    assert result.exit_code == 0, result.output
    assert "the text of 3 more articles dropped" in result.output
    assert texts(config.parent / "monitor.db")["none"] == ("", True)


def test_backfill_skips_dropped_articles_and_says_how_many(config: Path) -> None:
    invoke(config, "vacuum")
    result = invoke(config, "backfill", "Ghana", "--since", "1000d")
    assert result.exit_code == 0
    assert "2 articles scanned" in result.output  # "unsent" and "recent"
    assert "3 articles skipped, their text dropped by retention" in result.output


def test_hits_still_list_after_the_text_is_dropped(config: Path) -> None:
    invoke(config, "vacuum")
    result = invoke(config, "hits", "--format", "json")
    assert result.exit_code == 0
    assert "Le Togo vote" in result.output and "[[Togo]]" in result.output


class FailingFetcher:
    """Every feed fetch fails at once: a poll that only records its failure."""

    def fetch_feed(self, url: str, validators: Validators = NO_VALIDATORS) -> FetchResult:
        return FetchFailed(url=url, kind=FetchErrorKind.CONNECTION, message=f"{url}: refused")

    def fetch_page(self, url: str, *, feed_url: str) -> FetchResult:
        raise AssertionError("no page is fetched")

    def close(self) -> None:
        pass


def test_the_daemon_applies_retention_after_polls_at_most_once_an_hour(config: Path) -> None:
    database = config.parent / "monitor.db"
    now = [NOW]
    loaded = load_config(config)
    with Store(database) as store:
        pipeline = Pipeline(
            store=store,
            fetcher=FailingFetcher(),
            articles=InlineArticles(loaded.watchlists),
            clock=lambda: now[0],
        )
        daemon = Daemon(loaded, ConfigWatcher(config), store, pipeline, clock=lambda: now[0])
        try:
            daemon._poll_job(FEED)
            assert texts(database)["none"] == ("", True)
            record_poll(store, FEED, [item("https://news.example.org/late", "Late", "Text.")], OLD)
            now[0] = NOW + RETENTION_EVERY - timedelta(minutes=1)
            daemon._poll_job(FEED)
            assert texts(database)["late"] == ("Text.", False)  # within the hour: not again
            now[0] = NOW + RETENTION_EVERY
            daemon._poll_job(FEED)
            assert texts(database)["late"] == ("", True)
        finally:
            pipeline.close()


def test_an_article_whose_text_went_is_read_again_when_another_feed_brings_it(
    config: Path,
) -> None:
    with Store(config.parent / "monitor.db") as store:
        assert store.known_article("https://news.example.org/none") is not None
        apply_retention(store, load_config(config), now=NOW)
        # None: the pipeline fetches the page again rather than match an empty text.
        assert store.known_article("https://news.example.org/none") is None
        assert store.known_article("https://news.example.org/unsent") is not None
