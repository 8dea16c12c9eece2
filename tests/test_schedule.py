"""The pure time policy: back-off, Retry-After, and which digest is due, across DST."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.schedule import (
    MAX_BACKOFF,
    due_digest_key,
    manual_digest_key,
    next_digest_time,
    next_poll_after,
)

NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
QUARTER = timedelta(minutes=15)


def test_success_waits_one_interval() -> None:
    assert next_poll_after(NOW, QUARTER) == NOW + QUARTER


@pytest.mark.parametrize(
    ("errors", "expected"),
    [(1, timedelta(minutes=30)), (2, timedelta(hours=1)), (3, timedelta(hours=2)),
     (10, MAX_BACKOFF), (10**9, MAX_BACKOFF)],
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


def test_digest_key_before_and_after_the_time() -> None:
    at = time(7, 0)
    assert due_digest_key(datetime(2026, 11, 28, 6, 59, tzinfo=LOME), LOME, at) == "2026-11-27"
    assert due_digest_key(datetime(2026, 11, 28, 7, 0, tzinfo=LOME), LOME, at) == "2026-11-28"


def test_digest_key_needs_an_aware_time() -> None:
    with pytest.raises(ValueError, match="aware"):
        due_digest_key(datetime(2026, 11, 28, 7, 0), LOME, time(7, 0))


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
    [(BERLIN, "2026-03-29"), (BERLIN, "2026-10-25"), (PACIFIC, "2026-03-08"), (PACIFIC, "2026-11-01")],
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


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)),
       st.sampled_from([LOME, BERLIN, PACIFIC]),
       st.times())
def test_next_digest_time_is_when_the_key_changes(now: datetime, tz: ZoneInfo, at: time) -> None:
    upcoming = next_digest_time(now, tz, at)
    assert now < upcoming <= now + timedelta(days=1, hours=2)
    current = due_digest_key(now, tz, at)
    assert due_digest_key(upcoming - timedelta(microseconds=1), tz, at) == current
    assert due_digest_key(upcoming, tz, at) > current


def test_manual_keys_never_look_like_a_date() -> None:
    key = manual_digest_key(NOW)
    assert key == "manual-20261128T060000000000Z"
    with pytest.raises(ValueError):
        date.fromisoformat(key)
