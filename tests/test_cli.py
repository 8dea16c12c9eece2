"""The CLI commands that read and change the store: check, hits, digest, backfill, status.

The database is filled through the real Store with real matcher output, and
the commands run in-process through click's test runner."""

from __future__ import annotations

import email
import email.policy
import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from monitor.articles import InlineArticles
from monitor.cli import main
from monitor.config import ConfigLocation, find_config, load_config
from monitor.fetch.responses import status_text
from monitor.matching import Matcher
from monitor.models import (
    ArticleText,
    BodyUnchanged,
    Entry,
    FeedSpec,
    Fetched,
    FetchErrorKind,
    FetchFailed,
    NewArticle,
    NewBody,
    NotModified,
    PollResult,
    TextSource,
    Validators,
    Watchlist,
    utc_now,
)
from monitor.pipeline import Pipeline
from monitor.query import And, Node, Or, Term
from monitor.schedule import decide_update
from monitor.service import rescore_hits
from monitor.store import Store
from tests.servers import HTTPTestServer, Reply
from tests.test_pipeline_logic import LiteralFetcher, ok, rss

CONFIG = """
database: monitor.db
timezone: Africa/Lome
feeds:
  - url: https://news.example.org/afrique.xml
    name: Afrique Exemple
  - url: https://news.example.org/never.xml
    name: Jamais interrogé
watchlists:
  - name: Togo défense
    all: [Togo]
    any: ["accord de défense", "coopération militaire"]
digest:
  from: veille@example.org
  to: [analyste@example.org]
  outbox: digests/
"""

ARTICLES = [
    (
        "Le Togo signe un accord de défense",
        "Lomé a signé mardi un accord de défense avec ses voisins.",
    ),
    (
        "Élection au Ghana",
        "Le Ghana vote dans le calme ; le Togo observe la coopération militaire régionale.",
    ),
    ("Marché du cacao", "Les cours du cacao montent à Abidjan."),
]


def invoke(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["-c", str(config), *args], catch_exceptions=False)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "feeds.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    loaded = load_config(path)
    matcher = Matcher(loaded.watchlists)
    # The real clock: the commands under test read it (`hits --since 1d`, `backfill --since`).
    now = datetime.now(UTC).replace(microsecond=0)
    new = []
    for index, (title, text) in enumerate(ARTICLES):
        entry = Entry(
            key=f"e{index}",
            link=f"https://news.example.org/a/{index}",
            title=title,
            summary="",
            content="",
            published=now,
        )
        article = ArticleText(
            url=entry.link,
            title=title,
            text=text,
            source=TextSource.PAGE,
            language="fr",
            published=now,
        )
        new.append(
            NewArticle(
                entry=entry,
                article=article,
                hits=tuple(matcher.match(article, feed_name="Afrique Exemple")),
            )
        )
    spec = loaded.feeds[0]
    fetched = Fetched(
        url=spec.url, status=200, headers={}, content=b"", validators=Validators(etag='"1"')
    )
    body = NewBody(
        fetched=fetched,
        body_hash="h",
        feed_title="Afrique Exemple",
        entries=len(new),
        new=tuple(new),
    )
    with Store(loaded.database) as store:
        store.record(decide_update(store.feed_state(spec.url), spec, body, now))
    return path


def test_check_lists_every_problem_with_its_position(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_text(
        CONFIG.replace("timezone: Africa/Lome", "timezone: Africa/Lomé").replace(
            "name: Afrique Exemple", "name: Afrique Exemple\n    interval: 15 minutes"
        ),
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["-c", str(path), "check"])
    assert result.exit_code == 1
    assert f"{path}:3:11:" in result.output  # the time zone
    assert f"{path}:7:15:" in result.output  # the duration
    assert "nothing was run" in result.output


def test_check_ok(config: Path) -> None:
    result = invoke(config, "check")
    assert result.exit_code == 0
    assert "2 feeds, 1 watchlists" in result.output


def test_hits_json_filters(config: Path) -> None:
    hits = json.loads(invoke(config, "hits", "--format", "json").output)
    assert sorted(hit["title"] for hit in hits) == sorted([ARTICLES[0][0], ARTICLES[1][0]])
    first = next(hit for hit in hits if hit["title"] == ARTICLES[0][0])
    assert first["feed"] == "Afrique Exemple"
    assert first["matched"] == ["Togo", "accord de défense"]
    assert "[[accord de défense]]" in first["snippet"]
    typo = CliRunner().invoke(main, ["-c", str(config), "hits", "--watchlist", "autre"])
    assert typo.exit_code == 2 and "no watchlist named 'autre'" in typo.output
    # Hits were stored "now": a window of one second still holds them, and a bad window is refused.
    assert len(json.loads(invoke(config, "hits", "--format", "json", "--since", "1d").output)) == 2
    refused = CliRunner().invoke(main, ["-c", str(config), "hits", "--since", "yesterday"])
    assert refused.exit_code == 2


def test_digest_dry_run_marks_nothing_then_digest_writes_one_eml(config: Path) -> None:
    dry = invoke(config, "digest", "--dry-run")
    assert dry.exit_code == 0
    assert "Togo défense" in dry.output and ARTICLES[0][0] in dry.output
    outbox = config.parent / "digests"
    assert not outbox.exists() or not any(outbox.iterdir())

    sent = invoke(config, "digest")
    assert sent.exit_code == 0, sent.output
    [eml] = list(outbox.glob("*.eml"))
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert "2 new stories" in str(message["Subject"])
    assert message["Message-ID"]

    again = invoke(config, "digest")
    assert "nothing sent" in again.output
    assert len(list(outbox.glob("*.eml"))) == 1
    assert "no unsent hits" in invoke(config, "digest", "--dry-run").output


def test_backfill_records_hits_for_a_new_watchlist(config: Path) -> None:
    config.write_text(
        CONFIG.replace("digest:", "  - name: Cacao\n    query: cacao\ndigest:"), encoding="utf-8"
    )
    invoke(config, "digest")  # send the two ordinary hits first

    result = invoke(config, "backfill", "Cacao", "--since", "30d")
    assert result.exit_code == 0
    assert "3 articles scanned, 1 new hits" in result.output
    assert invoke(config, "backfill", "Cacao").output.count("0 new hits") == 1  # idempotent

    hits = json.loads(invoke(config, "hits", "--format", "json", "--watchlist", "Cacao").output)
    assert hits and hits[0]["backfilled"] is True
    dry = invoke(config, "digest", "--dry-run").output
    assert "backfill" in dry.lower() and ARTICLES[2][0] in dry

    unknown = CliRunner().invoke(main, ["-c", str(config), "backfill", "Inconnue"])
    assert unknown.exit_code == 2 and "no watchlist named" in unknown.output  # could not run


def test_quiet_backfill_stays_out_of_digests(config: Path) -> None:
    config.write_text(
        CONFIG.replace("digest:", "  - name: Cacao\n    query: cacao\ndigest:"), encoding="utf-8"
    )
    invoke(config, "digest")
    assert (
        "1 new hits (left out of digests)" in invoke(config, "backfill", "Cacao", "--quiet").output
    )
    assert "no unsent hits" in invoke(config, "digest", "--dry-run").output


def test_status_shows_polled_and_never_polled_feeds(config: Path) -> None:
    output = invoke(config, "status").output
    assert "Afrique Exemple" in output and "200" in output
    assert "Jamais interrogé" in output and "never" in output


def test_run_refuses_a_damaged_database(config: Path) -> None:
    database = config.parent / "monitor.db"
    with Store(database) as store:
        assert store.integrity_problems() == []
    data = bytearray(database.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    # Garbage over every page but the first (the header and schema stay readable).
    for start in range(page_size, len(data), page_size):
        data[start : start + 64] = b"\xff" * 64
    database.write_bytes(bytes(data))
    result = CliRunner().invoke(main, ["-c", str(config), "run"])
    assert result.exit_code == 1
    assert str(database) in result.output
    assert "damaged" in result.output or "malformed" in result.output


# --------------------------------------------------------------------------- relevance

FILLER = " ".join(
    [
        "Le marché central de Lomé a rouvert ses portes lundi matin.",
        "Les commerçants attendaient cette décision depuis plusieurs semaines.",
        "La pluie a ralenti la circulation dans le centre-ville.",
        "Un nouveau pont doit relier les deux rives du fleuve.",
        "Les écoles reprendront les cours après les congés.",
        "Le prix du riz est resté stable sur les marchés.",
    ]
)
RELEVANCE_CONFIG = """
database: monitor.db
timezone: Africa/Lome
feeds:
  - url: https://news.example.org/afrique.xml
    name: Afrique Exemple
watchlists:
  - name: Togo défense
    topic: La coopération militaire du Togo avec ses partenaires.
    passing: {passing}
    all: [Togo]
    any: ["coopération militaire"]
digest:
  from: veille@example.org
  to: [analyste@example.org]
  outbox: digests/
"""
ABOUT = (
    "Le Togo renforce sa coopération militaire avec le Ghana",
    "Le Togo et le Ghana ont signé mardi un accord de coopération militaire.\n"
    f"{FILLER}\nLa coopération militaire portera sur la formation, selon le Togo.",
)
IN_PASSING = (
    "Le marché de Lomé rouvre",
    f"{FILLER}\n{FILLER}\nLe Togo évoque aussi sa coopération militaire régionale.\n{FILLER}",
)


def relevance_config(tmp_path: Path, passing: str = "list") -> Path:
    path = tmp_path / "feeds.yaml"
    path.write_text(RELEVANCE_CONFIG.format(passing=passing), encoding="utf-8")
    loaded = load_config(path)
    matcher = Matcher(loaded.watchlists)
    now = datetime.now(UTC).replace(microsecond=0)
    new = []
    for index, (title, text) in enumerate([ABOUT, IN_PASSING]):
        link = f"https://news.example.org/r/{index}"
        entry = Entry(key=link, link=link, title=title, summary="", content="", published=now)
        article = ArticleText(
            url=link, title=title, text=text, source=TextSource.PAGE, language="fr", published=now
        )
        hits = tuple(matcher.match(article, feed_name="Afrique Exemple"))
        new.append(NewArticle(entry=entry, article=article, hits=hits))
    spec = loaded.feeds[0]
    fetched = Fetched(url=spec.url, status=200, headers={}, content=b"")
    body = NewBody(fetched=fetched, body_hash="h", feed_title=None, entries=2, new=tuple(new))
    with Store(loaded.database) as store:
        store.record(decide_update(store.feed_state(spec.url), spec, body, now))
    return path


def test_hits_carry_relevance_and_list_the_most_relevant_first(tmp_path: Path) -> None:
    config = relevance_config(tmp_path)
    hits = json.loads(invoke(config, "hits", "--format", "json").output)
    assert [hit["title"] for hit in hits] == [ABOUT[0], IN_PASSING[0]]
    about, passing = hits
    assert isinstance(about["relevance"], float) and about["relevance"] > passing["relevance"]
    assert (about["in_passing"], passing["in_passing"]) == (False, True)
    assert passing["evidence"].endswith(": in passing")
    by_date = json.loads(invoke(config, "hits", "--format", "json", "--sort", "date").output)
    assert [hit["title"] for hit in by_date] == [IN_PASSING[0], ABOUT[0]]  # newer id first
    table = invoke(config, "hits").output
    assert "in passing" in table


def test_the_digest_lists_passing_mentions_after_the_main_hits(tmp_path: Path) -> None:
    config = relevance_config(tmp_path)
    dry = invoke(config, "digest", "--dry-run").output
    assert "La coopération militaire du Togo avec ses partenaires." in dry  # the topic
    assert "(+1 in passing)" in dry
    main_at, passing_at = dry.index(ABOUT[0]), dry.index("Mentioned in passing (1):")
    assert main_at < passing_at < dry.index(IN_PASSING[0])
    assert "*coopération militaire*" in dry[passing_at:]  # the sentence that mentions it


def test_passing_hide_leaves_passing_mentions_out_of_the_digest_only(tmp_path: Path) -> None:
    config = relevance_config(tmp_path, passing="hide")
    dry = invoke(config, "digest", "--dry-run").output
    assert ABOUT[0] in dry and IN_PASSING[0] not in dry
    assert "Mentioned in passing" not in dry
    assert len(json.loads(invoke(config, "hits", "--format", "json").output)) == 2
    invoke(config, "digest")
    # The hidden mention went with the digest: it never shows up in a later one.
    assert "no unsent hits" in invoke(config, "digest", "--dry-run").output


def test_a_bad_passing_value_is_a_positioned_error(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_text(RELEVANCE_CONFIG.format(passing="sometimes"), encoding="utf-8")
    result = CliRunner().invoke(main, ["-c", str(path), "check"])
    assert result.exit_code == 1
    assert f"{path}:10:" in result.output and "passing" in result.output


def test_explain_prints_the_relevance_and_its_evidence(tmp_path: Path) -> None:
    config = relevance_config(tmp_path)
    text = tmp_path / "article.txt"
    text.write_text(IN_PASSING[1], encoding="utf-8")
    result = CliRunner().invoke(main, ["-c", str(config), "explain", "Togo défense", str(text)])
    assert result.exit_code == 0
    assert "relevance: 0." in result.output
    assert "in passing: once, in sentence 13 of 19; the topic's words " in result.output
    assert "per 100 words: in passing" in result.output


def test_hits_stored_before_relevance_are_scored_from_their_text(tmp_path: Path) -> None:
    config = relevance_config(tmp_path)
    database = tmp_path / "monitor.db"
    with sqlite3.connect(database) as db:  # as a database from before the migration had it
        db.execute("UPDATE hits SET relevance = NULL, in_passing = 0, evidence = NULL")
    before = json.loads(invoke(config, "hits", "--format", "json").output)
    assert {hit["relevance"] for hit in before} == {None}
    invoke(config, "backfill", "Togo défense")
    after = json.loads(invoke(config, "hits", "--format", "json").output)
    assert [(hit["title"], hit["in_passing"]) for hit in after] == [
        (ABOUT[0], False),
        (IN_PASSING[0], True),
    ]


def _score_as_an_earlier_model(database: Path, **where: object) -> None:
    """Give every hit (or those ``where`` picks) the inverse of its score, as a version of
    the relevance model other than the current one might have."""
    condition = " AND ".join(f"{column} = ?" for column in where) or "1"
    with sqlite3.connect(database) as db:
        db.execute(
            "UPDATE hits SET relevance = 1 - relevance, in_passing = 1 - in_passing, "
            f"evidence = 'earlier', relevance_model = '0.earlier' WHERE {condition}",
            list(where.values()),
        )


def test_unsent_hits_scored_by_an_earlier_model_are_scored_again_sent_ones_are_not(
    tmp_path: Path,
) -> None:
    config = relevance_config(tmp_path)
    database = tmp_path / "monitor.db"
    current = json.loads(invoke(config, "hits", "--format", "json").output)
    _score_as_an_earlier_model(database)
    assert {
        hit["evidence"] for hit in json.loads(invoke(config, "hits", "--format", "json").output)
    } == {"earlier"}

    invoke(config, "digest")  # scores the unsent hits again, then sends them
    assert json.loads(invoke(config, "hits", "--format", "json").output) == current
    (sent,) = (tmp_path / "digests").glob("*.eml")
    plain = email.message_from_bytes(sent.read_bytes(), policy=email.policy.default)
    assert "earlier" not in plain.as_string()

    _score_as_an_earlier_model(database)  # both hits went out: they keep what they were sent with
    invoke(config, "backfill", "Togo défense")
    after = json.loads(invoke(config, "hits", "--format", "json").output)
    assert {hit["evidence"] for hit in after} == {"earlier"}


def test_quiet_and_older_hits_keep_an_earlier_models_score(tmp_path: Path) -> None:
    config = relevance_config(tmp_path)
    database = tmp_path / "monitor.db"
    watchlists = load_config(config).watchlists
    _score_as_an_earlier_model(database)
    with sqlite3.connect(database) as db:
        (about,), (passing,) = db.execute("SELECT id FROM hits ORDER BY id").fetchall()
        db.execute("UPDATE hits SET quiet = 1 WHERE id = ?", [about])
        db.execute("UPDATE hits SET relevance = NULL WHERE id = ?", [passing])
    with Store(database) as store:
        assert rescore_hits(store, watchlists, now=datetime.now(UTC)) == 1  # the unscored one
        assert rescore_hits(store, watchlists, now=datetime.now(UTC)) == 0
        _score_as_an_earlier_model(database, id=passing)
        # Found 7 days and a minute ago: older than what a digest is expected to still show.
        later = datetime.now(UTC) + timedelta(days=7, minutes=1)
        assert rescore_hits(store, watchlists, now=later) == 0
        assert rescore_hits(store, watchlists, now=datetime.now(UTC)) == 1


def test_a_deeply_nested_query_is_a_positioned_error_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    deep = "(" * 200 + "Togo" + ")" * 200
    path.write_text(
        CONFIG.replace(
            '    all: [Togo]\n    any: ["accord de défense", "coopération militaire"]',
            f"    query: '{deep}'",
        ),
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["-c", str(path), "check"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert f"{path}:11:" in result.output and "nests more than 32 levels" in result.output


# --------------------------------------------------------------------------- conventions


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("monitor, version ")


def test_the_config_option_is_accepted_after_the_command(config: Path) -> None:
    result = CliRunner().invoke(main, ["check", "-c", str(config)], catch_exceptions=False)
    assert result.exit_code == 0 and "2 feeds, 1 watchlists" in result.output


@pytest.mark.parametrize("since", ["2w", "1mo", "1d", "2000-01-01", "2000-01-01T08:00:00+01:00"])
def test_since_takes_weeks_months_and_iso_dates(config: Path, since: str) -> None:
    found = json.loads(invoke(config, "hits", "--format", "json", "--since", since).output)
    assert len(found) == 2


def test_since_in_the_future_finds_nothing(config: Path) -> None:
    later = invoke(config, "hits", "--format", "json", "--since", "2999-01-01").output
    assert json.loads(later) == []


def test_an_unknown_watchlist_is_a_usage_error_with_a_suggestion(config: Path) -> None:
    for command in (["hits", "--watchlist", "Togo defense"], ["explain", "Togo defense", "-"]):
        result = CliRunner().invoke(main, ["-c", str(config), *command], input="texte")
        assert result.exit_code == 2, result.output
        assert "did you mean 'Togo défense'?" in result.output


def test_an_unreadable_file_for_explain_exits_2(config: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["-c", str(config), "explain", "Togo défense", str(tmp_path / "absent.html")]
    )
    assert result.exit_code == 2 and "cannot read" in result.output


# --------------------------------------------------------------------------- reading, backup


def test_reading_commands_never_create_a_database(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    for command in (["hits"], ["status"], ["digest", "--dry-run"]):
        result = CliRunner().invoke(main, ["-c", str(path), *command])
        assert result.exit_code == 2, result.output
        assert "no database at" in result.output and "monitor poll" in result.output
    assert not (tmp_path / "monitor.db").exists()


def test_backup_copies_the_database_consistently(config: Path, tmp_path: Path) -> None:
    target = tmp_path / "copy.db"
    result = invoke(config, "backup", str(target))
    assert result.exit_code == 0, result.output
    with sqlite3.connect(target) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert copy.execute("SELECT COUNT(*) FROM hits").fetchone()[0] == 2
    again = CliRunner().invoke(main, ["-c", str(config), "backup", str(target)])
    assert again.exit_code == 2 and "already exists" in again.output


def test_vacuum_rebuilds_the_file(config: Path) -> None:
    result = invoke(config, "vacuum")
    assert result.exit_code == 0, result.output
    assert "→" in result.output
    assert len(json.loads(invoke(config, "hits", "--format", "json").output)) == 2


def test_a_storage_error_is_one_line_and_exit_1_not_a_traceback(config: Path) -> None:
    (config.parent / "monitor.db").write_bytes(b"this is not a database" * 100)
    for name in ("monitor.db-wal", "monitor.db-shm"):
        (config.parent / name).unlink(missing_ok=True)
    result = CliRunner().invoke(main, ["-c", str(config), "poll"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "not a monitor database" in result.output


def test_status_as_json(config: Path) -> None:
    status = json.loads(invoke(config, "status", "--format", "json").output)
    assert status["alerts"] == []
    assert status["watchlists_with_errors"] == []
    feeds = status["feeds"]
    assert [feed["name"] for feed in feeds] == ["Afrique Exemple", "Jamais interrogé"]
    polled, never = feeds
    assert polled["polled"] is True and polled["http_status"] == 200 and polled["entries"] == 3
    assert polled["consecutive_errors"] == 0 and polled["last_error"] is None
    assert (polled["state"], polled["since"], polled["failed_polls"]) == ("ok", None, 0)
    assert never == {
        "url": "https://news.example.org/never.xml",
        "name": "Jamais interrogé",
        "polled": False,
        "state": "ok",
        "since": None,
        "failed_polls": 0,
        "last_error": None,
        "moved_to": None,
        "usual_gap_seconds": None,
        "words": "not polled yet",
    }


def test_the_poll_summary_as_json(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_text(
        CONFIG.replace("https://news.example.org/afrique.xml", "http://127.0.0.1:9/feed.xml"),
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        main, ["-c", str(path), "poll", "--format", "json"], catch_exceptions=False
    )
    reports = json.loads(result.output)
    assert [report["feed"] for report in reports] == ["Afrique Exemple", "Jamais interrogé"]
    assert {report["outcome"] for report in reports} == {"failed"}
    assert all(report["error"] for report in reports)


def test_a_digest_of_hidden_passing_mentions_only_sends_nothing(tmp_path: Path) -> None:
    config = relevance_config(tmp_path, passing="hide")
    with sqlite3.connect(tmp_path / "monitor.db") as db:  # the main hit went out earlier
        db.execute(
            "INSERT INTO digests (key, message_id, state, created_at, sent_at) "
            "VALUES ('earlier', '<e@x>', 'sent', '2026-11-30T06:00:00+00:00', "
            "'2026-11-30T06:00:00+00:00')"
        )
        db.execute(
            "UPDATE hits SET digest_key = 'earlier' WHERE article_id = "
            "(SELECT id FROM articles WHERE title = ?)",
            [ABOUT[0]],
        )
        db.execute(
            "INSERT INTO digest_hits (name, hit_id, digest_key) "
            "SELECT 'digest', id, digest_key FROM hits WHERE digest_key = 'earlier'"
        )
    result = CliRunner().invoke(main, ["-c", str(config), "digest"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "only hidden passing mentions: nothing sent" in result.output
    outbox = tmp_path / "digests"
    assert not outbox.exists() or not list(outbox.glob("*.eml"))
    assert "no unsent hits" in invoke(config, "digest", "--dry-run").output


# --------------------------------------------------------------------------- health: poll and status


def plain_rss(*keys: str) -> bytes:
    items = "".join(
        f'<item><title>Item {key}</title><guid isPermaLink="false">{key}</guid></item>'
        for key in keys
    )
    return f'<rss version="2.0"><channel><title>T</title>{items}</channel></rss>'.encode()


def health_config(tmp_path: Path, feeds: dict[str, str]) -> Path:
    """A configuration polling `feeds` (name -> URL), with its own database."""
    listed = "".join(f"  - url: {url}\n    name: {name}\n" for name, url in feeds.items())
    path = tmp_path / "feeds.yaml"
    path.write_text(
        f"""
database: monitor.db
timezone: Europe/Paris
feeds:
{listed}watchlists:
  - name: Togo
    all: [Togo]
digest:
  from: veille@example.org
  to: [analyste@example.org]
  outbox: digests/
""",
        encoding="utf-8",
    )
    return path


def test_poll_skips_feeds_not_due_says_until_when_and_force_polls_them(tmp_path: Path) -> None:
    with HTTPTestServer(
        {
            "/ok": Reply(body=plain_rss("a")),
            "/broken": Reply(status=500),
            "/busy": Reply(status=503, headers={"Retry-After": "7200"}),
        }
    ) as server:
        feeds = {"Fine": server.url("/ok"), "Broken": server.url("/broken")}
        config = health_config(tmp_path, {**feeds, "Busy": server.url("/busy")})
        first = json.loads(invoke(config, "poll", "--format", "json").output)
        assert [row["outcome"] for row in first] == ["updated", "failed", "failed"]
        assert {row["skipped_until"] for row in first} == {None}

        again = invoke(config, "poll")
        assert again.exit_code == 0
        lines = again.output.splitlines()
        assert any(line.startswith("skipped Fine: not due until ") for line in lines), lines
        assert any(
            line.startswith("skipped Broken: backing off until ")
            and line.endswith(" after 1 failure")
            for line in lines
        ), lines
        assert any(line.startswith("skipped Busy: Retry-After until ") for line in lines), lines
        assert "0 feeds polled, 0 failed, 0 new entries, 0 new hits; 3 skipped" in again.output
        assert [server.count(path) for path in ("/ok", "/broken", "/busy")] == [1, 1, 1]

        skipped = json.loads(invoke(config, "poll", "--format", "json").output)
        assert [(row["feed"], row["outcome"], row["skip_reason"]) for row in skipped] == [
            ("Fine", "skipped", "not_due"),
            ("Broken", "skipped", "backing_off"),
            ("Busy", "skipped", "retry_after"),
        ]
        busy_until = datetime.fromisoformat(skipped[2]["skipped_until"])
        assert timedelta(hours=1, minutes=50) < busy_until - datetime.now(UTC) <= timedelta(hours=2)

        forced = invoke(config, "poll", "--force")
        assert "3 feeds polled, 2 failed" in forced.output and "skipped" not in forced.output
        assert [server.count(path) for path in ("/ok", "/broken", "/busy")] == [2, 2, 2]


def _record(store: Store, spec: FeedSpec, result: PollResult, at: datetime) -> None:
    store.record(decide_update(store.feed_state(spec.url), spec, result, at))


def _failure(url: str, status: int) -> FetchFailed:
    message = f"{url}: the server answered {status_text(status)}; check the URL"
    return FetchFailed(url=url, kind=FetchErrorKind.HTTP_STATUS, message=message, status=status)


def _new_entries(url: str, *keys: str) -> NewBody:
    new = []
    for key in keys:
        entry = Entry(key=key, link=None, title=key, summary="", content="", published=None)
        article = ArticleText(url=None, title=key, text="Texte.", source=TextSource.FEED)
        new.append(NewArticle(entry=entry, article=article, hits=()))
    fetched = Fetched(url=url, status=200, headers={}, content=b"")
    return NewBody(
        fetched=fetched, body_hash=f"h{keys}", feed_title=None, entries=1, new=tuple(new)
    )


NOW_FOR_STATUS = datetime.now(UTC).replace(microsecond=0)
FEED_URL = "https://news.example.org/feed.xml"
SCENARIOS: dict[str, list[tuple[timedelta, PollResult]]] = {
    "ok": [(timedelta(hours=-1), _new_entries(FEED_URL, "a"))],
    "failing": [(timedelta(hours=-1), _failure(FEED_URL, 503))],
    "gone": [
        (timedelta(hours=-30), _failure(FEED_URL, 404)),
        (timedelta(hours=-2), _failure(FEED_URL, 410)),
    ],
    "silent": [(timedelta(days=-10 + day), _new_entries(FEED_URL, f"e{day}")) for day in range(4)]
    + [(timedelta(hours=-1), NotModified(url=FEED_URL))],
    "moved": [
        (
            timedelta(hours=-1),
            BodyUnchanged(
                Fetched(
                    url="https://new.example.org/feed.xml",
                    status=200,
                    headers={},
                    content=b"",
                    moved_to="https://new.example.org/feed.xml",
                )
            ),
        )
    ],
}


@pytest.mark.parametrize(
    ("scenario", "exit_code", "listed"),
    [
        ("ok", 0, None),
        ("failing", 1, "FAILING Le Fil: failing since "),
        ("gone", 1, "GONE Le Fil: gone since "),
        ("silent", 1, "SILENT Le Fil: silent: no new entry since "),
        ("moved", 0, "MOVED Le Fil: moved to https://new.example.org/feed.xml"),
    ],
)
def test_status_check_fails_on_failing_gone_and_silent_feeds(
    tmp_path: Path, scenario: str, exit_code: int, listed: str | None
) -> None:
    config = health_config(tmp_path, {"Le Fil": FEED_URL, "Jamais": "https://x.example/never"})
    loaded = load_config(config)
    with Store(loaded.database) as store:
        for offset, result in SCENARIOS[scenario]:
            _record(store, loaded.feeds[0], result, NOW_FOR_STATUS + offset)
    checked = invoke(config, "status", "--check")
    assert checked.exit_code == exit_code, checked.output
    lines = checked.output.splitlines()
    if listed is None:
        assert lines == []  # cron mails nothing when all is well
    else:
        assert len(lines) == 1 and lines[0].startswith(listed), lines
    as_json = invoke(config, "status", "--check", "--format", "json")
    assert as_json.exit_code == exit_code
    fil, never = json.loads(as_json.output)["feeds"]
    assert (fil["state"], never["state"]) == (scenario, "ok")
    if scenario != "ok":  # times in JSON are UTC, whatever the configured zone
        assert datetime.fromisoformat(fil["since"]).utcoffset() == timedelta(0)
    table = invoke(config, "status")
    assert table.exit_code == 0  # without --check, status always succeeds
    assert "health" in table.output and "not polled yet" in table.output


@pytest.mark.parametrize(
    ("scenario", "notice"),
    [
        ("gone", "- Le Fil: gone since "),
        ("silent", "- Le Fil: no new entry since "),
        ("moved", "- Le Fil: moved to https://new.example.org/feed.xml"),
        ("failing for two days", "- Le Fil: failing since "),
        ("ok", None),
        ("failing", None),  # for an hour only: not yet worth a line in the digest
    ],
)
def test_sources_needing_attention_reach_the_digest_even_on_a_day_without_hits(
    tmp_path: Path, scenario: str, notice: str | None
) -> None:
    config = health_config(tmp_path, {"Le Fil": FEED_URL, "Jamais": "https://x.example/never"})
    loaded = load_config(config)
    results = SCENARIOS.get(scenario) or [
        (timedelta(days=-2), _failure(FEED_URL, 503)),
        (timedelta(hours=-1), _failure(FEED_URL, 503)),
    ]
    with Store(loaded.database) as store:
        for offset, result in results:
            _record(store, loaded.feeds[0], result, NOW_FOR_STATUS + offset)
    dry = invoke(config, "digest", "--dry-run").output
    sent = invoke(config, "digest")
    assert sent.exit_code == 0, sent.output
    outbox = list((tmp_path / "digests").glob("*.eml")) if (tmp_path / "digests").exists() else []
    if notice is None:
        assert "no unsent hits" in dry
        assert outbox == []
        return
    assert "No new story; 1 problem needs attention" in dry
    assert notice in dry
    [mail] = outbox
    assert "Sources' health" in mail.read_text(encoding="utf-8", errors="replace")


# --------------------------------------------------------------------------- where feeds.yaml is


def test_the_lookup_order(tmp_path: Path) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    user = home / ".config" / "monitor" / "feeds.yaml"
    nowhere = find_config(None, {}, cwd=work, home=home)
    assert nowhere == ConfigLocation(Path("feeds.yaml"), (work / "feeds.yaml", user))
    user.parent.mkdir(parents=True)
    user.write_text(CONFIG, encoding="utf-8")
    assert find_config(None, {}, cwd=work, home=home).path == user
    xdg = tmp_path / "xdg"
    assert find_config(None, {"XDG_CONFIG_HOME": str(xdg)}, cwd=work, home=home).looked == (
        work / "feeds.yaml",
        xdg / "monitor" / "feeds.yaml",
    )
    # A relative XDG_CONFIG_HOME is ignored, as the specification says.
    assert find_config(None, {"XDG_CONFIG_HOME": "rel"}, cwd=work, home=home).path == user
    (work / "feeds.yaml").write_text(CONFIG, encoding="utf-8")
    assert find_config(None, {}, cwd=work, home=home).path == Path("feeds.yaml")
    env = {"MONITOR_CONFIG": "/etc/monitor/feeds.yaml"}
    assert find_config(None, env, cwd=work, home=home).path == Path("/etc/monitor/feeds.yaml")
    assert find_config(Path("x.yaml"), env, cwd=work, home=home).path == Path("x.yaml")


def test_without_c_the_config_comes_from_xdg_config_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work, xdg = tmp_path / "work", tmp_path / "xdg"
    work.mkdir()
    monkeypatch.chdir(work)
    (xdg / "monitor").mkdir(parents=True)
    (xdg / "monitor" / "feeds.yaml").write_text(CONFIG, encoding="utf-8")
    environment = {"MONITOR_CONFIG": None, "XDG_CONFIG_HOME": str(xdg)}
    result = CliRunner().invoke(main, ["check"], env=environment)
    assert result.exit_code == 0, result.output
    assert str(xdg / "monitor" / "feeds.yaml") in result.output.replace("\n", "")


def test_without_any_config_every_place_looked_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    environment = {"MONITOR_CONFIG": None, "XDG_CONFIG_HOME": None, "HOME": str(tmp_path / "h")}
    result = CliRunner().invoke(main, ["status"], env=environment)
    assert result.exit_code == 1
    assert "no configuration file: looked for" in result.output
    assert str(tmp_path / "feeds.yaml") in result.output
    assert str(tmp_path / "h" / ".config" / "monitor" / "feeds.yaml") in result.output
    assert "-c PATH or $MONITOR_CONFIG" in result.output


# --------------------------------------------------------------------------- a broken feeds.yaml


def test_reading_commands_use_the_last_good_database_when_the_config_breaks(
    config: Path,
) -> None:
    config.write_text(
        config.read_text(encoding="utf-8").replace("Africa/Lome", "Africa/Lomé"), encoding="utf-8"
    )
    status = invoke(config, "status", "--format", "json")
    assert status.exit_code == 0
    assert f"{config}:3:11: unknown time zone" in status.output
    assert "warning:" in status.stderr and str(config.parent / "monitor.db") in status.stderr
    feeds = json.loads(status.stdout)["feeds"]
    assert [feed["name"] for feed in feeds] == ["Afrique Exemple"]  # those the database knows
    hits = invoke(config, "hits", "--format", "json")
    assert hits.exit_code == 0 and "warning:" in hits.stderr
    assert {hit["title"] for hit in json.loads(hits.stdout)} == {ARTICLES[0][0], ARTICLES[1][0]}
    dry_run = invoke(config, "digest", "--dry-run")
    assert dry_run.exit_code == 0
    assert ARTICLES[0][0] in dry_run.stdout
    search = invoke(config, "search", "cacao", "--format", "json")
    assert search.exit_code == 0 and "warning:" in search.stderr
    assert [found["title"] for found in json.loads(search.stdout)] == [ARTICLES[2][0]]
    assert invoke(config, "poll").exit_code == 1  # writing commands still refuse


def test_a_config_that_no_longer_parses_still_names_its_database(config: Path) -> None:
    (config.parent / "monitor.db").rename(config.parent / "veille.db")
    text = config.read_text(encoding="utf-8").replace("database: monitor.db", "database: veille.db")
    config.write_text(text.replace("feeds:\n", "feeds:\n\t- oops\n"), encoding="utf-8")
    result = invoke(config, "hits", "--format", "json")
    assert result.exit_code == 0, result.output
    assert "YAML" in result.stderr and "veille.db (from its database: key)" in result.stderr
    assert len(json.loads(result.stdout)) == 2


def test_a_broken_config_naming_no_database_runs_nothing(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_text("feeds: [\n", encoding="utf-8")
    result = invoke(path, "status")
    assert result.exit_code == 1
    assert "names no database that could be read instead; nothing was run" in result.output


# --------------------------------------------------------------------------- a failing watchlist


def _deep(depth: int) -> Watchlist:
    """ "Togo AND (Ghana OR (Ghana OR (... Lomé)))" nested `depth` times: valid, but deeper
    than the loader allows (MAX_NESTING), as a watchlist built by code can be. Checking it
    on an article without "Ghana" walks the whole chain."""
    chain: Node = Term("lomé")
    for _ in range(depth):
        chain = Or((Term("ghana"), chain))
    return Watchlist(name="Profond", query=And((Term("togo"), chain)))


WITH_GHANA = ArticleText(
    url="u", title="Togo", text="Le Togo et le Ghana.", source=TextSource.PAGE, language="fr"
)
WITHOUT_GHANA = replace(WITH_GHANA, text="Le Togo et Lomé.")


def _depth_failing_on_one_article_only() -> int:
    """The smallest depth at which checking the chain exceeds the interpreter's stack while
    compiling it does not: a real failure on some articles only."""
    for depth in range(50, 5000, 25):
        _, failures = Matcher([_deep(depth)]).match_reporting(WITHOUT_GHANA)
        if failures:
            return depth
    raise AssertionError("no depth makes matching fail")


def test_a_watchlist_failing_on_one_article_skips_it_alone(config: Path) -> None:
    depth = _depth_failing_on_one_article_only()
    togo = load_config(config).watchlists[0]
    matcher = Matcher([_deep(depth), togo, Watchlist("Lomé", Term("Lomé"))])
    hits, failures = matcher.match_reporting(WITH_GHANA)
    assert [hit.watchlist for hit in hits] == ["Profond"]  # "Ghana" cuts the chain short
    assert failures == []
    hits, failures = matcher.match_reporting(WITHOUT_GHANA)
    assert [hit.watchlist for hit in hits] == ["Lomé"]  # the others still match
    assert [failure.watchlist for failure in failures] == ["Profond"]
    assert failures[0].error.startswith("RecursionError: maximum recursion depth")


def test_a_watchlist_that_cannot_be_compiled_fails_on_every_article_alone() -> None:
    matcher = Matcher([_deep(20_000), Watchlist("Togo", Term("Togo"))])
    for article in (WITH_GHANA, WITHOUT_GHANA):
        hits, failures = matcher.match_reporting(article)
        assert [hit.watchlist for hit in hits] == ["Togo"]
        assert [failure.watchlist for failure in failures] == ["Profond"]


def test_status_lists_the_watchlists_with_errors(
    config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Articles are matched in the pipeline's page threads, whose stack starts afresh.
    with ThreadPoolExecutor(1) as thread:
        depth = thread.submit(_depth_failing_on_one_article_only).result()
    togo = Watchlist("Togo", Term("Togo"))
    feed = "https://news.example.org/afrique.xml"
    first, second = "https://news.example.org/p/1", "https://news.example.org/p/2"
    fetcher = LiteralFetcher(
        lambda url, _: ok(url, rss(first, second)),
        {
            first: ok(first, PAGE_WITH_GHANA),
            second: FetchFailed(
                url=second, kind=FetchErrorKind.HTTP_STATUS, message="HTTP 404", status=404
            ),
        },
    )
    with Store(load_config(config).database) as store:
        pipeline = Pipeline(
            store=store,
            fetcher=fetcher,
            articles=InlineArticles([_deep(depth), togo]),
            clock=utc_now,
        )
        try:
            report = pipeline.poll_feed(FeedSpec(url=feed, name="Afrique Exemple"))
        finally:
            pipeline.close()
    assert report.new_entries == 2
    assert report.new_hits == 3  # Togo twice, Profond once: the feed went on
    assert f"{second}: watchlist 'Profond' failed on this article" in caplog.text
    table = invoke(config, "status")
    assert "Watchlists with errors" in table.output
    assert "Profond" in table.output and "RecursionError" in table.output
    document = json.loads(invoke(config, "status", "--format", "json").stdout)
    (failed,) = document["watchlists_with_errors"]
    assert failed["watchlist"] == "Profond" and failed["articles_failed"] == 1
    assert failed["last_url"] == second
    assert failed["last_error"].startswith("RecursionError")


PAGE_WITH_GHANA = (
    "<html lang='fr'><body><article><h1>Togo</h1><p>Le Togo et le Ghana ont signé mardi "
    "un accord sur la sécurité de leur frontière commune, selon Lomé, après des mois de "
    "négociations entre les deux pays voisins.</p></article></body></html>"
).encode()


def test_tables_show_feed_text_with_brackets_as_written(config: Path) -> None:
    """Rich reads "[...]" in a string as markup: a feed titled "[b]x[/b]" showed a bold x,
    and "[/]" raised an error. Tables print feed text as plain text."""
    loaded = load_config(config)
    with Store(loaded.database) as store:
        feed_id = store.feed_state(loaded.feeds[0].url).feed_id
        store._db.connection().execute(
            "UPDATE feeds SET title = '[b]x[/b] [/]' WHERE id = ?",
            [feed_id],
        )
    hits = invoke(config, "hits")
    assert hits.exit_code == 0, hits.output
    assert "[b]x[/b] [/]" in hits.output
