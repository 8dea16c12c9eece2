"""Each feed's health, in one word and one line: pure, from what the store remembers.

    FeedState (+ FeedHistory: when new entries arrived) + now ─► assess ─► FeedHealth

The states, first match wins:

    gone      the server answered 404 or 410 on every poll for a day (`schedule.GONE_AFTER`);
              the feed is then polled once a day, never dropped
    failing   the last poll failed: since when, how many polls in a row, the error in words
    moved     a permanent redirect (301, 308) was seen: the new URL is shown; the feed is
              still polled through the redirect
    silent    polls succeed but no new entry came for 3 times the feed's usual gap between
              new entries, and at least 2 days (`SILENT_FACTOR`, `SILENT_AT_LEAST`)
    ok        none of these

`needs_attention` says which the digest lists: failing for more than a day, and every
gone, moved or silent feed. `monitor status --check` fails on failing, gone and silent.

Times in a `FeedHealth` are in the zone of the `now` given to `assess`, so the caller
chooses the zone its words are read in.
"""

from __future__ import annotations

import itertools
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from babel.dates import format_timedelta

from monitor.models import FeedState
from monitor.schedule import is_gone

__all__ = [
    "FAILING_NEEDS_ATTENTION_AFTER",
    "MIN_GAPS",
    "SILENT_AT_LEAST",
    "SILENT_FACTOR",
    "FeedHealth",
    "FeedHistory",
    "HealthState",
    "assess",
    "error_words",
    "needs_attention",
    "not_polled",
    "plain_error",
    "usual_gap",
]

SILENT_FACTOR = 3  # silent after this many usual gaps without a new entry ...
SILENT_AT_LEAST = timedelta(days=2)  # ... and never sooner than this
MIN_GAPS = 3  # gaps between arrivals of new entries needed before a usual gap is known
FAILING_NEEDS_ATTENTION_AFTER = timedelta(days=1)


class HealthState(StrEnum):
    OK = "ok"
    FAILING = "failing"
    SILENT = "silent"
    MOVED = "moved"
    GONE = "gone"


@dataclass(frozen=True)
class FeedHistory:
    """What the entries of one feed say about it: the distinct times new entries arrived
    (the polls that stored any), oldest first; `Store.feed_histories` keeps the latest."""

    new_entry_times: tuple[datetime, ...] = ()


@dataclass(frozen=True)
class FeedHealth:
    url: str
    name: str  # configured name, else the feed title, else the URL
    state: HealthState
    since: datetime | None  # when the current problem started
    failed_polls: int  # consecutive failed polls
    last_error: str | None  # in plain words, without the URL or the advice
    moved_to: str | None  # the URL permanent redirects lead to, whatever the state
    usual_gap: timedelta | None  # median gap between new entries, when known
    polled: bool = True  # False for a feed never polled yet

    @property
    def words(self) -> str:
        """One line in plain English, e.g.
        ``"failing since 28 Nov 07:00 (12 polls): the server answered 503 Service Unavailable"``."""
        since = _moment(self.since)
        moved = f"; it moved to {self.moved_to}" if self.moved_to else ""
        if self.state is HealthState.GONE:
            error = self.last_error or "not found"
            return f"gone since {since}: {error}; polled once a day{moved}"
        if self.state is HealthState.FAILING:
            polls = f"{self.failed_polls} poll{'s' if self.failed_polls != 1 else ''}"
            return f"failing since {since} ({polls}): {self.last_error or 'unknown error'}{moved}"
        if self.state is HealthState.MOVED:
            return (
                f"moved to {self.moved_to} (a permanent redirect, seen since {since}); "
                "put the new URL in feeds.yaml"
            )
        if self.state is HealthState.SILENT:
            usual = f" (usually one every {_duration(self.usual_gap)})" if self.usual_gap else ""
            return f"silent: no new entry since {since}{usual}"
        if not self.polled:
            return "not polled yet"
        if self.usual_gap is not None:
            return f"ok, a new entry about every {_duration(self.usual_gap)}"
        return "ok"


def assess(
    state: FeedState, *, name: str | None, now: datetime, history: FeedHistory
) -> FeedHealth:
    """The health of one feed at `now` (aware; its zone is the zone of the result's times).

    `name` is the configured name; None falls back on the feed's title, then its URL.
    """
    zone = now.tzinfo

    def local(moment: datetime | None) -> datetime | None:
        return moment.astimezone(zone) if moment is not None else None

    gap = usual_gap(history.new_entry_times)
    error = plain_error(state.last_error, state.url) if state.last_error else None
    failing = state.error_count > 0
    if failing and state.last_poll is not None and is_gone(state.gone_since, state.last_poll):
        health, since = HealthState.GONE, state.gone_since
    elif failing:
        health, since = HealthState.FAILING, state.failing_since or state.last_poll
    elif state.moved_to is not None:
        health, since = HealthState.MOVED, state.moved_since
    elif (last_new := _silent_since(state, history, gap)) is not None:
        health, since = HealthState.SILENT, last_new
    else:
        health, since = HealthState.OK, None
    return FeedHealth(
        url=state.url,
        name=name or state.title or state.url,
        state=health,
        since=local(since),
        failed_polls=state.error_count,
        last_error=error if failing else None,
        moved_to=state.moved_to,
        usual_gap=gap,
        polled=state.last_poll is not None,
    )


def not_polled(url: str, name: str | None) -> FeedHealth:
    """The health of a configured feed the database knows nothing of yet."""
    return FeedHealth(
        url=url,
        name=name or url,
        state=HealthState.OK,
        since=None,
        failed_polls=0,
        last_error=None,
        moved_to=None,
        usual_gap=None,
        polled=False,
    )


def needs_attention(health: FeedHealth, *, now: datetime) -> bool:
    """What the digest lists: a feed failing for more than a day, gone, moved or silent."""
    if health.state is HealthState.FAILING:
        started = health.since
        if started is not None and now - started > FAILING_NEEDS_ATTENTION_AFTER:
            return True
        return health.moved_to is not None
    return health.state is not HealthState.OK


def usual_gap(times: Sequence[datetime]) -> timedelta | None:
    """The median gap between consecutive distinct `times`; None with fewer than
    `MIN_GAPS` gaps, too few to know a feed's rhythm."""
    distinct = sorted(set(times))
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(distinct)]
    if len(gaps) < MIN_GAPS:
        return None
    return timedelta(seconds=statistics.median(gaps))


def plain_error(message: str, url: str) -> str:
    """The stored error of a poll as a short phrase: the feed's URL and the advice after
    the first ``;`` left out (`monitor status` shows the whole message).

    ``"https://x/feed: the server answered 404 Not Found; check the URL"``
    → ``"the server answered 404 Not Found"``.
    """
    text = message.strip()
    if text.startswith(f"{url}: "):
        text = text[len(url) + 2 :]
    elif text.startswith(f"{url} "):  # "<url> is an HTML page, not a feed; ..."
        text = "the address " + text[len(url) + 1 :]
    text = text.replace(f" {url}:", ":").replace(f" {url}", "")
    if text.startswith("unexpected error ("):
        return "an unexpected error in monitor itself (see its log)"
    return text.split("; ", 1)[0].strip()


def N_(message: str) -> str:  # the name message extractors look for
    """Marks a message for the catalogue; translated where it is used."""
    return message


# The errors a feed's poll stores, in the shapes `plain_error` leaves them
# (URL and advice left out), and the words a digest in another language says them in
# (its catalogue, `monitor/locale`, extracts them from here). What the fetcher or
# parser quotes from elsewhere (an OS or TLS message, a parser's reason) stays as it came;
# an error of any other shape is shown as stored.
_ERROR_PHRASES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), message)
    for pattern, message in (
        (r"the server answered (?P<status>\d{3}[^;]*?) at (?P<url>\S+)",
         N_("the server answered %(status)s at %(url)s")),
        (r"the server answered (?P<status>\d{3}[^;]*?)( \(Retry-After: \d+ s\))?",
         N_("the server answered %(status)s")),
        (r"could not connect to (?P<host>\S+) within (?P<seconds>\S+) s \((?P<error>.*)\)",
         N_("could not connect to %(host)s within %(seconds)s s (%(error)s)")),
        (r"cannot connect to (?P<host>\S+) \((?P<error>.*)\)",
         N_("cannot connect to %(host)s (%(error)s)")),
        (r"(?P<host>\S+) did not send a valid HTTP response \((?P<error>.*)\)",
         N_("%(host)s did not send a valid HTTP response (%(error)s)")),
        (r"the connection to (?P<host>\S+) failed \((?P<error>.*)\)",
         N_("the connection to %(host)s failed (%(error)s)")),
        (r"no complete response within (?P<seconds>\S+) s \(.*\)",
         N_("no complete response within %(seconds)s s")),
        (r"no complete response before its feed's poll\.feed_deadline ran out .*",
         N_("no complete response before the feed's poll.feed_deadline ran out")),
        (r"the body exceeds the (?P<cap>.+) limit \(decoded\)",
         N_("the response is larger than the %(cap)s limit")),
        (r"(the compressed body is corrupt|the body was cut short after \d+ bytes"
         r"|the connection broke while reading the body) \((?P<error>.*)\)",
         N_("the response arrived incomplete or damaged (%(error)s)")),
        (r"redirect loop: .*", N_("the address redirects in a loop")),
        (r"more than (?P<count>\d+) redirects \(last to (?P<url>\S+)\)",
         N_("more than %(count)s redirects (the last to %(url)s)")),
        (r"the address is an HTML page, not a feed", N_("the address is a web page, not a feed")),
        (r"the address (is not an RSS, Atom, RDF or JSON feed|returned an empty body"
         r"|is JSON but not a JSON Feed.*)",
         N_("the address does not serve a feed")),
        (r"(the address is not a readable feed|the address is not well-formed XML"
         r"|could not parse the feed).*",
         N_("the feed cannot be read: it is broken")),
        (r"the address is not (a readable sitemap|a sitemap).*",
         N_("the address does not serve a readable sitemap")),
        (r"an unexpected error in monitor itself \(see its log\)",
         N_("an unexpected error in monitor itself (see its log)")),
    )
)  # fmt: skip


def error_words(error: str, gettext: Callable[[str], str]) -> str:
    """A `plain_error` in the words of ``gettext``'s catalogue, when it has a known shape;
    else as it is."""
    for pattern, message in _ERROR_PHRASES:
        found = pattern.fullmatch(error)
        if found is not None:
            values = {name: value or "" for name, value in found.groupdict().items()}
            return gettext(message) % values
    return error


def _silent_since(state: FeedState, history: FeedHistory, gap: timedelta | None) -> datetime | None:
    """When the last new entry came, if the feed has been silent since; silence is counted
    up to the last successful poll, so a daemon that was stopped makes no feed silent."""
    if gap is None or not history.new_entry_times or state.last_success is None:
        return None
    last_new = max(history.new_entry_times)
    quiet = state.last_success - last_new
    return last_new if quiet >= max(SILENT_FACTOR * gap, SILENT_AT_LEAST) else None


def _moment(moment: datetime | None) -> str:
    return f"{moment.day} {moment:%b %H:%M}" if moment is not None else "an unknown time"


def _duration(span: timedelta) -> str:
    return str(format_timedelta(span, threshold=1.5, locale="en"))
