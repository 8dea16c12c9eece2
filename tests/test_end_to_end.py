"""The whole pipeline through the real `monitor` command: local HTTP feeds and pages,
a real SQLite file, a real SMTP server; then the daemon as a subprocess."""

from __future__ import annotations

import gzip
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from html import escape
from pathlib import Path

import pytest

from tests.corpus import require_corpus
from tests.servers import HTTPTestServer, Reply
from tests.smtp_server import SmtpSink

TOGO = "Togo — coopération militaire"
TOGO_NO_MOSCOW = "Togo sans Moscou"
APPLE = "Apple keyboards"


def run_monitor(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "PYTHONUTF8": "1"},
    )


def seed_page(seed: Path) -> bytes:
    paragraphs = seed.read_text(encoding="utf-8").splitlines()
    body = "".join(f"<p>{escape(paragraph)}</p>" for paragraph in paragraphs if paragraph.strip())
    return (
        '<!DOCTYPE html><html lang="fr"><head><meta charset="utf-8">'
        "<title>Le Togo approuve un accord de coopération militaire avec la Russie</title></head>"
        "<body><nav><a href='/'>Accueil</a> | <a href='/sport'>Sport</a></nav>"
        "<article><h1>Le Togo approuve un accord de coopération militaire avec la Russie</h1>"
        f"{body}</article><footer>© Exemple Presse</footer></body></html>"
    ).encode()


def rss(title: str, items: list[tuple[str, str, str]]) -> bytes:
    entries = "".join(
        f"<item><title>{escape(t)}</title><link>{escape(link)}</link>"
        f"<guid>{escape(link)}</guid><description>{escape(summary)}</description>"
        "<pubDate>Tue, 24 Nov 2026 18:00:00 GMT</pubDate></item>"
        for t, link, summary in items
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>{escape(title)}</title><link>http://example.org/</link><language>fr</language>"
        f"{entries}</channel></rss>"
    ).encode()


def atom(title: str, items: list[tuple[str, str]]) -> bytes:
    entries = "".join(
        f"<entry><title>{escape(t)}</title><id>{escape(link)}</id>"
        f'<link href="{escape(link)}"/><updated>2026-11-24T18:00:00Z</updated></entry>'
        for t, link in items
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>{escape(title)}</title><id>urn:x</id><updated>2026-11-24T18:00:00Z</updated>"
        f"{entries}</feed>"
    ).encode()


@pytest.fixture
def site() -> Iterator[HTTPTestServer]:
    seed = require_corpus("seed", "togo-russie.txt")
    macbook = require_corpus("articles", "aeb-scrapinghub", "232a43fb15abde80.html.gz")
    emirates = require_corpus("articles", "aeb-scrapinghub", "374ac9a59a85196c.html.gz")
    server = HTTPTestServer().start()
    base = server.url("")
    togo_url = base + "/afrique/togo-russie.html"
    routes = {
        "/afrique/togo-russie.html": Reply(
            body=seed_page(seed), headers={"Content-Type": "text/html; charset=utf-8"}
        ),
        "/tech/macbook.html": Reply(
            body=gzip.decompress(macbook.read_bytes()), headers={"Content-Type": "text/html"}
        ),
        "/eco/emirates.html": Reply(
            body=gzip.decompress(emirates.read_bytes()), headers={"Content-Type": "text/html"}
        ),
        "/feeds/afrique.xml": Reply(
            body=rss(
                "Afrique Test",
                [
                    (
                        "Le Togo approuve un accord avec la Russie",
                        togo_url,
                        "Lomé se tourne vers Moscou.",
                    ),
                    ("Emirates commande des Boeing", base + "/eco/emirates.html", "Aviation."),
                    # The page is gone: the entry's own summary is matched instead.
                    (
                        "Lomé : accord de défense signé",
                        base + "/gone.html",
                        "Le Togo et ses partenaires signent un accord de défense.",
                    ),
                ],
            ),
            headers={"Content-Type": "application/rss+xml"},
            etag='"afrique-1"',
        ),
        "/feeds/tech.atom": Reply(
            body=atom(
                "Tech Test",
                [
                    ("MacBook Pro keyboard", base + "/tech/macbook.html"),
                    ("Togo and Russia (syndicated)", togo_url),  # the same article in a second feed
                ],
            ),
            headers={"Content-Type": "application/atom+xml"},
            last_modified="Tue, 24 Nov 2026 18:00:00 GMT",
        ),
        "/feeds/login.xml": Reply(
            body=b"<!DOCTYPE html><html><body><form>Please log in</form></body></html>",
            headers={"Content-Type": "text/html"},
        ),
        "/gone.html": Reply(status=404, body=b"not found"),
        "/feeds/extra.xml": Reply(
            body=rss("Extra Test", [("Emirates orders jets", base + "/eco/emirates.html", "")]),
            headers={"Content-Type": "application/rss+xml"},
        ),
    }
    server.routes.update(routes)
    try:
        yield server
    finally:
        server.stop()


def write_config(
    path: Path, server: HTTPTestServer, smtp: SmtpSink, *, at: str = "07:00", interval: str = "15m"
) -> Path:
    path.write_text(
        f"""
database: monitor.db
timezone: Africa/Lome
poll:
  interval: {interval}
  timeout: 10s
feeds:
  - url: {server.url("/feeds/afrique.xml")}
    name: Afrique Test
  - url: {server.url("/feeds/tech.atom")}
    name: Tech Test
  - url: {server.url("/feeds/login.xml")}
    name: Login Wall
  - url: {server.url("/feeds/missing.xml")}
    name: Missing Feed
watchlists:
  - name: {TOGO}
    all: [Togo]
    any: ["coopération militaire", "accord de défense", "instructeurs russes"]
    none: [football]
  - name: {TOGO_NO_MOSCOW}
    all: [Togo]
    any: ["coopération militaire"]
    none: [Moscou]
  - name: {APPLE}
    query: 'MacBook AND keyboard*'
digest:
  at: "{at}"
  from: veille@example.org
  to: [analyste@example.org]
  smtp:
    host: {smtp.host}
    port: {smtp.port}
    security: none
""",
        encoding="utf-8",
    )
    return path


def hits_json(config: Path) -> list[dict[str, object]]:
    result = run_monitor(config, "hits", "--format", "json")
    assert result.returncode == 0, result.stderr
    parsed: list[dict[str, object]] = json.loads(result.stdout)
    return parsed


def test_poll_then_digest_end_to_end(
    tmp_path: Path,
    site: HTTPTestServer,
    smtp_sink: SmtpSink,
) -> None:
    config = write_config(tmp_path / "feeds.yaml", site, smtp_sink)
    assert run_monitor(config, "check").returncode == 0

    first = run_monitor(config, "poll")
    assert first.returncode == 0, first.stderr
    assert "4 feeds polled, 2 failed" in first.stdout

    found = hits_json(config)
    by_watchlist: dict[str, list[dict[str, object]]] = {}
    for hit in found:
        by_watchlist.setdefault(str(hit["watchlist"]), []).append(hit)
    togo_titles = sorted(str(hit["title"]) for hit in by_watchlist[TOGO])
    # The seed article (once, though two feeds list it) and the entry whose page is gone.
    assert len(togo_titles) == 2, togo_titles
    assert any("coopération militaire" in title for title in togo_titles)
    seed_hit = next(h for h in by_watchlist[TOGO] if "Russie" in str(h["title"]))
    matched = seed_hit["matched"]
    assert isinstance(matched, list)
    assert {"Togo", "coopération militaire", "instructeurs russes"} <= set(matched)
    assert "[[" in str(seed_hit["snippet"])
    assert TOGO_NO_MOSCOW not in by_watchlist  # the seed names Moscou
    assert [h["title"] for h in by_watchlist[APPLE]], "the MacBook page should match"
    for hit in found:
        assert set(hit) >= {"watchlist", "title", "url", "feed", "published", "matched", "snippet"}

    database = tmp_path / "monitor.db"
    with sqlite3.connect(database) as db:
        togo_articles = db.execute(
            "SELECT COUNT(*) FROM articles WHERE url LIKE '%togo-russie.html'"
        ).fetchone()[0]
        links = db.execute(
            "SELECT COUNT(*) FROM entries JOIN articles ON articles.id = entries.article_id "
            "WHERE articles.url LIKE '%togo-russie.html'"
        ).fetchone()[0]
        fallback = db.execute(
            "SELECT text_source, note FROM articles WHERE url LIKE '%gone.html'"
        ).fetchone()
    assert (togo_articles, links) == (1, 2)
    assert fallback[0] == "feed" and "404" in fallback[1]

    status = run_monitor(config, "status")
    assert status.returncode == 0
    assert "Login Wall" in status.stdout and "HTML" in status.stdout
    assert "404" in status.stdout

    digest = run_monitor(config, "digest")
    assert digest.returncode == 0, digest.stderr
    assert len(smtp_sink.messages) == 1
    message = smtp_sink.messages[0].message
    assert smtp_sink.messages[0].recipients == ("analyste@example.org",)
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    html_text = html.get_content()
    assert TOGO in plain.get_content() and APPLE in plain.get_content()
    assert site.url("/afrique/togo-russie.html") in html_text
    assert "<mark>" in html_text

    # Nothing new: a second poll stores nothing, a second digest sends nothing. The feeds
    # are not due again yet: `--force` polls them all the same.
    skipping = run_monitor(config, "poll")
    assert skipping.returncode == 0, skipping.stderr
    assert "0 feeds polled" in skipping.stdout and "4 skipped" in skipping.stdout
    second = run_monitor(config, "poll", "--force")
    assert second.returncode == 0, second.stderr
    assert "4 feeds polled, 2 failed, 0 new entries, 0 new hits" in second.stdout
    assert len(hits_json(config)) == len(found)
    again = run_monitor(config, "digest")
    assert again.returncode == 0
    assert "nothing sent" in again.stdout
    assert len(smtp_sink.messages) == 1


def test_explain_and_extract_commands(
    tmp_path: Path, site: HTTPTestServer, smtp_sink: SmtpSink
) -> None:
    config = write_config(tmp_path / "feeds.yaml", site, smtp_sink)
    seed = require_corpus("seed", "togo-russie.txt")
    matched = run_monitor(config, "explain", TOGO, str(seed))
    assert matched.returncode == 0, matched.stdout + matched.stderr
    assert matched.stdout.startswith("MATCH")
    refused = run_monitor(config, "explain", TOGO_NO_MOSCOW, str(seed))
    assert refused.returncode == 1
    assert "Moscou" in refused.stdout

    extracted = run_monitor(config, "extract", site.url("/afrique/togo-russie.html"))
    assert extracted.returncode == 0, extracted.stderr
    assert "Title: Le Togo approuve" in extracted.stdout
    assert "instructeurs russes" in extracted.stdout
    assert "Accueil" not in extracted.stdout  # navigation is not article text


def test_daemon_catches_up_reloads_and_stops(
    tmp_path: Path,
    site: HTTPTestServer,
    smtp_sink: SmtpSink,
) -> None:
    # Hits stored while no daemon ran, and a digest time already past today:
    # the daemon sends the missed digest as soon as it starts.
    config = write_config(tmp_path / "feeds.yaml", site, smtp_sink, at="00:00", interval="1m")
    assert run_monitor(config, "poll").returncode == 0
    log_path = tmp_path / "daemon.log"
    with open(log_path, "w", encoding="utf-8") as log_file:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "monitor", "-c", str(config), "run"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUTF8": "1"},
        )
    try:
        wait_for(lambda: len(smtp_sink.messages) == 1, 60, log_path)
        # A second instance on the same database refuses to start.
        second = run_monitor(config, "run", timeout=60)
        assert second.returncode == 1
        assert "already" in second.stderr

        # An invalid edit is reported and ignored...
        original = config.read_text(encoding="utf-8")
        config.write_text(original.replace("all: [Togo]", "all: Togo: ["), encoding="utf-8")
        wait_for(
            lambda: "keeping the previous configuration" in log_path.read_text(encoding="utf-8"),
            30,
            log_path,
        )
        # ...a valid one is applied without a restart: the new feed is polled at once
        # and the new watchlist matches what it brings.
        edited = original.replace(
            "  - name: Apple keyboards",
            "  - name: Emirates\n    query: 'Emirates AND Boeing'\n  - name: Apple keyboards",
        ).replace(
            "watchlists:",
            f"  - url: {site.url('/feeds/extra.xml')}\n    name: Extra Test\nwatchlists:",
        )
        config.write_text(edited.replace("timeout: 10s", "timeout: 20s"), encoding="utf-8")
        log_says(log_path, "configuration reloaded: 5 feeds, 4 watchlists", 30)
        log_says(log_path, "poll settings (timeouts, sizes, concurrency) apply after a restart", 5)
        log_says(log_path, "Extra Test: 1 entries, 1 new, 1 hits", 60)
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            returncode = daemon.wait(timeout=20)
        except subprocess.TimeoutExpired:
            daemon.kill()
            raise
    output = log_path.read_text(encoding="utf-8")
    assert returncode == 0, output
    assert "monitor stopped" in output
    assert len(smtp_sink.messages) == 1
    with sqlite3.connect(tmp_path / "monitor.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        states = dict(db.execute("SELECT state, COUNT(*) FROM digests GROUP BY state").fetchall())
        emirates = db.execute("SELECT COUNT(*) FROM hits WHERE watchlist = 'Emirates'").fetchone()
    assert states.get("sent") == 1
    assert emirates[0] == 1


def wait_for(condition: object, seconds: float, log_path: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out; daemon log:\n{log_path.read_text(encoding='utf-8')}")


def log_says(log_path: Path, text: str, seconds: float) -> None:
    wait_for(lambda: text in log_path.read_text(encoding="utf-8"), seconds, log_path)
