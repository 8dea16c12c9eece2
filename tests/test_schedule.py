"""The pure time policy: back-off, Retry-After, and which digest is due, across DST."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from monitor.config.settings import DigestSettings, Every
from monitor.models import (
    ArticleText,
    BodyUnchanged,
    Entry,
    FeedSpec,
    FeedState,
    FeedUpdate,
    Fetched,
    FetchErrorKind,
    FetchFailed,
    NewArticle,
    NewBody,
    NotAFeed,
    NotModified,
    ParseFailed,
    PollError,
    PollOutcome,
    PollResult,
    TextSource,
    Validators,
)
from monitor.schedule import (
    GONE_AFTER,
    GONE_POLL_EVERY,
    MAX_BACKOFF,
    UNCONDITIONAL_GET_EVERY,
    Wait,
    body_hash,
    decide_update,
    deferral,
    digest_period_key,
    due_digest,
    is_known_body,
    latest_digest_time,
    manual_digest_key,
    next_digest_time,
    next_poll_after,
    validators_to_send,
)

NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
QUARTER = timedelta(minutes=15)


def test_success_waits_one_interval() -> None:
    assert next_poll_after(NOW, QUARTER) == NOW + QUARTER


@pytest.mark.parametrize(
    ("errors", "expected"),
    [
        (1, timedelta(minutes=30)),
        (2, timedelta(hours=1)),
        (3, timedelta(hours=2)),
        (10, MAX_BACKOFF),
        (10**9, MAX_BACKOFF),
    ],
)
def test_failures_back_off_exponentially_up_to_a_day(errors: int, expected: timedelta) -> None:
    assert next_poll_after(NOW, QUARTER, consecutive_errors=errors) == NOW + expected


def test_interval_longer_than_the_cap_is_kept() -> None:
    weekly = timedelta(days=7)
    assert next_poll_after(NOW, weekly, consecutive_errors=3) == NOW + weekly


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        (timedelta(seconds=120), QUARTER),  # shorter than the interval: the interval wins
        (timedelta(hours=3), timedelta(hours=3)),
        (timedelta(seconds=-5), QUARTER),
        (timedelta(days=10**6), timedelta(hours=24)),  # absurd values are clamped, no overflow
    ],
)
def test_retry_after_is_honoured_and_clamped(retry_after: timedelta, expected: timedelta) -> None:
    assert next_poll_after(NOW, QUARTER, retry_after=retry_after) == NOW + expected


LOME = ZoneInfo("Africa/Lome")
BERLIN = ZoneInfo("Europe/Berlin")
PACIFIC = ZoneInfo("America/Los_Angeles")


def due_digest_key(now: datetime, tz: ZoneInfo, at: time) -> str:
    """The local date of the daily digest period that `now` falls in."""
    return latest_digest_time(now, tz, at).astimezone(tz).date().isoformat()


def test_digest_key_before_and_after_the_time() -> None:
    at = time(7, 0)
    assert due_digest_key(datetime(2026, 11, 28, 6, 59, tzinfo=LOME), LOME, at) == "2026-11-27"
    assert due_digest_key(datetime(2026, 11, 28, 7, 0, tzinfo=LOME), LOME, at) == "2026-11-28"


def test_digest_time_needs_an_aware_time() -> None:
    with pytest.raises(ValueError, match="aware"):
        latest_digest_time(datetime(2026, 11, 28, 7, 0), LOME, time(7, 0))


@pytest.mark.parametrize("tz", [BERLIN, PACIFIC, ZoneInfo("Australia/Sydney"), LOME])
@pytest.mark.parametrize("at", [time(0, 0), time(1, 0), time(2, 30), time(7, 0)])
def test_every_local_day_of_a_year_gets_exactly_one_key(tz: ZoneInfo, at: time) -> None:
    """Minute-by-minute over each DST change and hourly over a year: no day skipped or doubled."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    keys: list[str] = []
    moment = start
    while moment < start + timedelta(days=366):
        key = due_digest_key(moment, tz, at)
        if not keys or keys[-1] != key:
            keys.append(key)
        moment += timedelta(hours=1)
    days = [date.fromisoformat(key) for key in keys]
    assert all(later - earlier == timedelta(days=1) for earlier, later in itertools.pairwise(days))


@pytest.mark.parametrize(
    ("tz", "day"),
    [
        (BERLIN, "2026-03-29"),
        (BERLIN, "2026-10-25"),
        (PACIFIC, "2026-03-08"),
        (PACIFIC, "2026-11-01"),
    ],
)
def test_dst_change_days_each_become_due_once(tz: ZoneInfo, day: str) -> None:
    at = time(2, 30)  # inside the spring gap / the autumn repeat
    moment = datetime.fromisoformat(day).replace(tzinfo=tz).astimezone(UTC) - timedelta(hours=2)
    became_due = []
    previous = due_digest_key(moment, tz, at)
    for _ in range(60 * 24):
        moment += timedelta(minutes=1)
        key = due_digest_key(moment, tz, at)
        if key != previous:
            became_due.append(key)
            previous = key
    assert became_due.count(day) == 1


@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
    ),
    st.sampled_from([LOME, BERLIN, PACIFIC]),
    st.times(),
)
# Found by Hypothesis: 02:00 with fold=1 on a spring-forward day used to map before the gap.
@example(datetime(2040, 3, 10, 10, 0, tzinfo=UTC), PACIFIC, time(2, 0, fold=1))
def test_next_digest_time_is_when_the_key_changes(now: datetime, tz: ZoneInfo, at: time) -> None:
    upcoming = next_digest_time(now, tz, at)
    assert now < upcoming <= now + timedelta(days=1, hours=2)
    current = due_digest_key(now, tz, at)
    # In UTC: arithmetic on a datetime in `tz` moves its wall clock, and a microsecond
    # before 03:00 on a spring-forward night is a wall time that does not exist.
    just_before = upcoming.astimezone(UTC) - timedelta(microseconds=1)
    assert due_digest_key(just_before, tz, at) == current
    assert due_digest_key(upcoming, tz, at) > current


def test_manual_keys_name_the_digest_and_never_a_scheduled_instant() -> None:
    key = manual_digest_key("Matin", NOW)
    assert key == "Matin@manual-20261128T060000000000Z"
    assert key != digest_period_key("Matin", NOW)


def daily(at: time, every: Every = "day", name: str = "Matin") -> DigestSettings:
    return DigestSettings(name=name, at=at, every=every)


def test_weekly_weekday_and_hourly_schedules() -> None:
    friday_evening = datetime(2026, 11, 27, 18, 0, tzinfo=LOME)  # a Friday
    assert latest_digest_time(friday_evening, LOME, time(18, 0), "friday") == friday_evening
    monday = datetime(2026, 11, 30, 9, 0, tzinfo=LOME)
    assert latest_digest_time(monday, LOME, time(18, 0), "friday") == friday_evening
    assert next_digest_time(monday, LOME, time(18, 0), "friday") == friday_evening + timedelta(
        days=7
    )
    sunday = datetime(2026, 11, 29, 12, 0, tzinfo=LOME)
    assert latest_digest_time(sunday, LOME, time(7, 0), "weekdays") == datetime(
        2026, 11, 27, 7, 0, tzinfo=LOME
    )
    assert next_digest_time(sunday, LOME, time(7, 0), "weekdays") == datetime(
        2026, 11, 30, 7, 0, tzinfo=LOME
    )
    assert latest_digest_time(monday, LOME, time(7, 15), "hour") == datetime(
        2026, 11, 30, 8, 15, tzinfo=LOME
    )
    assert next_digest_time(monday, LOME, time(7, 15), "hour") == datetime(
        2026, 11, 30, 9, 15, tzinfo=LOME
    )


def test_hourly_digests_get_one_period_per_real_hour_across_dst_changes() -> None:
    paris = ZoneInfo("Europe/Paris")
    for day in ("2026-03-29", "2026-10-25"):
        moment = datetime.fromisoformat(day).replace(tzinfo=UTC) - timedelta(hours=3)
        instants = set()
        for _ in range(60 * 8):
            instants.add(latest_digest_time(moment, paris, time(0, 30), "hour").timestamp())
            moment += timedelta(minutes=1)
        ordered = sorted(instants)
        assert all(b - a == 3600 for a, b in itertools.pairwise(ordered))
        assert len(ordered) in (8, 9)


def test_a_digest_that_never_ran_is_due_at_once_and_then_not_until_the_next_time() -> None:
    digest = daily(time(7, 0))
    started = datetime(2026, 11, 28, 9, 0, tzinfo=LOME)
    assert due_digest(started, LOME, digest, None) == "Matin@2026-11-28T07:00Z"
    ran = started + timedelta(seconds=5)
    assert due_digest(started + timedelta(hours=3), LOME, digest, ran) is None
    tomorrow = datetime(2026, 11, 29, 7, 0, tzinfo=LOME)
    assert due_digest(tomorrow, LOME, digest, ran) == "Matin@2026-11-29T07:00Z"


def test_moving_at_while_running_sends_nothing_early_and_skips_nothing() -> None:
    """The defect: the daemon started at 09:00 and found nothing (today's 07:00 digest ran
    empty); at 09:30 `at` moved to 10:00. The old date key made yesterday's digest due at
    once, and today's was already done, so nothing went out at 10:00."""
    started = datetime(2026, 11, 28, 9, 0, tzinfo=LOME)
    assert due_digest(started, LOME, daily(time(7, 0)), None) is not None
    last_done = started  # it ran empty
    moved = daily(time(10, 0))
    for minute in range(30, 60):  # 09:30-09:59 with the new time: nothing
        assert due_digest(started.replace(minute=minute), LOME, moved, last_done) is None
    assert due_digest(started.replace(hour=10), LOME, moved, last_done) == (
        "Matin@2026-11-28T10:00Z"
    )


def test_a_daemon_down_for_three_days_sends_one_catch_up_digest() -> None:
    digest = daily(time(7, 0))
    last_done = datetime(2026, 11, 25, 7, 0, 30, tzinfo=LOME)
    back = datetime(2026, 11, 28, 15, 0, tzinfo=LOME)
    assert due_digest(back, LOME, digest, last_done) == "Matin@2026-11-28T07:00Z"
    assert due_digest(back + timedelta(minutes=1), LOME, digest, back) is None


# --------------------------------------------------------------------------- decide_update

FEED = "https://a.example/feed.xml"
SPEC = FeedSpec(url=FEED)  # polled every QUARTER
STORED = Validators(etag='"v1"', last_modified="Fri, 27 Nov 2026 05:00:00 GMT")
OLD_BODY = b"<rss>old</rss>"
NO_VALIDATORS = Validators()


def feed_state(**changes: object) -> FeedState:
    """A healthy feed polled a quarter ago, whose last whole body came an hour ago."""
    healthy = FeedState(
        feed_id=7,
        url=FEED,
        title="Stored title",
        validators=STORED,
        body_hash=body_hash(OLD_BODY),
        last_poll=NOW - QUARTER,
        last_success=NOW - QUARTER,
        http_status=200,
        entries=3,
        last_error=None,
        error_count=0,
        next_poll=NOW,
        last_full_fetch=NOW - timedelta(hours=1),
    )
    return replace(healthy, **changes)  # type: ignore[arg-type]


def fetched(
    content: bytes = b"<rss>new</rss>", validators: Validators = NO_VALIDATORS, status: int = 200
) -> Fetched:
    return Fetched(url=FEED, status=status, headers={}, content=content, validators=validators)


def failed(status: int | None = 503, retry_after: timedelta | None = None) -> FetchFailed:
    return FetchFailed(
        url=FEED,
        kind=FetchErrorKind.HTTP_STATUS if status else FetchErrorKind.TIMEOUT,
        message=f"{FEED}: HTTP {status}",
        status=status,
        retry_after=retry_after,
    )


def new_article(key: str) -> NewArticle:
    entry = Entry(
        key=key, link=f"https://x.example/{key}", title="T", summary="", content="", published=None
    )
    article = ArticleText(url=entry.link, title="T", text="Texte.", source=TextSource.FEED)
    return NewArticle(entry=entry, article=article, hits=())


def after(state: FeedState, update: FeedUpdate) -> FeedState:
    """The state the store reads back once `update` is written (what `Store.record` stores)."""
    return replace(
        state,
        title=update.title,
        validators=update.validators,
        body_hash=update.body_hash,
        last_poll=update.polled_at,
        last_success=update.last_success,
        http_status=update.http_status,
        last_error=update.error,
        error_count=update.error_count,
        next_poll=update.next_poll,
        last_full_fetch=update.last_full_fetch,
        entries=state.entries + len(update.new),
        failing_since=update.failing_since,
        gone_since=update.gone_since,
        moved_to=update.moved_to,
        moved_since=update.moved_since,
    )


def test_a_failed_fetch_counts_the_error_and_keeps_what_was_known() -> None:
    state = feed_state(error_count=2, last_error="earlier", http_status=503)
    update = decide_update(state, SPEC, failed(503), NOW)
    assert update.outcome is PollOutcome.FAILED
    assert (update.feed_id, update.polled_at) == (7, NOW)
    assert (update.error_count, update.error, update.http_status) == (3, f"{FEED}: HTTP 503", 503)
    assert update.validators == STORED
    assert update.body_hash == body_hash(OLD_BODY)
    assert update.title == "Stored title"
    assert update.last_success == NOW - QUARTER
    assert update.last_full_fetch == NOW - timedelta(hours=1)
    assert update.next_poll == NOW + QUARTER * 2**3
    assert update.new == ()


def test_consecutive_failures_back_off_longer_each_time() -> None:
    state = feed_state()
    delays = []
    for _ in range(8):
        update = decide_update(state, SPEC, failed(None), NOW)
        delays.append(update.next_poll - NOW)
        state = after(state, update)
    assert state.error_count == 8
    assert delays == [QUARTER * 2**n for n in range(1, 7)] + [MAX_BACKOFF, MAX_BACKOFF]


def test_a_longer_retry_after_wins_over_the_back_off_and_a_shorter_one_does_not() -> None:
    longer = decide_update(feed_state(), SPEC, failed(429, timedelta(hours=6)), NOW)
    assert longer.next_poll == NOW + timedelta(hours=6)
    assert longer.http_status == 429
    shorter = decide_update(feed_state(), SPEC, failed(503, timedelta(minutes=1)), NOW)
    assert shorter.next_poll == NOW + 2 * QUARTER  # the back-off after one failure


def test_a_body_that_is_not_a_feed_is_a_failure_with_its_http_status() -> None:
    page = fetched(b"<html>login</html>", Validators(etag='"page"'), status=203)
    message = f"not a feed: {FEED} returned an HTML page"
    update = decide_update(
        feed_state(),
        SPEC,
        NotAFeed(fetched=page, failure=ParseFailed(url=FEED, message=message)),
        NOW,
    )
    assert update.outcome is PollOutcome.FAILED
    assert (update.http_status, update.error, update.error_count) == (203, message, 1)
    # Nothing of the page replaces what a real feed body gave us.
    assert update.validators == STORED
    assert update.body_hash == body_hash(OLD_BODY)
    assert update.last_success == NOW - QUARTER
    assert update.last_full_fetch == NOW - timedelta(hours=1)
    assert update.next_poll == NOW + 2 * QUARTER


def test_a_poll_error_is_a_failure_without_status() -> None:
    update = decide_update(feed_state(error_count=1), SPEC, PollError("KeyError: 'x'"), NOW)
    assert update.outcome is PollOutcome.FAILED
    assert (update.http_status, update.error, update.error_count) == (None, "KeyError: 'x'", 2)
    assert (update.validators, update.last_success) == (STORED, NOW - QUARTER)
    assert update.next_poll == NOW + 4 * QUARTER


def test_not_modified_resets_the_errors_and_keeps_a_validator_not_repeated() -> None:
    state = feed_state(error_count=4, last_error="HTTP 503", http_status=503)
    update = decide_update(
        state, SPEC, NotModified(url=FEED, validators=Validators(etag='"v2"')), NOW
    )
    assert update.outcome is PollOutcome.NOT_MODIFIED
    assert (update.error_count, update.error, update.http_status) == (0, None, 304)
    assert update.validators == Validators(etag='"v2"', last_modified=STORED.last_modified)
    assert update.last_success == NOW
    assert update.last_full_fetch == NOW - timedelta(hours=1)  # no body came
    assert (update.body_hash, update.title) == (body_hash(OLD_BODY), "Stored title")
    assert update.next_poll == NOW + QUARTER
    bare = decide_update(state, SPEC, NotModified(url=FEED), NOW)
    assert bare.validators == STORED


def test_a_known_body_is_a_whole_fetch_that_changes_nothing_else() -> None:
    state = feed_state(last_full_fetch=NOW - timedelta(days=2), error_count=1)
    same = fetched(OLD_BODY, Validators(last_modified="Sat, 28 Nov 2026 05:00:00 GMT"))
    update = decide_update(state, SPEC, BodyUnchanged(fetched=same), NOW)
    assert update.outcome is PollOutcome.UNCHANGED
    assert update.last_full_fetch == NOW
    assert (update.last_success, update.http_status, update.error_count) == (NOW, 200, 0)
    assert update.validators == Validators(
        etag=STORED.etag, last_modified="Sat, 28 Nov 2026 05:00:00 GMT"
    )
    assert update.body_hash == body_hash(OLD_BODY)
    assert update.new == ()


def test_a_new_body_takes_its_validators_hash_and_articles() -> None:
    items = (new_article("e1"), new_article("e2"))
    body = NewBody(
        fetched=fetched(validators=Validators(etag='"v9"')),
        body_hash="hash-9",
        feed_title=None,
        entries=5,
        new=items,
    )
    hourly = FeedSpec(url=FEED, interval=timedelta(hours=1))
    update = decide_update(feed_state(error_count=2, last_error="x"), hourly, body, NOW)
    assert update.outcome is PollOutcome.UPDATED
    # The validators come as a pair with the body: an old Last-Modified is not kept.
    assert update.validators == Validators(etag='"v9"')
    assert update.body_hash == "hash-9"
    assert update.title == "Stored title"  # the feed gave none
    assert update.new == items
    assert (update.last_success, update.last_full_fetch) == (NOW, NOW)
    assert (update.error_count, update.error, update.http_status) == (0, None, 200)
    assert update.next_poll == NOW + timedelta(hours=1)
    titled = decide_update(feed_state(), SPEC, replace(body, feed_title="Le Fil"), NOW)
    assert titled.title == "Le Fil"


@pytest.mark.parametrize(
    ("since_full_fetch", "expected"),
    [
        (timedelta(hours=23), STORED),
        (UNCONDITIONAL_GET_EVERY, STORED),
        (UNCONDITIONAL_GET_EVERY + timedelta(seconds=1), Validators()),
        (timedelta(days=30), Validators()),
    ],
)
def test_validators_are_dropped_a_day_after_the_last_whole_body(
    since_full_fetch: timedelta, expected: Validators
) -> None:
    state = feed_state(last_full_fetch=NOW - since_full_fetch)
    assert validators_to_send(state, NOW) == expected


def test_a_feed_never_fetched_whole_sends_no_validators() -> None:
    assert validators_to_send(feed_state(last_full_fetch=None), NOW) == Validators()


def test_is_known_body_compares_with_the_stored_hash() -> None:
    assert is_known_body(feed_state(), body_hash(OLD_BODY)) is True
    assert is_known_body(feed_state(), body_hash(OLD_BODY + b" ")) is False
    assert is_known_body(feed_state(body_hash=None), body_hash(b"")) is False


SUCCESSES: list[PollResult] = [
    NotModified(url=FEED, validators=Validators(etag='"v2"')),
    BodyUnchanged(fetched=fetched(OLD_BODY)),
    NewBody(
        fetched=fetched(validators=Validators(etag='"v3"')),
        body_hash="h3",
        feed_title="Le Fil",
        entries=1,
        new=(new_article("e1"),),
    ),
]
FAILURES: list[PollResult] = [
    failed(503),
    failed(None),
    failed(429, timedelta(days=3)),
    NotAFeed(fetched=fetched(b"<html>"), failure=ParseFailed(url=FEED, message="not a feed")),
    PollError("bug"),
]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(SUCCESSES + FAILURES),
            st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=2)),
        ),
        max_size=30,
    ),
    st.sampled_from([timedelta(minutes=5), QUARTER, timedelta(days=2)]),
)
def test_any_sequence_of_polls_counts_failures_since_the_last_success(
    polls: list[tuple[PollResult, timedelta]], interval: timedelta
) -> None:
    spec = FeedSpec(url=FEED, interval=interval)
    state = feed_state()
    now = NOW
    failures_in_a_row = 0
    last_success = state.last_success
    first_failure: datetime | None = None
    for result, wait in polls:
        now += wait
        update = decide_update(state, spec, result, now)
        if result in FAILURES:
            failures_in_a_row += 1
            first_failure = first_failure or now
            assert update.outcome is PollOutcome.FAILED
            # A failure changes nothing of what the last good poll gave.
            assert (update.validators, update.body_hash, update.last_full_fetch) == (
                state.validators,
                state.body_hash,
                state.last_full_fetch,
            )
        else:
            failures_in_a_row = 0
            last_success = now
            first_failure = None
        assert update.error_count == failures_in_a_row
        assert update.failing_since == first_failure
        assert update.last_success == last_success
        assert update.polled_at == now
        assert now + interval <= update.next_poll <= now + max(interval, MAX_BACKOFF)
        state = after(state, update)


def test_digest_key_is_right_for_a_now_in_the_configured_zone_during_the_repeated_hour() -> None:
    """Two datetimes with the same tzinfo compare by wall clock: 02:15 of the second pass
    (after clocks went back) is later than the first 02:30, though it reads earlier."""
    paris = ZoneInfo("Europe/Paris")
    second_quarter_past_two = datetime(2026, 10, 25, 2, 15, fold=1, tzinfo=paris)
    first_half_past_two = datetime(2026, 10, 25, 2, 30, tzinfo=paris)
    assert second_quarter_past_two.timestamp() > first_half_past_two.timestamp()
    assert due_digest_key(second_quarter_past_two, paris, time(2, 30)) == "2026-10-25"
    utc_view = second_quarter_past_two.astimezone(UTC)
    assert due_digest_key(utc_view, paris, time(2, 30)) == "2026-10-25"
    assert next_digest_time(second_quarter_past_two, paris, time(2, 30)).date() == date(
        2026, 10, 26
    )


def test_a_body_to_read_again_leaves_neither_validators_nor_hash() -> None:
    # A sitemap whose newest URLs were read while others wait, or a sitemap index.
    body = NewBody(
        fetched=fetched(validators=Validators(etag='"v9"')),
        body_hash="hash-9",
        feed_title=None,
        entries=5,
        new=(new_article("e1"),),
        waiting=4,
        revisit=True,
    )
    update = decide_update(feed_state(), SPEC, body, NOW)
    assert update.outcome is PollOutcome.UPDATED
    assert (update.validators, update.body_hash) == (Validators(), None)
    later = after(feed_state(), update)
    assert validators_to_send(later, NOW + QUARTER) == Validators()
    assert not is_known_body(later, "hash-9")


# --------------------------------------------------------------------------- health inputs


def run_polls(
    results: list[tuple[timedelta, PollResult]], state: FeedState | None = None
) -> tuple[FeedState, list[FeedUpdate]]:
    """Feed `results` to the decider, each `timedelta` after NOW; the state and updates."""
    state = state or feed_state()
    updates = []
    for offset, result in results:
        update = decide_update(state, SPEC, result, NOW + offset)
        updates.append(update)
        state = after(state, update)
    return state, updates


def test_failing_since_is_the_first_failure_of_the_run_and_a_success_clears_it() -> None:
    state, updates = run_polls(
        [
            (timedelta(0), failed(503)),
            (timedelta(hours=1), failed(None)),
            (timedelta(hours=3), failed(500)),
        ]
    )
    assert [update.failing_since for update in updates] == [NOW, NOW, NOW]
    assert state.error_count == 3
    recovered = decide_update(state, SPEC, NotModified(url=FEED), NOW + timedelta(hours=5))
    assert (recovered.failing_since, recovered.error_count) == (None, 0)
    again = decide_update(after(state, recovered), SPEC, failed(503), NOW + timedelta(hours=6))
    assert again.failing_since == NOW + timedelta(hours=6)


def test_a_day_of_404_makes_a_feed_gone_polled_once_a_day() -> None:
    polls: list[tuple[timedelta, PollResult]] = [
        (timedelta(hours=hours), failed(404)) for hours in (0, 1, 6, 12, 23)
    ]
    state, updates = run_polls(polls)
    assert {update.gone_since for update in updates} == {NOW}
    # Under a day: backing off as for any failure.
    assert updates[-1].next_poll < NOW + timedelta(hours=23) + GONE_POLL_EVERY
    day_later = NOW + GONE_AFTER
    gone = decide_update(state, SPEC, failed(410), day_later)
    assert gone.gone_since == NOW
    assert gone.next_poll == day_later + GONE_POLL_EVERY
    # Still polled, once a day, however few failures the back-off would count.
    later = decide_update(after(state, gone), SPEC, failed(404), day_later + GONE_POLL_EVERY)
    assert later.next_poll == day_later + 2 * GONE_POLL_EVERY
    weekly = FeedSpec(url=FEED, interval=timedelta(days=7))
    assert decide_update(state, weekly, failed(404), day_later).next_poll == day_later + timedelta(
        days=7
    )


@pytest.mark.parametrize(
    "interruption",
    [failed(503), NotModified(url=FEED), failed(None), PollError("bug")],
    ids=["503", "304", "timeout", "bug"],
)
def test_anything_but_404_or_410_ends_the_run_of_them(interruption: PollResult) -> None:
    state, _ = run_polls([(timedelta(0), failed(404)), (timedelta(hours=12), interruption)])
    assert state.gone_since is None
    update = decide_update(state, SPEC, failed(404), NOW + timedelta(days=2))
    assert update.gone_since == NOW + timedelta(days=2)
    assert update.next_poll < NOW + timedelta(days=2) + GONE_POLL_EVERY


def moved_body(moved_to: str | None) -> BodyUnchanged:
    return BodyUnchanged(
        fetched=Fetched(
            url=moved_to or FEED, status=200, headers={}, content=OLD_BODY, moved_to=moved_to
        )
    )


def test_a_permanent_redirect_is_recorded_until_a_poll_reaches_the_feed_without_one() -> None:
    new_url = "https://b.example/feed.xml"
    state, updates = run_polls(
        [
            (timedelta(0), moved_body(new_url)),
            (timedelta(hours=1), NotModified(url=new_url, moved_to=new_url)),
            # Timeouts and our own bugs say nothing about redirects: what was known stays.
            (timedelta(hours=2), failed(None)),
            (timedelta(hours=3), PollError("bug")),
            # The new address answers an error after the redirect: it moved all the same.
            (
                timedelta(hours=4),
                replace(failed(500), moved_to=new_url),
            ),
        ]
    )
    assert [(update.moved_to, update.moved_since) for update in updates] == [(new_url, NOW)] * 5
    other = "https://c.example/feed.xml"
    elsewhere = decide_update(state, SPEC, moved_body(other), NOW + timedelta(hours=5))
    assert (elsewhere.moved_to, elsewhere.moved_since) == (other, NOW + timedelta(hours=5))
    for unmoved in (moved_body(None), NotModified(url=FEED), failed(404)):
        update = decide_update(state, SPEC, unmoved, NOW + timedelta(hours=6))
        assert (update.moved_to, update.moved_since) == (None, None), unmoved


# --------------------------------------------------------------------------- what `monitor poll` skips


def test_a_feed_never_polled_or_past_its_time_is_due() -> None:
    assert deferral(None, SPEC, NOW) is None
    assert deferral(feed_state(last_poll=None, next_poll=None), SPEC, NOW) is None
    assert deferral(feed_state(next_poll=NOW), SPEC, NOW) is None
    assert deferral(feed_state(error_count=3, next_poll=NOW - QUARTER), SPEC, NOW) is None


def test_after_the_clock_went_back_every_feed_is_due() -> None:
    backing_off = feed_state(last_poll=NOW, next_poll=NOW + MAX_BACKOFF, error_count=9)
    assert deferral(backing_off, SPEC, NOW - timedelta(hours=2)) is None
    assert deferral(backing_off, SPEC, NOW + timedelta(hours=2)) is not None


def test_a_healthy_feed_waits_for_its_interval_as_configured_now() -> None:
    state = feed_state(last_poll=NOW - timedelta(minutes=5), next_poll=NOW + timedelta(minutes=10))
    wait = deferral(state, SPEC, NOW)
    assert wait is not None and (wait.reason, wait.until) == (
        Wait.NOT_DUE,
        NOW + timedelta(minutes=10),
    )
    shortened = FeedSpec(url=FEED, interval=timedelta(minutes=5))
    assert deferral(state, shortened, NOW) is None


def test_a_failing_feed_backs_off_and_says_so() -> None:
    update = decide_update(feed_state(error_count=2), SPEC, failed(500), NOW)
    state = after(feed_state(error_count=2), update)
    wait = deferral(state, SPEC, NOW + timedelta(minutes=1))
    assert wait is not None
    assert (wait.reason, wait.until, wait.failures) == (Wait.BACKING_OFF, NOW + 8 * QUARTER, 3)
    paris = ZoneInfo("Europe/Paris")
    assert wait.words(paris, NOW) == "backing off until 09:00 after 3 failures"
    assert wait.words(paris) == "backing off until 28 Nov 09:00 after 3 failures"
    assert deferral(state, SPEC, NOW + 8 * QUARTER) is None


def test_a_server_asking_to_wait_is_told_apart_from_the_back_off() -> None:
    update = decide_update(feed_state(), SPEC, failed(503, timedelta(hours=6)), NOW)
    wait = deferral(after(feed_state(), update), SPEC, NOW)
    assert wait is not None and (wait.reason, wait.until) == (
        Wait.RETRY_AFTER,
        NOW + timedelta(hours=6),
    )
    assert wait.words(UTC, NOW) == "Retry-After until 12:00 (the server asked us to wait)"


def test_a_gone_feed_waits_a_day() -> None:
    state, _ = run_polls([(timedelta(0), failed(404)), (GONE_AFTER, failed(404))])
    wait = deferral(state, SPEC, NOW + GONE_AFTER + timedelta(hours=1))
    assert wait is not None
    assert (wait.reason, wait.until) == (Wait.GONE, NOW + GONE_AFTER + GONE_POLL_EVERY)
    assert wait.words(UTC).startswith("gone (404/410 for a day): polled once a day, next at 30 Nov")
