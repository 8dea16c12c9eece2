"""Pure policy: what one poll changes, when to poll a feed next, which digest is due.

Nothing here reads the clock or does I/O; `now` is always passed in (aware
datetimes), so the policy is tested with literal values, DST transitions
included.

One poll of one feed ends in a `FeedUpdate`, decided here by `decide_update`
from the stored `FeedState`, what the poll found (`PollResult`), the feed's
spec and `now`, and written by `Store.record` in one transaction::

    FetchFailed, NotAFeed, PollError   failed: error counted, validators and body kept, backed off
    NotModified (304)                  healthy: validators the server repeated replace ours
    BodyUnchanged (200)                healthy, and a whole body came: the daily unconditional
                                       GET is done
    NewBody (200)                      healthy: new validators, body hash and title; its new
                                       entries, articles and hits (neither validators nor
                                       hash when the body must be read again: `revisit`)

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
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from monitor.config.settings import DigestSettings, Every
from monitor.models import (
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


def decide_update(
    state: FeedState, spec: FeedSpec, result: PollResult, now: datetime
) -> FeedUpdate:
    """Every change one poll makes to a feed, as the feed's new values."""
    if isinstance(result, FetchFailed | NotAFeed | PollError):
        if isinstance(result, FetchFailed):
            message, status, retry_after = result.message, result.status, result.retry_after
        elif isinstance(result, NotAFeed):
            message, status, retry_after = result.failure.message, result.fetched.status, None
        else:
            message, status, retry_after = result.message, None, None
        errors = state.error_count + 1
        return FeedUpdate(
            feed_id=state.feed_id,
            outcome=PollOutcome.FAILED,
            polled_at=now,
            next_poll=next_poll_after(
                now, spec.interval, consecutive_errors=errors, retry_after=retry_after
            ),
            http_status=status,
            title=state.title,
            validators=state.validators,
            body_hash=state.body_hash,
            last_success=state.last_success,
            last_full_fetch=state.last_full_fetch,
            error=message,
            error_count=errors,
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
