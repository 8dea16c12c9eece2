"""Feed health: each state reached by real polls of a local server with a driven clock,
and the pure rules (silence, attention, words) with literal times."""

from __future__ import annotations

import itertools
import socket
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.articles import InlineArticles
from monitor.digest import error_in_words
from monitor.fetch import Fetcher
from monitor.health import (
    FeedHealth,
    FeedHistory,
    HealthState,
    assess,
    needs_attention,
    not_polled,
    plain_error,
    usual_gap,
)
from monitor.models import (
    ArticleText,
    Entry,
    FeedSpec,
    FeedState,
    Fetched,
    FetchErrorKind,
    FetchFailed,
    FetchLimits,
    NewArticle,
    NewBody,
    NotModified,
    ParseFailed,
    PollResult,
    TextSource,
    Validators,
)
from monitor.parse import parse_feed
from monitor.pipeline import FeedReport, Pipeline
from monitor.schedule import GONE_AFTER, GONE_POLL_EVERY, Wait, decide_update
from monitor.service import plan_poll
from monitor.store import Store
from tests.servers import HTTPTestServer, Reply

START = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
LIMITS = FetchLimits(timeout=0.5, connect_timeout=0.5)


def rss(*keys: str) -> bytes:
    """A feed whose items have no link: a poll stores them without fetching any page."""
    items = "".join(
        f'<item><title>Item {key}</title><guid isPermaLink="false">{key}</guid>'
        f"<description>Texte {key}.</description></item>"
        for key in keys
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>Le Fil</title><language>fr</language>{items}</channel></rss>"
    ).encode()


@dataclass
class Poller:
    """A real pipeline, store and fetcher, with a clock the test moves."""

    pipeline: Pipeline
    store: Store
    now: datetime = START

    def poll(self, spec: FeedSpec, at: timedelta) -> FeedReport:
        self.now = START + at
        return self.pipeline.poll_feed(spec)

    def health(self, spec: FeedSpec, at: timedelta | None = None) -> FeedHealth:
        now = START + at if at is not None else self.now
        [found] = self.store.feed_health(now, [spec])
        return found


@pytest.fixture
def poller(tmp_path: Path) -> Iterator[Poller]:
    with Store(tmp_path / "monitor.db") as store, Fetcher(LIMITS) as fetcher:
        pipeline = Pipeline(
            store=store, fetcher=fetcher, articles=InlineArticles(), clock=START.now
        )
        driven = Poller(pipeline, store)
        pipeline.clock = lambda: driven.now
        yield driven
        pipeline.close()


@pytest.fixture
def server() -> Iterator[HTTPTestServer]:
    with HTTPTestServer() as running:
        yield running


# --------------------------------------------------------------------------- from real polls


def test_a_server_failing_again_and_again_makes_the_feed_failing(
    poller: Poller, server: HTTPTestServer
) -> None:
    server.routes["/feed"] = Reply(status=500)
    spec = FeedSpec(url=server.url("/feed"), name="Le Fil")
    for minutes in (0, 30, 90):
        poller.poll(spec, timedelta(minutes=minutes))
    health = poller.health(spec)
    assert health.state is HealthState.FAILING
    assert (health.since, health.failed_polls) == (START, 3)
    assert health.last_error == "the server answered 500 Internal Server Error"
    assert health.words == (
        "failing since 28 Nov 07:00 (3 polls): the server answered 500 Internal Server Error"
    )
    assert not needs_attention(health, now=START + timedelta(hours=2))
    assert needs_attention(
        poller.health(spec, timedelta(hours=25)), now=START + timedelta(hours=25)
    )

    server.routes["/feed"] = Reply(body=rss("a"))
    poller.poll(spec, timedelta(hours=4))
    recovered = poller.health(spec)
    assert (recovered.state, recovered.since, recovered.failed_polls) == (HealthState.OK, None, 0)
    assert recovered.last_error is None


def test_404_for_a_day_makes_the_feed_gone_polled_once_a_day_never_dropped(
    poller: Poller, server: HTTPTestServer
) -> None:
    server.routes["/feed"] = Reply(body=rss("a"))
    spec = FeedSpec(url=server.url("/feed"))
    poller.poll(spec, timedelta(0))
    del server.routes["/feed"]  # the test server answers 404 for unknown paths
    for hours in (1, 12):
        poller.poll(spec, timedelta(hours=hours))
    assert poller.health(spec).state is HealthState.FAILING  # not a day yet
    poller.poll(spec, timedelta(hours=1) + GONE_AFTER)
    gone = poller.health(spec)
    assert gone.state is HealthState.GONE
    assert gone.since == START + timedelta(hours=1)
    assert gone.name == "Le Fil"  # the title it had
    assert gone.words == (
        "gone since 28 Nov 08:00: the server answered 404 Not Found; polled once a day"
    )
    assert needs_attention(gone, now=poller.now)

    next_day = START + timedelta(hours=1) + GONE_AFTER + GONE_POLL_EVERY
    assert poller.store.feed_state(spec.url).next_poll == next_day
    due, skipped = plan_poll(poller.store, [spec], now=next_day - timedelta(minutes=1))
    assert due == [] and [skip.deferral.reason for skip in skipped] == [Wait.GONE]
    due, skipped = plan_poll(poller.store, [spec], now=next_day)
    assert (due, skipped) == ([spec], [])
    requests = server.count("/feed")
    poller.poll(spec, next_day - START)
    assert server.count("/feed") == requests + 1
    assert poller.store.feed_state(spec.url).next_poll == next_day + GONE_POLL_EVERY

    server.routes["/feed"] = Reply(body=rss("a", "b"))  # back again
    poller.poll(spec, next_day - START + GONE_POLL_EVERY)
    assert poller.health(spec).state is HealthState.OK


def test_a_permanent_redirect_makes_the_feed_moved_with_its_new_url(
    poller: Poller, server: HTTPTestServer
) -> None:
    server.routes["/old"] = Reply(status=301, headers={"Location": "/new"})
    server.routes["/new"] = Reply(body=rss("a"))
    spec = FeedSpec(url=server.url("/old"), name="Le Fil")
    poller.poll(spec, timedelta(0))
    report = poller.poll(spec, timedelta(minutes=15))
    assert report.moved_to == server.url("/new")
    assert report.log_line().endswith(
        f"; it moved permanently to {server.url('/new')}: put the new URL in feeds.yaml"
    )
    moved = poller.health(spec)
    assert moved.state is HealthState.MOVED
    assert (moved.moved_to, moved.since) == (server.url("/new"), START)
    assert moved.words == (
        f"moved to {server.url('/new')} (a permanent redirect, seen since 28 Nov 07:00); "
        "put the new URL in feeds.yaml"
    )
    assert needs_attention(moved, now=poller.now)
    assert poller.store.feed_state(spec.url).entries == 1  # still polled through the redirect

    server.routes["/old"] = Reply(status=302, headers={"Location": "/new"})  # temporary now
    poller.poll(spec, timedelta(minutes=30))
    assert poller.health(spec).state is HealthState.OK


def test_a_web_page_instead_of_a_feed_is_failing_in_plain_words(
    poller: Poller, server: HTTPTestServer
) -> None:
    server.routes["/feed"] = Reply(
        body=b"<html><body><p>Connexion</p></body></html>",
        headers={"Content-Type": "text/html"},
    )
    spec = FeedSpec(url=server.url("/feed"))
    poller.poll(spec, timedelta(0))
    health = poller.health(spec)
    assert health.state is HealthState.FAILING
    assert health.last_error == "the address is an HTML page, not a feed"
    assert health.name == spec.url


def test_a_timeout_is_failing_in_plain_words(poller: Poller, server: HTTPTestServer) -> None:
    server.routes["/feed"] = Reply(body=rss("a"), delay=2.0)
    spec = FeedSpec(url=server.url("/feed"))
    poller.poll(spec, timedelta(0))
    health = poller.health(spec)
    assert health.state is HealthState.FAILING
    assert health.last_error is not None
    assert health.last_error.startswith("no complete response within 0.5 s")
    assert spec.url not in health.last_error and ";" not in health.last_error


def test_a_feed_with_no_new_entry_for_three_usual_gaps_and_two_days_is_silent(
    poller: Poller, server: HTTPTestServer
) -> None:
    spec = FeedSpec(url=server.url("/feed"), name="Le Fil")
    keys: list[str] = []
    for step in range(4):  # a new entry every 6 hours
        keys.append(f"e{step}")
        server.routes["/feed"] = Reply(body=rss(*keys))
        poller.poll(spec, timedelta(hours=6 * step))
    last_new = START + timedelta(hours=18)
    poller.poll(spec, last_new - START + timedelta(days=1))
    health = poller.health(spec)
    assert (health.state, health.usual_gap) == (HealthState.OK, timedelta(hours=6))
    assert health.words == "ok, a new entry about every 6 hours"
    poller.poll(spec, last_new - START + timedelta(days=2))
    silent = poller.health(spec)
    assert (silent.state, silent.since) == (HealthState.SILENT, last_new)
    assert silent.words == "silent: no new entry since 29 Nov 01:00 (usually one every 6 hours)"
    assert needs_attention(silent, now=poller.now)

    server.routes["/feed"] = Reply(body=rss(*keys, "e4"))
    poller.poll(spec, last_new - START + timedelta(days=2, hours=1))
    assert poller.health(spec).state is HealthState.OK


def test_the_health_of_feeds_comes_in_the_order_configured_and_unpolled_ones_are_ok(
    poller: Poller, server: HTTPTestServer
) -> None:
    server.routes["/a"] = Reply(body=rss("a"))
    first, second = FeedSpec(url=server.url("/a")), FeedSpec(url=server.url("/b"), name="B")
    poller.poll(first, timedelta(0))
    healths = poller.store.feed_health(START, [second, first])
    assert [(health.url, health.state) for health in healths] == [
        (second.url, HealthState.OK),
        (first.url, HealthState.OK),
    ]
    assert (healths[0].name, healths[0].words) == ("B", "not polled yet")
    assert healths[1].words == "ok"


def test_the_history_holds_the_latest_distinct_arrivals_oldest_first(
    poller: Poller, server: HTTPTestServer
) -> None:
    spec = FeedSpec(url=server.url("/feed"))
    keys: list[str] = []
    for step in range(6):
        keys += [f"e{step}a", f"e{step}b"]  # two entries arrive at each poll
        server.routes["/feed"] = Reply(body=rss(*keys))
        poller.poll(spec, timedelta(hours=step))
    history = poller.store.feed_histories(arrivals=4)[spec.url]
    assert history.new_entry_times == tuple(START + timedelta(hours=h) for h in (2, 3, 4, 5))


def test_the_migration_dates_the_failures_of_a_feed_already_failing(tmp_path: Path) -> None:
    import sqlite_utils

    from monitor.store import MIGRATIONS

    path = tmp_path / "old.db"
    old = sqlite_utils.Database(path)
    MIGRATIONS.apply(old, stop_before="0006_feed_health")
    old.execute(
        "INSERT INTO feeds (url, last_poll, error_count, last_error) VALUES "
        "('https://x.example/feed', '2026-11-27T05:00:00.000000+00:00', 4, "
        "'https://x.example/feed: the server answered 503 Service Unavailable; it will be retried')"
    )
    old.execute("INSERT INTO feeds (url, error_count) VALUES ('https://y.example/feed', 0)")
    old.conn.commit()
    old.close()
    with Store(path) as store:
        failing, fine = store.feed_health(
            START, [FeedSpec(url="https://x.example/feed"), FeedSpec(url="https://y.example/feed")]
        )
    assert (failing.state, failing.since, failing.failed_polls) == (
        HealthState.FAILING,
        datetime(2026, 11, 27, 5, 0, tzinfo=UTC),
        4,
    )
    assert failing.last_error == "the server answered 503 Service Unavailable"
    assert fine.state is HealthState.OK


# --------------------------------------------------------------------------- pure rules


URL = "https://a.example/feed.xml"


def state(**changes: object) -> FeedState:
    """A feed polled successfully at START, never failing."""
    healthy = FeedState(
        feed_id=1,
        url=URL,
        title="Le Fil",
        validators=Validators(),
        body_hash=None,
        last_poll=START,
        last_success=START,
        http_status=200,
        entries=10,
        last_error=None,
        error_count=0,
        next_poll=START + timedelta(minutes=15),
    )
    return replace(healthy, **changes)  # type: ignore[arg-type]


def arrivals(last: datetime, gap: timedelta, count: int = 5) -> FeedHistory:
    return FeedHistory(tuple(last - gap * n for n in reversed(range(count))))


@pytest.mark.parametrize(
    ("gap", "quiet", "silent"),
    [
        (timedelta(hours=1), timedelta(days=2) - timedelta(seconds=1), False),
        (timedelta(hours=1), timedelta(days=2), True),  # 3 gaps passed long ago: 2 days at least
        (timedelta(days=1), timedelta(days=2, hours=23), False),
        (timedelta(days=1), timedelta(days=3), True),  # 3 usual gaps
        (timedelta(days=7), timedelta(days=20), False),
        (timedelta(days=7), timedelta(days=21), True),
    ],
)
def test_silent_after_three_usual_gaps_and_at_least_two_days(
    gap: timedelta, quiet: timedelta, silent: bool
) -> None:
    history = arrivals(START - quiet, gap)
    health = assess(state(), name=None, now=START, history=history)
    assert health.usual_gap == gap
    assert health.state is (HealthState.SILENT if silent else HealthState.OK)
    assert health.since == (START - quiet if silent else None)


def test_silence_counts_only_up_to_the_last_successful_poll() -> None:
    """A stopped daemon learns nothing about the feeds: they are not silent for it."""
    history = arrivals(START, timedelta(hours=1))
    later = START + timedelta(days=10)
    assert assess(state(), name=None, now=later, history=history).state is HealthState.OK


def test_too_few_arrivals_to_know_a_usual_gap_never_make_a_feed_silent() -> None:
    history = arrivals(START - timedelta(days=60), timedelta(hours=1), count=3)
    health = assess(state(), name=None, now=START, history=history)
    assert (health.state, health.usual_gap) == (HealthState.OK, None)
    assert usual_gap([START, START, START - timedelta(hours=1)]) is None  # one poll, one time


def test_the_usual_gap_is_the_median_gap_between_distinct_arrivals() -> None:
    hour = timedelta(hours=1)
    times = [START, START + hour, START + 2 * hour, START + 2 * hour, START + 12 * hour]
    # Gaps 1 h, 1 h, 10 h (the repeated time is one poll): the median is 1 h.
    assert usual_gap(times) == hour
    assert usual_gap(list(reversed(times))) == hour


def test_gone_comes_before_failing_which_comes_before_moved() -> None:
    moved = state(moved_to="https://b.example/feed", moved_since=START - timedelta(days=3))
    assert assess(moved, name=None, now=START, history=FeedHistory()).state is HealthState.MOVED
    failing = replace(
        moved,
        error_count=2,
        failing_since=START - timedelta(hours=2),
        last_error=f"{URL}: the server answered 502 Bad Gateway; it will be retried",
    )
    health = assess(failing, name="Fil", now=START, history=FeedHistory())
    assert (health.state, health.moved_to) == (HealthState.FAILING, "https://b.example/feed")
    assert health.words == (
        "failing since 28 Nov 05:00 (2 polls): the server answered 502 Bad Gateway; "
        "it moved to https://b.example/feed"
    )
    assert needs_attention(health, now=START)  # under a day, but it moved
    gone = replace(failing, gone_since=START - GONE_AFTER, http_status=404)
    gone_health = assess(gone, name=None, now=START, history=FeedHistory())
    assert gone_health.state is HealthState.GONE
    assert gone_health.words == (
        "gone since 27 Nov 07:00: the server answered 502 Bad Gateway; polled once a day; "
        "it moved to https://b.example/feed"
    )


def test_times_are_in_the_zone_of_now_and_the_name_falls_back_to_title_then_url() -> None:
    paris = ZoneInfo("Europe/Paris")
    failing = state(
        error_count=1, failing_since=START, last_error=f"{URL}: the server answered 503"
    )
    health = assess(failing, name=None, now=START.astimezone(paris), history=FeedHistory())
    assert health.since == START and health.since.tzinfo == paris
    assert health.words.startswith("failing since 28 Nov 08:00 (1 poll)")
    assert health.name == "Le Fil"
    december = replace(failing, failing_since=datetime(2026, 12, 1, 6, 5, tzinfo=UTC))
    later = assess(december, name=None, now=START + timedelta(days=4), history=FeedHistory())
    assert later.words.startswith("failing since 1 Dec 06:05 (1 poll)")
    assert assess(state(title=None), name=None, now=START, history=FeedHistory()).name == URL
    assert assess(state(), name="Mine", now=START, history=FeedHistory()).name == "Mine"


@pytest.mark.parametrize(
    ("health", "attention"),
    [
        (not_polled(URL, None), False),
        (assess(state(), name=None, now=START, history=FeedHistory()), False),
        (
            assess(
                state(error_count=5, failing_since=START - timedelta(hours=23), last_error="x"),
                name=None,
                now=START,
                history=FeedHistory(),
            ),
            False,
        ),
        (
            assess(
                state(error_count=9, failing_since=START - timedelta(hours=25), last_error="x"),
                name=None,
                now=START,
                history=FeedHistory(),
            ),
            True,
        ),
    ],
    ids=["not polled", "ok", "failing 23 h", "failing 25 h"],
)
def test_needs_attention_when_failing_for_more_than_a_day(
    health: FeedHealth, attention: bool
) -> None:
    assert needs_attention(health, now=START) is attention


def html_failure() -> str:
    parsed = parse_feed(b"<html><body>Bonjour</body></html>", url=URL, headers={})
    assert isinstance(parsed, ParseFailed)
    return parsed.message


@pytest.mark.parametrize(
    ("message", "plain"),
    [
        (
            f"{URL}: the server answered 404 Not Found; the address does not exist (any more); "
            "check the URL",
            "the server answered 404 Not Found",
        ),
        (html_failure(), "the address is an HTML page, not a feed"),
        (
            f"could not parse the feed {URL}: ValueError: bad; check that the URL serves RSS",
            "could not parse the feed: ValueError: bad",
        ),
        (
            f"{URL}: unexpected error (KeyError: 'x')",
            "an unexpected error in monitor itself (see its log)",
        ),
        ("something else entirely", "something else entirely"),
    ],
    ids=["status", "html", "parse", "bug", "other"],
)
def test_errors_in_plain_words_without_url_or_advice(message: str, plain: str) -> None:
    assert plain_error(message, URL) == plain


# --------------------------------------------------------------------------- decider and health together

POLL_KINDS = ["new", "same", "moved", "404", "410", "500", "timeout"]


def poll_result(kind: str, step: int) -> PollResult:
    moved_url = "https://b.example/feed.xml"
    if kind == "new":
        entry = Entry(key=f"k{step}", link=None, title="t", summary="", content="", published=None)
        article = ArticleText(url=None, title="t", text="x", source=TextSource.FEED)
        fetched = Fetched(url=URL, status=200, headers={}, content=b"")
        item = NewArticle(entry=entry, article=article, hits=())
        return NewBody(
            fetched=fetched, body_hash=str(step), feed_title=None, entries=1, new=(item,)
        )
    if kind in ("same", "moved"):
        moved_to = moved_url if kind == "moved" else None
        return NotModified(url=moved_to or URL, moved_to=moved_to)
    if kind == "timeout":
        return FetchFailed(url=URL, kind=FetchErrorKind.TIMEOUT, message=f"{URL}: no response")
    status = int(kind)
    message = f"{URL}: the server answered {status}; check the URL"
    return FetchFailed(url=URL, kind=FetchErrorKind.HTTP_STATUS, message=message, status=status)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(POLL_KINDS),
            st.timedeltas(min_value=timedelta(minutes=1), max_value=timedelta(days=2)),
        ),
        min_size=1,
        max_size=25,
    )
)
def test_the_state_always_agrees_with_the_polls_that_led_to_it(
    polls: list[tuple[str, timedelta]],
) -> None:
    spec = FeedSpec(url=URL)
    current = state(last_poll=None, last_success=None, next_poll=None)
    now = START
    arrivals: list[datetime] = []
    failures: list[tuple[datetime, str]] = []  # the current run of failed polls
    for step, (kind, wait) in enumerate(polls):
        now += wait
        update = decide_update(current, spec, poll_result(kind, step), now)
        current = replace(
            current,
            last_poll=update.polled_at,
            last_success=update.last_success,
            http_status=update.http_status,
            last_error=update.error,
            error_count=update.error_count,
            next_poll=update.next_poll,
            failing_since=update.failing_since,
            gone_since=update.gone_since,
            moved_to=update.moved_to,
            moved_since=update.moved_since,
        )
        arrivals += [now] if kind == "new" else []
        failures = [*failures, (now, kind)] if kind in ("404", "410", "500", "timeout") else []
    health = assess(current, name=None, now=now, history=FeedHistory(tuple(arrivals)))
    assert health.failed_polls == len(failures)
    statuses = [kind for _, kind in failures]
    gone_run = list(itertools.takewhile(lambda f: f[1] in ("404", "410"), reversed(failures)))
    if health.state is HealthState.GONE:
        assert gone_run and now - gone_run[-1][0] >= GONE_AFTER
        assert health.since == gone_run[-1][0]
        assert update.next_poll == now + GONE_POLL_EVERY
    elif health.state is HealthState.FAILING:
        assert failures and health.since == failures[0][0]
        assert not (gone_run and now - gone_run[-1][0] >= GONE_AFTER)
    else:
        assert statuses == []
        assert health.last_error is None
    if health.state is HealthState.MOVED:
        assert health.moved_to == "https://b.example/feed.xml"
    if health.state is HealthState.SILENT:
        assert health.since == max(arrivals)
    assert health.words and "\n" not in health.words
    assert URL not in (health.last_error or "")


# --------------------------------------------------------------------------- in the digest's words


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


FAILURES = {
    "/status": (Reply(status=503), "le serveur a répondu 503 Service Unavailable"),
    "/page": (
        Reply(body=b"<html><body><p>Connexion</p></body></html>", headers={"Content-Type": "text/html"}),
        "l’adresse est une page web, pas un flux",
    ),
    "/empty": (Reply(body=b"", headers={"Content-Type": "application/xml"}), "l’adresse ne fournit pas de flux"),
    "/broken": (
        Reply(body=b"<?xml version='1.0'?><rss version='2.0'><channel><item><title>A</ti",
              headers={"Content-Type": "application/rss+xml"}),
        "le flux est illisible : il est cassé",
    ),
    "/slow": (Reply(body=rss("a"), delay=2.0), "pas de réponse complète en 0.5 s"),
}  # fmt: skip


@pytest.mark.parametrize("path", sorted(FAILURES))
def test_a_french_digest_says_a_real_polls_error_in_french(
    poller: Poller, server: HTTPTestServer, path: str
) -> None:
    reply, french = FAILURES[path]
    server.routes[path] = reply
    spec = FeedSpec(url=server.url(path))
    poller.poll(spec, timedelta(0))
    error = poller.health(spec).last_error
    assert error is not None
    assert error_in_words(error, "fr") == french


def test_a_refused_connection_is_said_in_french_with_the_systems_own_reason(
    poller: Poller,
) -> None:
    spec = FeedSpec(url=f"http://127.0.0.1:{_closed_port()}/feed")
    poller.poll(spec, timedelta(0))
    error = poller.health(spec).last_error
    assert error is not None and error.startswith("cannot connect to 127.0.0.1 (")
    words = error_in_words(error, "fr")
    assert words.startswith("connexion impossible à 127.0.0.1 (") and words.endswith(")")


def test_an_error_of_an_unknown_shape_is_shown_as_stored() -> None:
    assert error_in_words("something new went wrong", "fr") == ("something new went wrong")
