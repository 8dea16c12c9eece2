"""Pure time policy: when to poll a feed next, and which digest is due.

Nothing here reads the clock; `now` is always passed in (aware datetimes), so
the policy is tested with literal times, DST transitions included.

Digests are keyed by the local calendar date of their scheduled time. The
daemon asks every minute for `due_digest_key(now)`; a key that the store has
not completed is sent. Keying by date instead of using a local-time cron
trigger means that a DST change can neither skip nor double a day (see
RELIABILITY.md §0.6), a daemon that was down at the scheduled time sends the
missed digest as soon as it starts, and a clock that jumps back never sends
the same day twice.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

MAX_BACKOFF = timedelta(hours=24)
MAX_RETRY_AFTER = timedelta(hours=24)


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


def due_digest_key(now: datetime, tz: ZoneInfo, at: time) -> str:
    """The key (local date, ``YYYY-MM-DD``) of the most recent scheduled digest at or before `now`.

    If today's digest time has passed in `tz`, that is today; otherwise
    yesterday's. The caller sends it unless the store says it is done.
    """
    if now.tzinfo is None:
        raise ValueError("due_digest_key needs an aware datetime")
    day = now.astimezone(tz).date()
    # Compare instants, not wall-clock times: on the night clocks go back, 02:30
    # happens twice, and a wall-clock comparison would make the key step back a day.
    if now < _scheduled_instant(day, at, tz):
        day = day - timedelta(days=1)
    return day.isoformat()


def _scheduled_instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    """`at` on `day` in `tz`: the first occurrence of a repeated time; a time in a
    spring-forward gap maps past the gap (zoneinfo's fold=0 rule)."""
    return datetime.combine(day, at).replace(tzinfo=tz)


def next_digest_time(now: datetime, tz: ZoneInfo, at: time) -> datetime:
    """The next instant (aware, in `tz`) at which a new digest becomes due; for logs and `status`."""
    candidate_day = now.astimezone(tz).date()
    while (instant := _scheduled_instant(candidate_day, at, tz)) <= now:
        candidate_day += timedelta(days=1)
    return instant


def manual_digest_key(now: datetime) -> str:
    """Key for a digest requested by hand (`monitor digest`): unique per run, never a date."""
    return "manual-" + now.astimezone(ZoneInfo("UTC")).strftime("%Y%m%dT%H%M%S%fZ")
