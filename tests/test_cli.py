"""The CLI commands that read and change the store: check, hits, digest, backfill, status.

The database is filled through the real Store with real matcher output, and
the commands run in-process through click's test runner."""

from __future__ import annotations

import email
import email.policy
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from monitor.cli import main
from monitor.config import load_config
from monitor.matching import Matcher
from monitor.models import ArticleText, Entry, Fetched, NewArticle, NewBody, TextSource, Validators
from monitor.schedule import decide_update
from monitor.store import Store

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
    assert "2 new hits" in str(message["Subject"])
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
    assert "(1 in passing)" in dry
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
    assert "in passing: once, in sentence 13 of 19: in passing" in result.output


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
    feeds = json.loads(invoke(config, "status", "--format", "json").output)
    assert [feed["name"] for feed in feeds] == ["Afrique Exemple", "Jamais interrogé"]
    polled, never = feeds
    assert polled["polled"] is True and polled["http_status"] == 200 and polled["entries"] == 3
    assert polled["consecutive_errors"] == 0 and polled["last_error"] is None
    assert never == {
        "url": "https://news.example.org/never.xml",
        "name": "Jamais interrogé",
        "polled": False,
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
    result = CliRunner().invoke(main, ["-c", str(config), "digest"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "only hidden passing mentions: nothing sent" in result.output
    outbox = tmp_path / "digests"
    assert not outbox.exists() or not list(outbox.glob("*.eml"))
    assert "no unsent hits" in invoke(config, "digest", "--dry-run").output
