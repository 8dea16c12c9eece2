"""A simulated year of clocks: the daemon's digest decision (`service.run_due_digest`,
which asks `schedule.due_digest` and sends), walked in 10-minute steps through a whole year
in three time zones, both DST changes included, against a real SQLite store and outbox
delivery. Exactly one digest per local day with hits, never before its time, none skipped.

The store lives on /dev/shm when it exists (a tmpfs: SQLite's fsyncs cost nothing there,
and thousands of digest runs stay fast); on any other disk the test is the same.
"""

from __future__ import annotations

import email
import email.policy
import tempfile
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from monitor.config import Config, load_config
from monitor.schedule import latest_digest_time, next_digest_time
from monitor.service import run_due_digest
from monitor.store import Store
from tests.stored import record_accord_hit

FEED = "https://news.example.org/feed.xml"
STEP = timedelta(minutes=10)
HIT_EVERY = timedelta(hours=5)  # shorter than any local day, so every day has hits


@pytest.fixture
def fast_dir(tmp_path: Path) -> Iterator[Path]:
    shm = Path("/dev/shm")
    if not (shm.is_dir() and shm.stat().st_mode & 0o002):
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir=shm, prefix="monitor-clocks-") as directory:
        yield Path(directory)


def make_config(directory: Path, zone: str, at: str) -> Config:
    path = directory / "feeds.yaml"
    path.write_text(
        f"""
database: monitor.db
timezone: {zone}
feeds:
  - url: {FEED}
watchlists:
  - name: accord
    query: accord
digest:
  at: "{at}"
  from: monitor@example.org
  to: [analyste@example.org]
  outbox: outbox
""",
        encoding="utf-8",
    )
    return load_config(path)


def store_hit(store: Store, number: int, now: datetime) -> None:
    record_accord_hit(store, number, now, feed_url=FEED)


def due_day(now: datetime, tz: ZoneInfo, at: time) -> str:
    """The local date of the latest scheduled digest time at or before `now`."""
    return latest_digest_time(now, tz, at).astimezone(tz).date().isoformat()


def day_of(key: str, tz: ZoneInfo) -> str:
    """The local date of a digest issue, from its key ``digest@2027-03-28T01:30Z``."""
    instant = datetime.strptime(key.split("@", 1)[1], "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC)
    return instant.astimezone(tz).date().isoformat()


def scheduled(day: date, at: time, tz: ZoneInfo) -> datetime:
    """When the digest of `day` is due, worked out minute by minute, independently of
    `schedule`: the instant the local wall clock shows `at`; at its first pass when the
    autumn change repeats it; when the spring change skips it, as much later as the jump
    (02:30 in a 02:00→03:00 jump is due at 03:30, the rule of PEP 495 and zoneinfo)."""
    instant = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
    while instant.astimezone(tz).date() == day:
        local = instant.astimezone(tz)
        if local.time() >= at:
            if local.time() == at:
                return instant
            jumped_from = (instant - timedelta(minutes=1)).astimezone(tz) + timedelta(minutes=1)
            skipped = datetime.combine(day, at) - datetime.combine(day, jumped_from.time())
            return instant + skipped
        instant += timedelta(minutes=1)
    raise AssertionError(f"{at} never comes on {day} in {tz}")


def transitions(tz: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """The UTC instants at which `tz` changes its offset between `start` and `end`."""
    found = []
    instant = start
    previous = instant.astimezone(tz).utcoffset()
    while instant < end:
        offset = instant.astimezone(tz).utcoffset()
        if offset != previous:
            found.append(instant)
            previous = offset
        instant += timedelta(minutes=30)
    return found


# Local date of a clock change -> when (UTC) its digest must go out.
CHANGE_DAYS = {
    ("Europe/Paris", "02:30"): {"2027-03-28": "01:30", "2027-10-31": "00:30"},
    ("America/New_York", "02:30"): {"2027-03-14": "07:30", "2027-11-07": "07:30"},
    ("America/New_York", "01:30"): {"2027-11-07": "05:30"},
}


YEAR = (date(2027, 1, 1), date(2028, 1, 1))


@pytest.mark.parametrize(
    ("zone", "at", "period", "changes_expected"),
    [
        ("Europe/Paris", "02:30", YEAR, 2),  # skipped in March, repeated in October
        ("America/New_York", "02:30", YEAR, 2),  # skipped in March
        ("Africa/Lome", "02:30", YEAR, 0),  # no DST
        # Repeated in November: six weeks around that change are enough.
        ("America/New_York", "01:30", (date(2027, 10, 20), date(2027, 12, 1)), 1),
    ],
)
def test_a_year_of_ten_minute_steps_sends_one_digest_per_day(
    fast_dir: Path, zone: str, at: str, period: tuple[date, date], changes_expected: int
) -> None:
    config = make_config(fast_dir, zone, at)
    tz, at_time = config.timezone, config.digest.at
    start = datetime.combine(period[0], time(0), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(period[1], time(0), tzinfo=tz).astimezone(UTC)
    changes = transitions(tz, start, end)
    assert len(changes) == changes_expected
    near_change = [(change - timedelta(hours=6), change + timedelta(hours=6)) for change in changes]

    sent: dict[str, datetime] = {}  # key -> the step that delivered it
    hit_times: list[datetime] = []
    previous_key = due_day(start, tz, at_time)
    next_due = next_digest_time(start, tz, at_time)
    calls_left = 0
    with Store(config.database) as store:
        now = start
        next_hit = start
        while now < end:
            if now >= next_hit:
                store_hit(store, len(hit_times), now)
                hit_times.append(now)
                next_hit += HIT_EVERY
            key = due_day(now, tz, at_time)
            # The key moves on exactly when next_digest_time said, never backwards.
            if key != previous_key:
                assert key > previous_key, (now, previous_key, key)
                assert now >= next_due > now - STEP, (now, next_due)
                assert date.fromisoformat(key) == next_due.astimezone(tz).date()
                next_due = next_digest_time(now, tz, at_time)
                calls_left = 3  # the step it became due, and two more that must send nothing
            elif now >= next_due:
                raise AssertionError(f"{now}: {next_due} passed but the key stayed {key}")
            previous_key = key
            if calls_left or any(low <= now <= high for low, high in near_change):
                calls_left = max(calls_left - 1, 0)
                for run in run_due_digest(store, config, config.digest, now=now):
                    if run.delivered and run.hits:
                        day = day_of(run.key, tz)
                        assert day not in sent, f"{day} sent twice: {sent[day]}, {now}"
                        sent[day] = now
            now += STEP
        digests = store._db.read("", "SELECT key, state, sent_at FROM digests ORDER BY key")
        unsent = store._db.read("", "SELECT COUNT(*) FROM hits WHERE digest_key IS NULL")[0][0]

    days = (end - start).days
    first_key = date.fromisoformat(due_day(start, tz, at_time)) + timedelta(days=1)
    expected_keys = [(first_key + timedelta(days=n)).isoformat() for n in range(days)]
    expected_keys = [
        key for key in expected_keys if scheduled(date.fromisoformat(key), at_time, tz) < end
    ]
    assert sorted(sent) == expected_keys  # one per day, none skipped
    assert [row["state"] for row in digests] == ["sent"] * len(expected_keys)
    for key, when in sent.items():
        due = scheduled(date.fromisoformat(key), at_time, tz)
        assert due <= when < due + STEP, f"{key} due {due}, sent {when}"  # never early or late
    # Every hit went out in exactly one message; only those after the last digest wait.
    last_sent = max(sent.values())
    assert unsent == sum(1 for t in hit_times if t >= last_sent)
    messages = [
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        for path in config.digest.outbox.glob("*.eml")
    ]
    assert len(messages) == len(sent)
    assert len({str(message["Message-ID"]) for message in messages}) == len(sent)

    # On the days the clocks change: a skipped time goes out when the clocks jump past it,
    # a repeated one at its first pass, and never again at its second.
    for day, utc_time in CHANGE_DAYS.get((zone, at), {}).items():
        assert sent[day] == datetime.fromisoformat(f"{day}T{utc_time}+00:00")


def test_a_daemon_stopped_for_three_days_sends_one_catch_up_digest(fast_dir: Path) -> None:
    """What the code does: when it starts again, the latest scheduled digest is due and
    claims every hit not yet mailed. The days it missed get no digest of their own, then
    or later (their hits are in the catch-up one)."""
    config = make_config(fast_dir, "Europe/Paris", "07:00")
    digest = config.digest
    monday = datetime(2027, 3, 1, 8, 0, tzinfo=config.timezone)
    with Store(config.database) as store:
        store_hit(store, 0, monday - timedelta(hours=12))
        [first] = run_due_digest(store, config, digest, now=monday)
        assert (first.key, first.hits, first.delivered) == ("digest@2027-03-01T06:00Z", 1, True)
        # Stopped from Monday 08:00 to Friday 09:00; polls stored hits meanwhile (as
        # `monitor poll` from cron would).
        for number, days in enumerate((0.5, 1.5, 2.5, 3.5), start=1):
            store_hit(store, number, monday + timedelta(days=days))
        friday = monday + timedelta(days=4, hours=1)
        runs = run_due_digest(store, config, digest, now=friday)
        assert [(run.key, run.hits, run.delivered) for run in runs] == [
            ("digest@2027-03-05T06:00Z", 4, True)
        ]
        for later in (friday + timedelta(minutes=1), friday + timedelta(hours=3)):
            assert run_due_digest(store, config, digest, now=later) == []
        for missed in ("02", "03", "04"):
            assert not store.digest_done_for(f"digest@2027-03-{missed}T06:00Z")
    assert len(list(config.digest.outbox.glob("*.eml"))) == 2


def test_a_clock_set_back_a_day_sends_nothing_twice(fast_dir: Path) -> None:
    config = make_config(fast_dir, "America/New_York", "07:00")
    digest = config.digest
    now = datetime(2027, 6, 10, 7, 5, tzinfo=config.timezone)
    with Store(config.database) as store:
        store_hit(store, 0, now - timedelta(hours=2))
        [today] = run_due_digest(store, config, digest, now=now)
        assert (today.key, today.hits, today.delivered) == ("digest@2027-06-10T11:00Z", 1, True)
        store_hit(store, 1, now + timedelta(minutes=5))
        back = now - timedelta(days=1)  # the clock jumps back a day: that period is done
        assert run_due_digest(store, config, digest, now=back) == []
        assert run_due_digest(store, config, digest, now=now + timedelta(hours=1)) == []
        tomorrow = now + timedelta(days=1)
        [run] = run_due_digest(store, config, digest, now=tomorrow)
        assert (run.key, run.hits, run.delivered) == ("digest@2027-06-11T11:00Z", 1, True)
    assert len(list(config.digest.outbox.glob("*.eml"))) == 2
