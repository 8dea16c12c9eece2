"""Several digests: the `mail:` + `digests:` configuration, each digest's own
exactly-once record, and schedules changed while running (no digest early, none skipped)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from monitor.cli import main
from monitor.config import Config, DigestSettings, load_config
from monitor.errors import ConfigError
from monitor.models import (
    ArticleText,
    Entry,
    FeedUpdate,
    HitResult,
    NewArticle,
    PollOutcome,
    TextSource,
    Validators,
)
from monitor.schedule import due_digest
from monitor.service import run_digest
from monitor.store import Store

LOME = ZoneInfo("Africa/Lome")
HEAD = """\
timezone: Africa/Lome
feeds:
  - url: https://example.org/rss
    name: Example
watchlists:
  - name: Togo
    query: Togo
    language: fr
  - name: Bénin
    query: Bénin
    language: fr
  - name: Ghana
    query: Ghana
"""
MULTI = (
    HEAD
    + """\
mail:
  from: veille@example.org
  outbox: out/
digests:
  - name: Matin
    to: [analyste@example.org]
    at: "07:00"
  - name: Direction
    to: [direction@example.org]
    at: "18:00"
    every: friday
    language: en
    max_full: 3
    watchlists: [Togo, Bénin]
"""
)


def load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "feeds.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, environ={})


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, text)
    return raised.value.problems


def test_mail_and_digests_make_several_digests(tmp_path: Path) -> None:
    config = load(tmp_path, MULTI)
    matin, direction = config.digests
    assert (matin.name, matin.at, matin.every, matin.watchlists) == ("Matin", time(7), "day", ())
    assert matin.language == "fr"  # most watchlists are written in French
    assert matin.subject == "Matin"
    assert matin.outbox == tmp_path / "out"
    assert matin.sender == direction.sender == "veille@example.org"
    assert (direction.every, direction.language, direction.max_full) == ("friday", "en", 3)
    assert direction.watchlists == ("Togo", "Bénin")
    assert direction.schedule_words == "every friday at 18:00"
    assert config.digest == matin


def test_a_digest_block_is_one_digest_of_every_watchlist(tmp_path: Path) -> None:
    config = load(tmp_path, HEAD + "digest:\n  from: a@example.org\n  to: [b@example.org]\n")
    [only] = config.digests
    assert (only.name, only.watchlists, only.language, only.max_full) == ("digest", (), "fr", 10)


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        (
            "digest: {from: a@example.org, to: [b@example.org]}\n"
            "mail: {from: a@example.org}\ndigests: [{name: X, to: [b@example.org]}]\n",
            ":14:9: give either digest: (one digest of every watchlist) or mail: with digests:",
        ),
        (
            "digests: [{name: X, to: [b@example.org]}]\n",
            ":14:10: digests: needs a mail: section",
        ),
        (
            "mail: {from: a@example.org}\ndigests:\n  - name: X\n    to: [b@example.org]\n"
            "    watchlists: [Togo, Benin]\n",
            ':18:24: no watchlist is named "Benin" (did you mean "Bénin"?)',
        ),
        (
            "mail: {from: a@example.org}\ndigests:\n  - {name: X, to: [b@example.org]}\n"
            "  - {name: x, to: [c@example.org]}\n",
            ':17:12: another digest is already named "x" (line 16)',
        ),
        (
            "mail: {from: a@example.org}\ndigests:\n  - {name: X, to: [b@example.org], "
            "every: fortnight}\n",
            ":16:43: \"fortnight\" is not allowed: use one of 'day', 'weekdays'",
        ),
        (
            "mail: {from: a@example.org}\ndigests:\n  - {name: X, to: [b@example.org], "
            "language: de}\n",
            ":16:46: \"de\" is not allowed: use one of 'en' or 'fr'",
        ),
    ],
)
def test_digest_configuration_errors_name_the_line(
    tmp_path: Path, tail: str, expected: str
) -> None:
    found = problems(tmp_path, HEAD + tail)
    assert any(expected in problem for problem in found), found


# --------------------------------------------------------------------------- exactly once


def record_hits(store: Store, now: datetime, *pairs: tuple[str, str]) -> None:
    """Store one article per (link, watchlist) pair, hit by that watchlist, found at `now`."""
    state = store.feed_state("https://example.org/rss")
    new = []
    for link, watchlist in pairs:
        entry = Entry(key=link, link=link, title=link, summary="", content="", published=now)
        article = ArticleText(
            url=link, title=link, text=f"{watchlist} text", source=TextSource.FEED, language="fr"
        )
        hit = HitResult(watchlist=watchlist, matched=(watchlist,), clauses=(), snippets=())
        new.append(NewArticle(entry, article, (hit,)))
    store.record(
        FeedUpdate(
            feed_id=state.feed_id,
            outcome=PollOutcome.UPDATED,
            polled_at=now,
            next_poll=now + timedelta(minutes=15),
            http_status=200,
            title="Example",
            validators=Validators(),
            body_hash=None,
            last_success=now,
            last_full_fetch=now,
            error=None,
            error_count=0,
            new=tuple(new),
        )
    )


def sent_titles(config: Config, digest_name: str) -> list[set[str]]:
    """The titles in each .eml the digest `digest_name` wrote, oldest first."""
    outbox = config.digests[0].outbox
    issues = []
    for path in sorted(outbox.glob("*.eml"), key=lambda one: one.stat().st_mtime_ns):
        text = path.read_text(encoding="utf-8", errors="replace")
        if f"X-Monitor-Digest: {digest_name}@" in text:
            issues.append({link for link in ("t1", "b1", "g1", "t2") if f"/{link}" in text})
    return issues


def test_a_hit_goes_out_once_in_every_digest_that_includes_its_watchlist(tmp_path: Path) -> None:
    config = load(tmp_path, MULTI)
    matin, direction = config.digests
    now = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)
    with Store(config.database) as store:
        record_hits(
            store,
            now,
            ("https://news.example/t1", "Togo"),
            ("https://news.example/b1", "Bénin"),
            ("https://news.example/g1", "Ghana"),
        )
        for digest in (matin, direction, matin, direction):
            run_digest(store, config, digest, key=f"{digest.name}@k1", now=now)
        record_hits(store, now + timedelta(hours=1), ("https://news.example/t2", "Togo"))
        for digest in (matin, direction):
            run_digest(store, config, digest, key=f"{digest.name}@k2", now=now)
        claims = store._db.read(
            "test", "SELECT name, COUNT(*) AS n FROM digest_hits GROUP BY name ORDER BY name"
        )
    assert [(row["name"], row["n"]) for row in claims] == [("Direction", 3), ("Matin", 4)]
    assert sent_titles(config, "Matin") == [{"t1", "b1", "g1"}, {"t2"}]
    assert sent_titles(config, "Direction") == [{"t1", "b1"}, {"t2"}]


def test_a_digest_added_later_starts_with_the_hits_no_digest_has_looked_at(
    tmp_path: Path,
) -> None:
    text = HEAD + "mail: {from: a@example.org, outbox: out/}\ndigests:\n"
    first = load(tmp_path, text + "  - {name: Matin, to: [b@example.org]}\n")
    now = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)
    with Store(first.database) as store:
        record_hits(store, now - timedelta(days=2), ("https://news.example/t1", "Togo"))
        run_digest(store, first, first.digest, key="Matin@1", now=now)
        record_hits(store, now + timedelta(hours=1), ("https://news.example/t2", "Togo"))
        both = load(
            tmp_path,
            text
            + "  - {name: Matin, to: [b@example.org]}\n  - {name: Soir, to: [c@example.org]}\n",
        )
        evening = both.digests[1]
        later = now + timedelta(hours=2)
        preview = store.preview_digest(now=later, name="Soir")
        assert preview is not None and [hit.url for hit in preview.hits] == [
            "https://news.example/t2"
        ]
        run_digest(store, both, evening, key="Soir@1", now=later)
    assert sent_titles(both, "Soir") == [{"t2"}]


def test_moving_at_while_running_sends_at_the_new_time_with_the_hits_found_since(
    tmp_path: Path,
) -> None:
    """The defect, end to end: started at 09:00 after the 07:00 digest time (nothing to
    send), `at` moved to 10:00 at 09:30, a hit found at 09:40. Before: a digest went out at
    09:30 keyed to the day before, then nothing at 10:00, and the hit waited a day."""
    config = load(tmp_path, MULTI)
    matin = config.digests[0]
    started = datetime(2026, 11, 28, 9, 0, tzinfo=LOME)
    moved = replace(matin, at=time(10, 0))
    with Store(config.database) as store:

        def tick(now: datetime, digest: DigestSettings | None = None) -> str | None:
            chosen = digest or matin
            key = due_digest(now, LOME, chosen, store.last_digest_done(chosen.name))
            if key is not None:
                run_digest(store, config, chosen, key=key, now=now)
            return key

        assert tick(started) == "Matin@2026-11-28T07:00Z"  # ran empty
        for minute in range(30, 60):
            moment = started.replace(minute=minute)
            if minute == 40:
                record_hits(store, moment, ("https://news.example/t1", "Togo"))
            assert tick(moment, moved) is None
        assert tick(started.replace(hour=10), moved) == "Matin@2026-11-28T10:00Z"
        assert tick(started.replace(hour=10, minute=1), moved) is None
    assert sent_titles(config, "Matin") == [{"t1"}]


def test_a_digest_new_to_the_configuration_waits_for_its_first_scheduled_time(
    tmp_path: Path,
) -> None:
    config = load(tmp_path, MULTI)
    direction = config.digests[1]  # every friday at 18:00
    tuesday = datetime(2026, 12, 1, 9, 0, tzinfo=LOME)
    with Store(config.database) as store:
        registered = store.register_digest("Direction", now=tuesday)
        assert registered == tuesday
        assert store.register_digest("Direction", now=tuesday + timedelta(days=1)) == tuesday
        for later in (tuesday + timedelta(hours=1), datetime(2026, 12, 4, 17, 59, tzinfo=LOME)):
            assert due_digest(later, LOME, direction, None, registered=registered) is None
        friday = datetime(2026, 12, 4, 18, 0, tzinfo=LOME)
        assert due_digest(friday, LOME, direction, None, registered=registered) == (
            "Direction@2026-12-04T18:00Z"
        )
        # The digest of a `digest:` block, from before this record, is due at once.
        assert store.register_digest("digest", now=tuesday) is None


def test_status_lists_each_digest_with_its_last_delivery_and_next_time(tmp_path: Path) -> None:
    config = load(tmp_path, MULTI)
    matin = config.digests[0]
    sent_at = datetime.now(UTC) - timedelta(minutes=5)
    with Store(config.database) as store:
        record_hits(store, sent_at, ("https://news.example/t1", "Togo"))
        run_digest(store, config, matin, key="Matin@1", now=sent_at)
    result = CliRunner().invoke(main, ["-c", str(config.path), "status", "--format", "json"])
    assert result.exit_code == 0, result.output
    digests = {entry["name"]: entry for entry in json.loads(result.output)["digests"]}
    assert digests["Matin"]["last_sent"] == sent_at.isoformat()
    assert digests["Matin"]["schedule"] == "every day at 07:00 Africa/Lome"
    assert digests["Direction"]["last_sent"] is None
    assert digests["Direction"]["to"] == ["direction@example.org"]
    upcoming = datetime.fromisoformat(digests["Direction"]["next"]).astimezone(LOME)
    # New to the daemon: its first issue is at its first Friday 18:00, not at once.
    assert (upcoming.weekday(), upcoming.hour, upcoming.minute) == (4, 18, 0)
    assert timedelta(0) < upcoming - datetime.now(UTC) <= timedelta(days=7)
    table = CliRunner().invoke(main, ["-c", str(config.path), "status"]).output
    assert "every friday at 18:00" in table and "Direction" in table
