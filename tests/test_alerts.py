"""Instant alerts: `alerts:` in feeds.yaml, delivery rows written with the hits, and
`service.send_alerts` through real Apprise to real local servers (a JSON webhook on
127.0.0.1, an SMTP server), with time driven by the `now` passed in: no sleeping."""

from __future__ import annotations

import email
import email.policy
import json
import logging
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from itertools import count
from pathlib import Path

import pytest
from click.testing import CliRunner

from monitor.alerts import GIVE_UP_AFTER, compose_alert, next_attempt
from monitor.cli import main
from monitor.config import Config, load_config
from monitor.daemon import Daemon
from monitor.destinations import send_alert
from monitor.errors import ConfigError
from monitor.models import (
    HitResult,
    StoredHit,
)
from monitor.reload import ConfigWatcher
from monitor.service import alert_routes, open_pipeline, run_digest, send_alerts
from monitor.store import Store
from tests.servers import HTTPTestServer, Received, Reply
from tests.smtp_server import SmtpSink
from tests.stored import record_accord_hit

NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
FEED = "https://news.example.org/feed.xml"
TOGO = "Togo — coopération militaire"


def config_text(
    *urls: str, watchlists: tuple[str, ...] = (TOGO,), name: str = "Urgent Togo"
) -> str:
    listed = ", ".join(json.dumps(url) for url in urls)
    named = ", ".join(json.dumps(watchlist, ensure_ascii=False) for watchlist in watchlists)
    return f"""
feeds:
  - url: {FEED}
    name: News
watchlists:
  - name: {TOGO}
    query: accord
  - name: Cacao
    query: cacao
digest:
  from: monitor@example.org
  to: [analyste@example.org]
alerts:
  - name: {name}
    watchlists: [{named}]
    urls: [{listed}]
"""


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Config:
    path = tmp_path / "feeds.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, environ=environ or {})


def problems(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, text, environ)
    return raised.value.problems


_numbers = count(1)


def record_hit(
    store: Store,
    *,
    watchlist: str = TOGO,
    now: datetime = NOW,
    title: str | None = None,
    in_passing: bool = False,
) -> int:
    """One poll of FEED that finds one new article with one hit; returns the article number."""
    number = next(_numbers)
    record_accord_hit(
        store, number, now, watchlist=watchlist, title=title, in_passing=in_passing, feed_url=FEED
    )
    return number


def open_store(path: Path, config: Config) -> Store:
    store = Store(path)
    store.set_alert_routes(alert_routes(config))
    return store


def posts(server: HTTPTestServer, path: str) -> list[dict[str, str]]:
    return [
        json.loads(request.body)
        for request in server.requests
        if request.method == "POST" and request.path == path
    ]


def states(database: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(database) as conn:
        rows = conn.execute("SELECT state, attempts FROM alert_deliveries ORDER BY id").fetchall()
    return [(state, attempts) for state, attempts in rows]


def database_bytes(database: Path) -> bytes:
    """The database file and its write-ahead log, where recent writes may still be."""
    wal = database.with_name(database.name + "-wal")
    return database.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


@pytest.fixture
def hooks() -> Iterator[HTTPTestServer]:
    with HTTPTestServer({"/hook": Reply(200), "/broken": Reply(500)}) as server:
        yield server


# --------------------------------------------------------------------------- what an alert says


def stored(**changes: object) -> StoredHit:
    hit = StoredHit(
        hit_id=7,
        watchlist=TOGO,
        article_id=3,
        title="Le Togo signe un accord",
        url="https://news.example.org/a?b=1&c=2",
        feed="News",
        published=None,
        found_at=NOW,
        matched=("accord",),
        snippets=("Lomé a signé un [[accord]] de [[défense]].", "second"),
    )
    return replace(hit, **changes)  # type: ignore[arg-type]


def test_an_alert_carries_the_watchlist_title_link_and_best_snippet() -> None:
    message = compose_alert(stored(), alert="Urgent Togo")
    assert message.title == f"monitor: {TOGO}: Le Togo signe un accord"
    assert message.text.splitlines() == [
        "Le Togo signe un accord",
        "https://news.example.org/a?b=1&c=2",
        "",
        "Lomé a signé un **accord** de **défense**.",
        "",
        f"{TOGO} · News",
    ]
    assert (
        "**accord**" in message.markdown
        and "<https://news.example.org/a?b=1&c=2>" in message.markdown
    )
    assert "<b>accord</b>" in message.html
    assert '<a href="https://news.example.org/a?b=1&amp;c=2">' in message.html
    assert message.fields["snippet"] == "Lomé a signé un accord de défense."
    assert message.fields["url"] == "https://news.example.org/a?b=1&c=2"
    assert message.fields["watchlist"] == TOGO and message.fields["hit_id"] == "7"


def test_article_text_cannot_inject_markup_or_links() -> None:
    message = compose_alert(
        stored(
            title="<script>x</script> *gras* [lien](https://evil.example)",
            url="javascript:alert(1)",
            snippets=("<img src=x onerror=y> [[accord]]",),
        ),
        alert="a",
    )
    assert "<script>" not in message.html and "<img" not in message.html
    assert "&lt;script&gt;" in message.html and "href" not in message.html
    assert r"\*gras\*" in message.markdown and r"\[lien\]" in message.markdown
    assert r"\<img" in message.markdown and "**accord**" in message.markdown
    assert "javascript" not in message.text and message.fields["url"] == ""


def test_retries_back_off_from_one_minute_to_an_hour_then_give_up_after_a_day() -> None:
    delays = [next_attempt(attempts, NOW, NOW) - NOW for attempts in range(1, 10)]  # type: ignore[operator]
    assert delays[:4] == [timedelta(minutes=minutes) for minutes in (1, 2, 4, 8)]
    assert delays[-1] == timedelta(hours=1) and max(delays) == timedelta(hours=1)
    assert next_attempt(3, NOW, NOW + GIVE_UP_AFTER - timedelta(minutes=10)) is not None
    assert next_attempt(30, NOW, NOW + GIVE_UP_AFTER - timedelta(minutes=3)) is None


# --------------------------------------------------------------------------- configuration


def test_alerts_load_with_secrets_from_the_environment_and_never_shown(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        config_text(
            "ntfy://ntfy.example.org/veille-togo",
            "json://monitor:${HOOK_PASSWORD}@hooks.example.org/monitor",
        ),
        environ={"HOOK_PASSWORD": "s3cr3t-value"},
    )
    (alert,) = config.alerts
    assert alert.name == "Urgent Togo" and alert.watchlists == (TOGO,)
    ntfy, hook = alert.destinations
    assert ntfy.shown == "ntfy://ntfy.example.org/veille-togo"
    assert hook.url == "json://monitor:s3cr3t-value@hooks.example.org/monitor"
    assert "s3cr3t" not in hook.shown + hook.key + repr(hook) + repr(config)
    assert hook.shown.startswith("json://monitor:") and "hooks.example.org/monitor" in hook.shown
    assert len({ntfy.key, hook.key}) == 2


def test_alert_errors_point_at_the_line_and_suggest(tmp_path: Path) -> None:
    text = config_text(
        "ntfy://ntfy.example.org/veille-togo",
        "jsn://hooks.example.org/x",
        "tgram://${BOT_TOKEN}/",
        watchlists=("Togo - cooperation militaire", "Cacao"),
    )
    found = problems(tmp_path, text, {"BOT_TOKEN": "not-a-token"})
    path = tmp_path / "feeds.yaml"
    assert found[0].startswith(f"{path}:15:")
    assert 'no watchlist is named "Togo - cooperation militaire"' in found[0]
    assert f'did you mean "{TOGO}"?' in found[0]
    assert found[1].startswith(f"{path}:16:") and '"jsn://" is not a destination' in found[1]
    assert 'did you mean "json://"?' in found[1]
    assert "Telegram URL (tgram://…) is incomplete or malformed" in found[2]
    assert "https://appriseit.com/services/telegram/" in found[2]
    assert not any("not-a-token" in problem for problem in found)
    assert len(found) == 3


def test_an_email_password_is_never_sent_in_clear(tmp_path: Path) -> None:
    (problem,) = problems(
        tmp_path,
        config_text("mailto://veille:${PASSWORD}@smtp.example.org?to=a@example.org"),
        {"PASSWORD": "hunter22"},
    )
    assert ":16:" in problem and "refusing to send a password without encryption" in problem
    assert "mailtos://" in problem and "hunter22" not in problem
    config = load(
        tmp_path,
        config_text("mailtos://veille:${PASSWORD}@smtp.example.org?to=a@example.org"),
        {"PASSWORD": "hunter22"},
    )
    assert (
        config.alerts[0].destinations[0].shown
        == "mailtos://veille:****@smtp.example.org/a%40example.org"
    )


def test_an_unset_variable_in_an_alert_url_is_an_error(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, config_text("json://hooks.example.org/${HOOK_PATH}"))
    assert ":16:" in problem and "environment variable HOOK_PATH is not set" in problem


def test_alert_names_are_unique_and_urls_and_watchlists_required(tmp_path: Path) -> None:
    text = (
        config_text("ntfy://ntfy.example.org/a")
        + """\
  - name: urgent togo
    watchlists: [Cacao]
    urls: ["ntfy://ntfy.example.org/b", "ntfy://ntfy.example.org/b"]
  - name: Sans destination
    watchlists: []
"""
    )
    found = problems(tmp_path, text)
    assert any(
        ":17:" in p and 'alert name "urgent togo" is already used at line 14' in p for p in found
    )
    assert any(":19:" in p and "already listed in this alert" in p for p in found)
    assert any('missing "urls" in alerts[3]' in p for p in found)
    assert any("alerts[3].watchlists is empty" in p for p in found)


# --------------------------------------------------------------------------- delivery rows


def test_a_hit_of_an_alerted_watchlist_gets_one_row_per_destination(
    tmp_path: Path, hooks: HTTPTestServer
) -> None:
    config = load(
        tmp_path,
        config_text(hooks.url("/hook").replace("http", "json", 1), "ntfy://ntfy.example.org/t"),
    )
    with open_store(tmp_path / "monitor.db", config) as store:
        record_hit(store)
        record_hit(store, watchlist="Cacao")  # not alerted
    assert states(tmp_path / "monitor.db") == [("pending", 0), ("pending", 0)]


def test_passing_mentions_are_announced_unless_the_watchlist_hides_them(tmp_path: Path) -> None:
    listed = load(tmp_path, config_text("ntfy://ntfy.example.org/t"))
    hidden = load(
        tmp_path,
        config_text("ntfy://ntfy.example.org/t").replace(
            "query: accord", "query: accord\n    passing: hide"
        ),
    )
    database = tmp_path / "monitor.db"
    with open_store(database, listed) as store:
        record_hit(store, in_passing=True)
        store.set_alert_routes(alert_routes(hidden))
        record_hit(store, in_passing=True)
        record_hit(store)
    assert len(states(database)) == 2


def test_backfilled_hits_are_not_announced(tmp_path: Path) -> None:
    config = load(tmp_path, config_text("ntfy://ntfy.example.org/t"))
    with open_store(tmp_path / "monitor.db", config) as store:
        record_hit(store, watchlist="Cacao")
        ((article_id, _text, _feed),) = list(store.articles_since(None))
        hit = HitResult(TOGO, ("accord",), (), ("[[accord]]",))
        assert store.add_backfill_hits(TOGO, [(article_id, hit)], now=NOW, quiet=False) == 1
    assert states(tmp_path / "monitor.db") == []


# --------------------------------------------------------------------------- sending


def webhook(server: HTTPTestServer, path: str) -> str:
    return f"json://127.0.0.1:{server.port}{path}"


def test_each_hit_is_posted_exactly_once_per_destination(
    tmp_path: Path, hooks: HTTPTestServer
) -> None:
    with HTTPTestServer({"/other": Reply(204)}) as other:
        config = load(tmp_path, config_text(webhook(hooks, "/hook"), webhook(other, "/other")))
        with open_store(tmp_path / "monitor.db", config) as store:
            first, second = record_hit(store), record_hit(store)
            run = send_alerts(store, config, NOW)
            assert (run.sent, run.retrying) == (4, 0)
            assert send_alerts(store, config, NOW + timedelta(hours=2)).sent == 0
            record_hit(store)
            assert send_alerts(store, config, NOW + timedelta(hours=3)).sent == 2
        assert len(posts(other, "/other")) == 3
    received = posts(hooks, "/hook")
    assert [body["article_title"] for body in received] == [
        f"Accord {first}",
        f"Accord {second}",
        f"Accord {second + 1}",
    ]
    body = received[0]
    assert body["title"] == f"monitor: {TOGO}: Accord {first}"
    assert body["watchlist"] == TOGO and body["alert"] == "Urgent Togo"
    assert body["url"] == f"https://news.example.org/{first}"
    assert body["snippet"] == "L’accord est signé à Lomé."
    assert body["snippet_marked"] == "L’**accord** est signé à Lomé."
    assert body["type"] == "info" and body["version"] == "1.0"
    assert body["message"].startswith(f"Accord {first}\nhttps://news.example.org/{first}\n")


def test_a_webhook_failing_twice_is_delivered_once_after_backing_off(tmp_path: Path) -> None:
    answers = iter([500, 500, 200])

    def flaky(request: Received) -> Reply:
        return Reply(next(answers))

    with HTTPTestServer({"/flaky": flaky}) as server:
        config = load(tmp_path, config_text(webhook(server, "/flaky")))
        database = tmp_path / "monitor.db"
        with open_store(database, config) as store:
            record_hit(store)
            assert send_alerts(store, config, NOW).retrying == 1
            assert states(database) == [("pending", 1)]
            # Not due again before a minute has passed.
            assert send_alerts(store, config, NOW + timedelta(seconds=59)).retrying == 0
            assert server.count("/flaky") == 1
            assert send_alerts(store, config, NOW + timedelta(minutes=1)).retrying == 1
            # The second retry waits two minutes.
            assert send_alerts(store, config, NOW + timedelta(minutes=2)).sent == 0
            assert send_alerts(store, config, NOW + timedelta(minutes=3)).sent == 1
            assert send_alerts(store, config, NOW + timedelta(hours=5)).sent == 0
            (status,) = store.alert_statuses()
        assert server.count("/flaky") == 3
    assert states(database) == [("sent", 3)]
    assert status.sent == 1 and status.pending == 0 and status.last_sent is not None


def test_a_broken_destination_never_stops_the_other(
    tmp_path: Path, hooks: HTTPTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    refused = "json://127.0.0.1:9/nothing-listens"  # the discard port: connection refused
    config = load(
        tmp_path, config_text(webhook(hooks, "/broken"), refused, webhook(hooks, "/hook"))
    )
    with open_store(tmp_path / "monitor.db", config) as store:
        record_hit(store), record_hit(store)
        run = send_alerts(store, config, NOW)
        # One try per broken destination per round: the second hit waits for the next round.
        assert (run.sent, run.retrying) == (2, 2)
        assert len(posts(hooks, "/hook")) == 2 and hooks.count("/broken") == 1
        later = send_alerts(store, config, NOW + timedelta(seconds=30))
        assert (later.sent, later.retrying) == (0, 2) and hooks.count("/broken") == 2
        statuses = {status.destination: status for status in store.alert_statuses()}
    assert statuses[f"json://127.0.0.1:{hooks.port}/hook"].sent == 2
    broken = statuses[f"json://127.0.0.1:{hooks.port}/broken"]
    assert broken.pending == 2 and "error=500" in (broken.last_error or "")
    assert "Connection error" in (statuses["json://127.0.0.1:9/nothing-listens"].last_error or "")
    assert any("retrying at" in record.getMessage() for record in caplog.records)


def test_alerts_recorded_before_a_crash_are_delivered_once_after_it(
    tmp_path: Path, hooks: HTTPTestServer
) -> None:
    config = load(tmp_path, config_text(webhook(hooks, "/hook")))
    database = tmp_path / "monitor.db"
    store = open_store(database, config)
    record_hit(store)
    store.close()  # the process dies before sending: the row was committed with the hit
    with Store(database) as reopened:  # a new process: no routes needed to send what is due
        assert send_alerts(reopened, config, NOW + timedelta(minutes=5)).sent == 1
        assert send_alerts(reopened, config, NOW + timedelta(minutes=10)).sent == 0
    assert len(posts(hooks, "/hook")) == 1


def test_an_unanswered_alert_is_retried_and_may_arrive_twice(tmp_path: Path) -> None:
    answers = iter([Reply(200, delay=3), Reply(200)])
    with HTTPTestServer({"/slow": lambda request: next(answers)}) as server:
        config = load(tmp_path, config_text(webhook(server, "/slow")))
        with open_store(tmp_path / "monitor.db", config) as store:
            record_hit(store)
            quick = partial(send_alert, timeout=0.5)
            assert send_alerts(store, config, NOW, send=quick).retrying == 1
            (status,) = store.alert_statuses()
            assert "no answer within 0.5 s" in (status.last_error or "")
            assert send_alerts(store, config, NOW + timedelta(minutes=1), send=quick).sent == 1
        # At least once: the first POST reached the server although its answer came too late.
        assert server.count("/slow") == 2


def test_alerts_given_up_after_a_day_are_reported_for_the_digest(
    tmp_path: Path, hooks: HTTPTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    config = load(
        tmp_path, config_text("json://monitor:pa55word@127.0.0.1:" + f"{hooks.port}/broken")
    )
    database = tmp_path / "monitor.db"
    with open_store(database, config) as store:
        record_hit(store), record_hit(store)
        moment = NOW
        while moment < NOW + GIVE_UP_AFTER + timedelta(hours=2):
            send_alerts(store, config, moment)
            moment += timedelta(minutes=30)
        failures = store.failed_alerts(NOW)
        assert store.failed_alerts(moment) == []
        # The next digest says so in its health section, secrets masked.
        [digest_run] = run_digest(store, config, config.digest, key="digest@now", now=moment)
        assert digest_run.delivered
    assert [state for state, _ in states(database)] == ["failed", "failed"]
    (failure,) = failures
    assert failure.alert == "Urgent Togo" and failure.hits == 2
    assert failure.destination == f"json://monitor:****@127.0.0.1:{hooks.port}/broken"
    assert "error=500" in failure.last_error
    assert NOW + GIVE_UP_AFTER - timedelta(hours=1) <= failure.since <= NOW + GIVE_UP_AFTER
    assert any(
        record.levelno == logging.ERROR and "giving up" in record.getMessage()
        for record in caplog.records
    )
    assert b"pa55word" not in database_bytes(database)
    [sent] = config.digest.outbox.glob("*.eml")
    mail = email.message_from_bytes(sent.read_bytes(), policy=email.policy.default)
    plain = mail.get_body(("plain",))
    assert plain is not None
    text = plain.get_content()
    assert (
        f"Urgent Togo → json://monitor:****@127.0.0.1:{hooks.port}/broken: "
        "2 alerts not delivered since"
    ) in text
    assert "pa55word" not in sent.read_text(errors="replace")


def test_alerts_of_a_destination_removed_from_the_configuration_are_cancelled(
    tmp_path: Path, hooks: HTTPTestServer
) -> None:
    config = load(tmp_path, config_text(webhook(hooks, "/broken")))
    with open_store(tmp_path / "monitor.db", config) as store:
        record_hit(store)
        send_alerts(store, config, NOW)
        fixed = load(tmp_path, config_text(webhook(hooks, "/hook")))
        store.set_alert_routes(alert_routes(fixed))
        record_hit(store)
        run = send_alerts(store, fixed, NOW + timedelta(hours=1))
    assert (run.sent, run.cancelled) == (1, 1)
    assert len(posts(hooks, "/hook")) == 1


def test_an_email_alert_through_a_local_smtp_server(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    url = (
        f"mailto://{smtp_sink.host}:{smtp_sink.port}"
        "?from=monitor@example.org&to=analyste@example.org"
    )
    config = load(tmp_path, config_text(url))
    with open_store(tmp_path / "monitor.db", config) as store:
        number = record_hit(store, title="Le Togo <b>signe</b>")
        assert send_alerts(store, config, NOW).sent == 1
    (message,) = smtp_sink.messages
    assert message.recipients == ("analyste@example.org",)
    assert message.message["Subject"] == f"monitor: {TOGO}: Le Togo <b>signe</b>"
    html = message.message.get_body(preferencelist=("html",))
    assert html is not None
    content = html.get_content()
    assert "Le Togo &lt;b&gt;signe&lt;/b&gt;" in content and "<b>accord</b>" in content
    assert f'href="https://news.example.org/{number}"' in content


# --------------------------------------------------------------------------- commands


def test_status_lists_each_destination(tmp_path: Path, hooks: HTTPTestServer) -> None:
    config = load(tmp_path, config_text(webhook(hooks, "/hook"), webhook(hooks, "/broken")))
    with open_store(config.database, config) as store:
        record_hit(store)
        send_alerts(store, config, NOW)
    runner = CliRunner()
    table = runner.invoke(main, ["-c", str(config.path), "status"], catch_exceptions=False)
    assert "alerts" in table.output and f"127.0.0.1:{hooks.port}/broken" in table.output
    output = runner.invoke(
        main, ["-c", str(config.path), "status", "--format", "json"], catch_exceptions=False
    ).output
    hook, broken = json.loads(output)["alerts"]
    assert hook["destination"] == f"json://127.0.0.1:{hooks.port}/hook"
    assert (hook["sent"], hook["pending"], hook["failed"]) == (1, 0, 0)
    assert hook["last_sent"] is not None
    assert (broken["sent"], broken["pending"]) == (0, 1) and "500" in broken["last_error"]
    assert broken["next_attempt"] == (NOW + timedelta(minutes=1)).isoformat()


def test_header_secrets_stay_out_of_the_database(tmp_path: Path, hooks: HTTPTestServer) -> None:
    url = webhook(hooks, "/hook") + "?+Authorization=Bearer%20t0ps3cr3t"
    config = load(tmp_path, config_text(url))
    with open_store(config.database, config) as store:
        record_hit(store)
        assert send_alerts(store, config, NOW).sent == 1
    (request,) = [request for request in hooks.requests if request.path == "/hook"]
    assert request.headers["authorization"] == "Bearer t0ps3cr3t"
    assert b"t0ps3cr3t" not in database_bytes(config.database)
    (destination,) = config.alerts[0].destinations
    assert "t0ps3cr3t" not in destination.shown + destination.key


def serve_togo_feed(site: HTTPTestServer) -> None:
    """A feed with one article about a Togo accord on `site`, and a webhook at /hook."""
    page = (
        '<!DOCTYPE html><html lang="fr"><head><meta charset="utf-8"><title>Accord</title>'
        "</head><body><article><h1>Le Togo signe un accord de défense</h1>"
        + "<p>Lomé a signé mardi un accord de défense avec ses voisins du Sahel.</p>" * 5
        + "</article></body></html>"
    ).encode()
    rss = (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>News'
        "</title><link>http://example.org/</link><language>fr</language><item>"
        f"<title>Le Togo signe un accord</title><link>{site.url('/togo.html')}</link>"
        f"<guid>{site.url('/togo.html')}</guid></item></channel></rss>"
    ).encode()
    site.routes.update(
        {
            "/feed.xml": Reply(body=rss, headers={"Content-Type": "application/rss+xml"}),
            "/togo.html": Reply(body=page, headers={"Content-Type": "text/html"}),
            "/hook": Reply(200),
        }
    )


def test_monitor_poll_sends_the_alerts_its_hits_call_for(tmp_path: Path) -> None:
    with HTTPTestServer() as site:
        serve_togo_feed(site)
        text = config_text(webhook(site, "/hook")).replace(FEED, site.url("/feed.xml"))
        path = tmp_path / "feeds.yaml"
        path.write_text(text, encoding="utf-8")
        runner = CliRunner()
        first = runner.invoke(main, ["-c", str(path), "poll"], catch_exceptions=False)
        second = runner.invoke(main, ["-c", str(path), "poll"], catch_exceptions=False)
        (body,) = posts(site, "/hook")
    assert "1 new hits" in first.output and "alerts: 1 sent" in first.output
    assert "alerts: 0 sent" in second.output
    assert body["article_title"] == "Le Togo signe un accord de défense"
    assert body["url"] == site.url("/togo.html") and "**accord**" in body["snippet_marked"]


def test_a_reload_that_adds_an_alert_announces_the_next_hits(
    tmp_path: Path, hooks: HTTPTestServer
) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_text(config_text(webhook(hooks, "/hook"), watchlists=("Cacao",)), encoding="utf-8")
    watcher = ConfigWatcher(
        path, environ={}, settle_seconds=0, clock=lambda: 0.0, sleep=lambda s: None
    )
    config = watcher.current
    with (
        Store(config.database) as store,
        open_pipeline(config, store, clock=lambda: NOW) as pipeline,
    ):
        daemon = Daemon(config, watcher, store, pipeline, clock=lambda: NOW)
        store.set_alert_routes(alert_routes(config))
        record_hit(store)  # Togo: not alerted yet
        path.write_text(config_text(webhook(hooks, "/hook")), encoding="utf-8")
        daemon._reload_job()
        assert daemon.config.alerts[0].watchlists == (TOGO,)
        record_hit(store)
        assert send_alerts(store, daemon.config, NOW).sent == 1
    assert len(posts(hooks, "/hook")) == 1


def test_the_daemon_announces_a_hit_within_its_first_poll(tmp_path: Path) -> None:
    with HTTPTestServer() as site:
        serve_togo_feed(site)
        text = config_text(webhook(site, "/hook")).replace(FEED, site.url("/feed.xml"))
        path = tmp_path / "feeds.yaml"
        path.write_text(text, encoding="utf-8")
        log_path = tmp_path / "daemon.log"
        with open(log_path, "w", encoding="utf-8") as log_file:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "monitor", "-c", str(path), "run"],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + 60
            while not posts(site, "/hook"):
                assert daemon.poll() is None, log_path.read_text(encoding="utf-8")
                assert time.monotonic() < deadline, log_path.read_text(encoding="utf-8")
                time.sleep(0.1)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(30)
        (body,) = posts(site, "/hook")
    assert daemon.returncode == 0, log_path.read_text(encoding="utf-8")
    assert body["watchlist"] == TOGO and body["url"] == site.url("/togo.html")
    assert "alerts: 1 sent" in log_path.read_text(encoding="utf-8")


def test_the_bundled_feeds_yaml_alert_example_is_valid_once_uncommented(tmp_path: Path) -> None:
    bundled = (Path(__file__).resolve().parent.parent / "feeds.yaml").read_text(encoding="utf-8")
    head, found, example = bundled.partition("# alerts:")
    assert found, "feeds.yaml shows how to write alerts:"
    lines = (found + example).split("\n\n", 1)[0].splitlines()  # up to the next section
    text = head + "\n".join(line.removeprefix("# ") for line in lines) + "\n"
    config = load(tmp_path, text, {"NTFY_TOPIC": "t"})
    (alert,) = config.alerts
    assert alert.watchlists == (TOGO, "Togo — Russie")
    assert [destination.shown for destination in alert.destinations] == [
        "ntfys://ntfy.sh/t",
        "json://hooks.example.org/monitor",
    ]
