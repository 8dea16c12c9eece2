"""Pure policy: what one poll changes, when to poll a feed next, which digest is due.

Nothing here reads the clock or does I/O; `now` is always passed in (aware
datetimes), so the policy is tested with literal values, DST transitions
included.

One poll of one feed ends in a `FeedUpdate`, decided here by `decide_update`
from the stored `FeedState`, what the poll found (`PollResult`), the feed's
spec and `now`, and written by `Store.record` in one transaction::

    FetchFailed, NotAFeed, PollError   failed: error counted, validators and body kept, backed off;
                                       after a day of 404/410 answers the feed is gone and
                                       polled once a day from then on
    NotModified (304)                  healthy: validators the server repeated replace ours
    BodyUnchanged (200)                healthy, and a whole body came: the daily unconditional
                                       GET is done
    NewBody (200)                      healthy: new validators, body hash and title; its new
                                       entries, articles and hits (neither validators nor
                                       hash when the body must be read again: `revisit`)

Whatever the outcome, a poll that reached the server records where permanent
redirects (301/308) led, or that there were none: `health` calls such a feed moved.

Each digest has scheduled instants (`every` day, weekday, given weekday or
hour, `at` a local time). Every minute the daemon asks `due_digest(now,
digest, last_done)`: the most recent instant is due when the digest has not
run to the end since it (`Store.last_digest_done`), and its key names the
digest and the instant. Comparing instants with the last run, instead of
using a local-time cron trigger or a date, means that:

* a DST change can neither skip nor double a period (a local 02:30 happens
  twice in autumn and never in spring: the first occurrence, or the instant
  just after the gap, is the one);
* a daemon that was down at the scheduled time sends one catch-up digest, with
  every hit since the last one, as soon as it starts;
* a clock that jumps back never sends the same period twice;
* moving `at` or `every` while the daemon runs takes effect for the next
  period: an instant of the new schedule that falls before the last run is
  not due, so nothing is sent early and no period is skipped.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from zoneinfo import ZoneInfo

from monitor.config.settings import DigestSettings, Every
from monitor.models import (
    BodyUnchanged,
    FeedSpec,
    FeedState,
    FeedUpdate,
    FetchFailed,
    NewBody,
    NotAFeed,
    NotModified,
    PollError,
    PollOutcome,
    PollResult,
    Validators,
)

MAX_BACKOFF = timedelta(hours=24)
MAX_RETRY_AFTER = timedelta(hours=24)
# Some servers answer 304 forever to validators that no longer mean anything (a
# Last-Modified in the future, an ETag shared by every version): a day after the
# last whole body, the request goes out without validators.
UNCONDITIONAL_GET_EVERY = timedelta(hours=24)
# A feed answering 404 or 410 for this long is gone: it is polled once a day from then on,
# never dropped (sites come back, and `monitor status` says so).
GONE_AFTER = timedelta(days=1)
GONE_POLL_EVERY = timedelta(days=1)
GONE_STATUSES = frozenset({404, 410})

# --------------------------------------------------------------------------- polls


def validators_to_send(state: FeedState, now: datetime) -> Validators:
    """The validators for the next request of this feed: the stored ones, unless no
    whole body came back for `UNCONDITIONAL_GET_EVERY`."""
    last_full = state.last_full_fetch
    if last_full is None or now - last_full > UNCONDITIONAL_GET_EVERY:
        return Validators()
    return state.validators


def body_hash(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def is_known_body(state: FeedState, digest: str) -> bool:
    """True when the body whose `body_hash` is `digest` is the one stored: many servers
    ignore conditional requests, and an identical body is not parsed again."""
    return state.body_hash is not None and digest == state.body_hash


def is_gone(gone_since: datetime | None, at: datetime) -> bool:
    """True when a feed answering 404/410 since `gone_since` has done so for `GONE_AFTER` at `at`."""
    return gone_since is not None and at - gone_since >= GONE_AFTER


def _moved(
    state: FeedState, result: PollResult, now: datetime
) -> tuple[str | None, datetime | None]:
    """(moved_to, moved_since) after this poll: what a poll that reached the server saw of
    permanent redirects; what was known before when the poll says nothing about them."""
    match result:
        case NewBody() | BodyUnchanged() | NotAFeed():
            moved_to = result.fetched.moved_to
        case NotModified():
            moved_to = result.moved_to
        case FetchFailed() if result.moved_to is not None or result.status is not None:
            moved_to = result.moved_to
        case _:  # a timeout, a refused connection, a bug of ours: nothing learnt
            return state.moved_to, state.moved_since
    if moved_to is None:
        return None, None
    if moved_to == state.moved_to and state.moved_since is not None:
        return moved_to, state.moved_since
    return moved_to, now


def decide_update(
    state: FeedState, spec: FeedSpec, result: PollResult, now: datetime
) -> FeedUpdate:
    """Every change one poll makes to a feed, as the feed's new values."""
    moved_to, moved_since = _moved(state, result, now)
    if isinstance(result, FetchFailed | NotAFeed | PollError):
        if isinstance(result, FetchFailed):
            message, status, retry_after = result.message, result.status, result.retry_after
        elif isinstance(result, NotAFeed):
            message, status, retry_after = result.failure.message, result.fetched.status, None
        else:
            message, status, retry_after = result.message, None, None
        errors = state.error_count + 1
        failing_since = state.failing_since if state.error_count > 0 else None
        gone_since = (state.gone_since or now) if status in GONE_STATUSES else None
        if is_gone(gone_since, now):
            next_poll = now + max(spec.interval, GONE_POLL_EVERY)
        else:
            next_poll = next_poll_after(
                now, spec.interval, consecutive_errors=errors, retry_after=retry_after
            )
        return FeedUpdate(
            feed_id=state.feed_id,
            outcome=PollOutcome.FAILED,
            polled_at=now,
            next_poll=next_poll,
            http_status=status,
            title=state.title,
            validators=state.validators,
            body_hash=state.body_hash,
            last_success=state.last_success,
            last_full_fetch=state.last_full_fetch,
            error=message,
            error_count=errors,
            failing_since=failing_since or now,
            gone_since=gone_since,
            moved_to=moved_to,
            moved_since=moved_since,
        )
    next_poll = next_poll_after(now, spec.interval)
    if isinstance(result, NewBody):
        # A body to read again is not remembered: no 304, no "unchanged" next time.
        return FeedUpdate(
            feed_id=state.feed_id,
            outcome=PollOutcome.UPDATED,
            polled_at=now,
            next_poll=next_poll,
            http_status=result.fetched.status,
            title=result.feed_title or state.title,
            validators=Validators() if result.revisit else result.fetched.validators,
            body_hash=None if result.revisit else result.body_hash,
            last_success=now,
            last_full_fetch=now,
            error=None,
            error_count=0,
            new=result.new,
            moved_to=moved_to,
            moved_since=moved_since,
        )
    if isinstance(result, NotModified):
        outcome, status, sent = PollOutcome.NOT_MODIFIED, 304, result.validators
        last_full_fetch = state.last_full_fetch
    else:
        outcome, status, sent = (
            PollOutcome.UNCHANGED,
            result.fetched.status,
            result.fetched.validators,
        )
        last_full_fetch = now
    # A validator the server did not repeat keeps its stored value, so a 304
    # without an ETag does not turn the next poll into an unconditional GET.
    return FeedUpdate(
        feed_id=state.feed_id,
        outcome=outcome,
        polled_at=now,
        next_poll=next_poll,
        http_status=status,
        title=state.title,
        validators=Validators(
            etag=sent.etag or state.validators.etag,
            last_modified=sent.last_modified or state.validators.last_modified,
        ),
        body_hash=state.body_hash,
        last_success=now,
        last_full_fetch=last_full_fetch,
        error=None,
        error_count=0,
        moved_to=moved_to,
        moved_since=moved_since,
    )


def next_poll_after(
    now: datetime,
    interval: timedelta,
    *,
    consecutive_errors: int = 0,
    retry_after: timedelta | None = None,
) -> datetime:
    """When a feed should be polled next.

    After a success: one interval. After `n` consecutive failures: the
    interval doubled `n` times, capped at 24 h (a feed is never disabled, it
    is only polled less often). A server's Retry-After is honoured when it
    asks for more than that, capped at 24 h as well.
    """
    if consecutive_errors <= 0:
        delay = interval
    else:
        # Clamp the exponent before multiplying so huge error counts cannot overflow.
        doublings = min(consecutive_errors, 32)
        delay = min(interval * (2**doublings), MAX_BACKOFF)
        delay = max(delay, interval)
    if retry_after is not None:
        clamped = min(max(retry_after, timedelta(0)), MAX_RETRY_AFTER)
        delay = max(delay, clamped)
    return now + delay


class Wait(StrEnum):
    """Why a feed is not polled yet."""

    NOT_DUE = "not_due"  # healthy, its interval has not passed
    BACKING_OFF = "backing_off"  # after failures
    RETRY_AFTER = "retry_after"  # the server asked us to wait
    GONE = "gone"  # a day of 404/410: once a day


@dataclass(frozen=True)
class Deferral:
    """A feed that is not due: until when, and why."""

    until: datetime
    reason: Wait
    failures: int  # consecutive failed polls

    def words(self, tz: tzinfo, now: datetime | None = None) -> str:
        """``"backing off until 14:05 after 3 failures"``: times in `tz`, with the date
        unless it is the date of `now`."""
        local = self.until.astimezone(tz)
        same_day = now is not None and now.astimezone(tz).date() == local.date()
        until = f"{local:%H:%M}" if same_day else f"{local.day} {local:%b %H:%M}"
        failures = f"{self.failures} failure{'s' if self.failures != 1 else ''}"
        if self.reason is Wait.BACKING_OFF:
            return f"backing off until {until} after {failures}"
        if self.reason is Wait.RETRY_AFTER:
            return f"Retry-After until {until} (the server asked us to wait)"
        if self.reason is Wait.GONE:
            return f"gone (404/410 for a day): polled once a day, next at {until}"
        return f"not due until {until}"


def deferral(state: FeedState | None, spec: FeedSpec, now: datetime) -> Deferral | None:
    """Why `monitor poll` leaves this feed for later, or None when it is due now.

    A feed never polled is due, and so is every feed after the clock went back past its
    last poll. A healthy feed is due once its next poll time or its interval as
    configured now (it may have been shortened) has passed; a failing one once its
    back-off, a server's Retry-After, or a gone feed's day has passed.
    """
    if state is None or state.last_poll is None or state.next_poll is None:
        return None
    if state.last_poll > now:  # the clock went back: what was planned means nothing now
        return None
    until = state.next_poll
    if state.error_count == 0:
        until = min(until, state.last_poll + spec.interval)
        return Deferral(until, Wait.NOT_DUE, 0) if until > now else None
    if until <= now:
        return None
    if is_gone(state.gone_since, state.last_poll):
        reason = Wait.GONE
    else:
        backed_off = next_poll_after(
            state.last_poll, spec.interval, consecutive_errors=state.error_count
        )
        asked = state.http_status in (429, 503) and until > backed_off
        reason = Wait.RETRY_AFTER if asked else Wait.BACKING_OFF
    return Deferral(until, reason, state.error_count)


def latest_digest_time(now: datetime, tz: ZoneInfo, at: time, every: Every = "day") -> datetime:
    """The most recent scheduled instant of a digest at or before `now` (aware, in `tz`)."""
    if now.tzinfo is None:
        raise ValueError("latest_digest_time needs an aware datetime")
    if every == "hour":
        local = now.astimezone(tz)
        instant = local.replace(minute=at.minute, second=0, microsecond=0)
        # An hour back in UTC, not on the wall clock: hours repeat or vanish at DST changes.
        while instant.timestamp() > now.timestamp():
            instant = (instant.astimezone(UTC) - timedelta(hours=1)).astimezone(tz)
        return instant
    day = now.astimezone(tz).date()
    # Compare instants, not wall-clock times: on the night clocks go back, 02:30
    # happens twice, and a wall-clock comparison would make the key step back a day.
    # Timestamps, not datetimes: two datetimes with the same tzinfo compare by wall clock,
    # and `now` may carry `tz` itself.
    for _ in range(8):
        if _runs_on(day, every):
            instant = _scheduled_instant(day, at, tz)
            if instant.timestamp() <= now.timestamp():
                return instant
        day -= timedelta(days=1)
    raise AssertionError(f"every {every} runs at least once a week")


def next_digest_time(now: datetime, tz: ZoneInfo, at: time, every: Every = "day") -> datetime:
    """The next instant (aware, in `tz`) at which a new digest becomes due; for logs and `status`."""
    if every == "hour":
        latest = latest_digest_time(now, tz, at, every)
        return (latest.astimezone(UTC) + timedelta(hours=1)).astimezone(tz)
    day = now.astimezone(tz).date()
    while True:
        if _runs_on(day, every):
            instant = _scheduled_instant(day, at, tz)
            if instant.timestamp() > now.timestamp():
                return instant
        day += timedelta(days=1)


def due_digest(
    now: datetime,
    tz: ZoneInfo,
    digest: DigestSettings,
    last_done: datetime | None,
    *,
    registered: datetime | None = None,
) -> str | None:
    """The key of the period of `digest` to send now, or None when none is due.

    Due: the most recent scheduled instant, if the digest has not run to the end since
    (`last_done`, from `Store.last_digest_done`) nor was first seen after it
    (`registered`, from `Store.register_digest`): a digest added on a Tuesday with
    `every: friday` first goes out on Friday. The digest that predates that record
    (`registered` None) and never ran is due at once, as before.
    """
    instant = latest_digest_time(now, tz, digest.at, digest.every)
    for before in (last_done, registered):
        if before is not None and instant.timestamp() <= before.timestamp():
            return None
    return digest_period_key(digest.name, instant)


def digest_period_key(name: str, instant: datetime) -> str:
    """``Matin@2026-12-01T06:00Z``: the digest and its scheduled instant, in UTC."""
    return f"{name}@{instant.astimezone(UTC):%Y-%m-%dT%H:%MZ}"


_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _runs_on(day: date, every: Every) -> bool:
    if every == "day":
        return True
    if every == "weekdays":
        return day.weekday() < 5
    return _WEEKDAYS[day.weekday()] == every


def _scheduled_instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    """`at` on `day` in `tz`: the first occurrence of a repeated time; a time in a
    spring-forward gap maps past the gap (zoneinfo's fold=0 rule, whatever `at.fold`
    says). Returned as a wall time that exists, so arithmetic on it stays true."""
    wall = datetime.combine(day, at.replace(fold=0, tzinfo=None)).replace(tzinfo=tz)
    return wall.astimezone(UTC).astimezone(tz)


def manual_digest_key(name: str, now: datetime) -> str:
    """Key for a digest requested by hand (`monitor digest`): unique per run."""
    return f"{name}@manual-" + now.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")


class DueFeeds:
    """When each feed is next due, earliest first: the daemon's schedule of polls.

    A feed is in it while it waits; `pop_due` takes out the feeds whose time came, and
    the daemon puts each back (`set`) with the next time its poll decided. A heap
    ordered by time, with the current time of each feed beside it: replacing or
    removing a feed leaves its old heap entry behind, skipped when it comes up, so
    every operation is O(log n) whatever the number of feeds.

    Feeds due at the same time come out in the order they were set (at start, the
    order of feeds.yaml), not sorted by URL: sorted, the feeds of one site would come
    out together and wait for each other behind `poll.per_host`.
    """

    def __init__(self) -> None:
        self._when: dict[str, datetime] = {}
        self._heap: list[tuple[datetime, int, str]] = []
        self._order = itertools.count()

    def __contains__(self, url: object) -> bool:
        return url in self._when

    def __len__(self) -> int:
        return len(self._when)

    def when(self, url: str) -> datetime | None:
        """When `url` is due, or None when it is not waiting (being polled, or unknown)."""
        return self._when.get(url)

    def set(self, url: str, when: datetime) -> None:
        """`url` is due at `when` (replacing the time it had)."""
        self._when[url] = when
        heapq.heappush(self._heap, (when, next(self._order), url))

    def remove(self, url: str) -> None:
        self._when.pop(url, None)

    def pop_due(self, now: datetime) -> list[str]:
        """The feeds due at `now`, earliest first, taken out of the schedule."""
        due: list[str] = []
        while self._heap and self._heap[0][0] <= now:
            when, _, url = heapq.heappop(self._heap)
            if self._when.get(url) == when:
                del self._when[url]
                due.append(url)
        return due

    def next_due(self) -> datetime | None:
        """The earliest time a waiting feed is due, or None when none waits."""
        while self._heap and self._when.get(self._heap[0][2]) != self._heap[0][0]:
            heapq.heappop(self._heap)  # replaced or removed since it was pushed
        return self._heap[0][0] if self._heap else None
