"""`service.run_digest` against a real SMTP server on 127.0.0.1 and a real SQLite file:
a stuck digest is sent again once per run, never twice, and new hits follow it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.config import Config, DigestSettings, SmtpSettings, load_config
from monitor.service import delivery_lock, run_digest
from monitor.store import Store
from tests.smtp_server import SmtpSink, smtp_sink
from tests.stored import record_accord_hit

__all__ = ["smtp_sink"]  # the fixture, used by name

NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
FEED = "https://news.example.org/feed.xml"


def config_for(tmp_path: Path, sink: SmtpSink) -> Config:
    path = tmp_path / "feeds.yaml"
    path.write_text(
        f"""
feeds:
  - url: {FEED}
watchlists:
  - name: accord
    query: accord
digest:
  from: monitor@example.org
  to: [analyste@example.org]
""",
        encoding="utf-8",
    )
    config = load_config(path)
    smtp = SmtpSettings(host=sink.host, port=sink.port, security="none", timeout=10.0)
    digest: DigestSettings = replace(config.digest, smtp=smtp)
    return replace(config, digests=(digest,))


def store_hit(store: Store, number: int, now: datetime) -> None:
    record_accord_hit(store, number, now, feed_url=FEED)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "monitor.db")


def test_a_stuck_digest_whose_resend_is_uncertain_is_sent_once_per_run(
    tmp_path: Path, store: Store, smtp_sink: SmtpSink
) -> None:
    config = config_for(tmp_path, smtp_sink)
    store_hit(store, 1, NOW)
    # A first run claims the digest; the link breaks after the data: it stays "sending".
    smtp_sink.drop_after_data = True
    [first] = run_digest(store, config, config.digest, key="2026-11-28", now=NOW)
    assert not first.delivered
    assert len(smtp_sink.messages) == 1
    stuck_id = smtp_sink.messages[0].message["Message-ID"]
    # A new hit arrives; the next day's run re-sends the stuck digest once (the link breaks
    # again), then sends the new hit in its own digest rather than keep it waiting. Before,
    # the same run claimed "any key", got the stuck digest back and sent it a second time.
    store_hit(store, 2, NOW + timedelta(hours=12))
    later = NOW + timedelta(days=1)
    runs = run_digest(store, config, config.digest, key="2026-11-29", now=later)
    assert [(run.key, run.hits, run.delivered) for run in runs] == [
        ("2026-11-28", 1, False),
        ("2026-11-29", 1, False),
    ]
    ids = [m.message["Message-ID"] for m in smtp_sink.messages]
    assert ids[:2] == [stuck_id, stuck_id] and len(ids) == 3 and ids[2] != stuck_id
    new_id = ids[2]
    # The server works again: each digest goes once more, unchanged, oldest first.
    smtp_sink.drop_after_data = False
    runs = run_digest(
        store, config, config.digest, key="2026-11-29", now=later + timedelta(minutes=10)
    )
    assert [(run.key, run.hits, run.delivered) for run in runs] == [
        ("2026-11-28", 1, True),
        ("2026-11-29", 1, True),
    ]
    ids = [m.message["Message-ID"] for m in smtp_sink.messages]
    assert ids[3:] == [stuck_id, new_id]
    assert (
        run_digest(
            store, config, config.digest, key="2026-11-29", now=later + timedelta(minutes=20)
        )
        == []
    )
    assert len(smtp_sink.messages) == 5


def test_a_stuck_digest_refused_for_good_releases_its_hits_to_the_next_digest(
    tmp_path: Path, store: Store, smtp_sink: SmtpSink
) -> None:
    config = config_for(tmp_path, smtp_sink)
    store_hit(store, 1, NOW)
    smtp_sink.drop_after_data = True
    run_digest(store, config, config.digest, key="2026-11-28", now=NOW)
    smtp_sink.drop_after_data = False
    smtp_sink.data_reply = "554 5.6.0 message refused"
    later = NOW + timedelta(days=1)
    runs = run_digest(store, config, config.digest, key="2026-11-29", now=later)
    # The stuck digest is refused and releases its hit, which the day's digest then carries
    # (refused too, by this server): one attempt each.
    assert [(run.key, run.hits, run.delivered) for run in runs] == [
        ("2026-11-28", 1, False),
        ("2026-11-29", 1, False),
    ]
    assert all("permanently refused" in run.description for run in runs)
    smtp_sink.data_reply = None
    runs = run_digest(
        store, config, config.digest, key="2026-11-29", now=later + timedelta(minutes=10)
    )
    assert [(run.key, run.hits, run.delivered) for run in runs] == [("2026-11-29", 1, True)]
    assert store.pending_digest() is None


def test_a_day_without_hits_sends_nothing_and_says_so(
    tmp_path: Path, store: Store, smtp_sink: SmtpSink
) -> None:
    config = config_for(tmp_path, smtp_sink)
    [run] = run_digest(store, config, config.digest, key="2026-11-28", now=NOW)
    assert (run.hits, run.delivered, run.description) == (0, False, "no new hits: nothing sent")
    assert run_digest(store, config, config.digest, key="2026-11-28", now=NOW) == []
    assert smtp_sink.messages == []


def test_one_process_delivers_at_a_time(tmp_path: Path, store: Store, smtp_sink: SmtpSink) -> None:
    """`monitor digest` run while the daemon is inside SMTP DATA used to take the digest
    being sent for one a crash left behind, and deliver it again."""
    config = config_for(tmp_path, smtp_sink)
    store_hit(store, 1, NOW)
    smtp_sink.drop_after_data = True
    run_digest(
        store, config, config.digest, key="2026-11-28", now=NOW
    )  # left "sending", as if in flight
    smtp_sink.drop_after_data = False
    with delivery_lock(store.path, wait=0) as held:  # another process, mid-delivery
        assert held
        [busy] = run_digest(store, config, config.digest, key="manual-1", now=NOW, wait=0.3)
        assert busy.busy and not busy.delivered
        assert "another monitor process is delivering" in busy.description
        assert len(smtp_sink.messages) == 1  # the digest in flight was not sent again
    runs = run_digest(store, config, config.digest, key="manual-1", now=NOW)
    assert [(run.key, run.delivered) for run in runs] == [("2026-11-28", True)]


def test_the_delivery_lock_is_one_per_real_database_file(tmp_path: Path, store: Store) -> None:
    link = tmp_path / "link.db"
    link.symlink_to(store.path)
    with delivery_lock(store.path, wait=0) as first, delivery_lock(link, wait=0) as second:
        assert (first, second) == (True, False)
    with delivery_lock(link, wait=0) as again:
        assert again
