"""`monitor status`: feeds, watchlists, digests and alert destinations at a glance."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from rich.table import Table

from monitor.cli.app import (
    EXIT_FAILED,
    config_option,
    format_option,
    load_for_reading,
    main,
    read_only_store,
    stdout,
)
from monitor.config import Config, DigestSettings
from monitor.health import FeedHealth, HealthState
from monitor.models import AlertDestinationStatus, FeedSpec, FeedState, WatchlistFailures, utc_now
from monitor.schedule import due_digest, next_digest_time
from monitor.store import Store


@main.command()
@config_option
@format_option
@click.option(
    "--check",
    is_flag=True,
    help="For cron and monitoring: exit 1 when a feed is failing, gone or silent, listing "
    "only those (and moved feeds); print nothing and exit 0 when all is well.",
)
@click.pass_context
def status(ctx: click.Context, output: str, check: bool) -> None:
    """One row per feed (its health, last poll, last success, HTTP status, entries, last
    error), one per digest (last delivery, next time), one per alert destination, then the
    watchlists whose matching failed on some articles."""
    config, recovered = load_for_reading(ctx)
    now = utc_now().astimezone(config.timezone)
    with read_only_store(config) as store:
        states = {state.url: state for state in store.feed_states()}
        # From a broken feeds.yaml: every feed the database knows, under its own title.
        specs = [FeedSpec(url=url) for url in states] if recovered else list(config.feeds)
        healths = store.feed_health(now, specs)
        deliveries = _alert_statuses(config, store)
        digests = [_digest_status(config, digest, store, now) for digest in config.digests]
        failures = store.watchlist_failures(since=now - WATCHLIST_FAILURES_SHOWN)
    alarming = [health for health in healths if health.state in CHECK_FAILS_ON]
    if output == "json":
        click.echo(
            json.dumps(
                {
                    "feeds": [
                        _status_json(spec.url, spec.name, states.get(spec.url), health)
                        for spec, health in zip(specs, healths, strict=True)
                    ],
                    "digests": [status.as_json() for status in digests],
                    "alerts": [_alert_status_json(delivery) for delivery in deliveries],
                    "watchlists_with_errors": [_failures_json(failure) for failure in failures],
                },
                ensure_ascii=False,
                indent=2,
            )
        )
    elif check:
        for health in healths:
            if health.state in CHECK_FAILS_ON or health.moved_to is not None:
                stdout.print(
                    f"{health.state.value.upper()} {health.name}: {health.words}", markup=False
                )
    else:
        _status_table(config, specs, states, healths, digests, deliveries, failures)
    if check and alarming:
        ctx.exit(EXIT_FAILED)


# What `monitor status --check` fails on. A moved feed is still polled through its
# redirect, so it is listed but does not fail the check.
CHECK_FAILS_ON = frozenset({HealthState.FAILING, HealthState.GONE, HealthState.SILENT})


def _status_table(
    config: Config,
    specs: list[FeedSpec],
    states: dict[str, FeedState],
    healths: list[FeedHealth],
    digests: list[_DigestStatus],
    deliveries: list[AlertDestinationStatus],
    failures: list[WatchlistFailures],
) -> None:
    table = Table(title="feeds")
    for column in (
        "feed",
        "health",
        "last poll",
        "last success",
        "HTTP",
        "entries",
        "next poll",
        "last error",
    ):
        table.add_column(column, overflow="fold")

    def local(moment: datetime | None) -> str:
        return moment.astimezone(config.timezone).strftime("%Y-%m-%d %H:%M") if moment else "never"

    for spec, health in zip(specs, healths, strict=True):
        state = states.get(spec.url)
        if state is None:
            table.add_row(spec.name or spec.url, health.words, "never", "never", "", "0", "", "")
            continue
        table.add_row(
            spec.name or state.title or spec.url,
            health.words,
            local(state.last_poll),
            local(state.last_success),
            str(state.http_status or ""),
            str(state.entries),
            local(state.next_poll),
            state.last_error or "",
        )
    stdout.print(table)
    digest_table = Table(title="digests")
    for column in ("digest", "schedule", "to", "last delivery", "next", "waiting"):
        digest_table.add_column(column, overflow="fold")
    for status in digests:
        digest_table.add_row(
            status.name,
            status.schedule,
            ", ".join(status.recipients),
            local(status.last_sent),
            local(status.next_time),
            "unconfirmed, re-sent at the next run" if status.unconfirmed else "",
        )
    stdout.print(digest_table, markup=False)
    if deliveries:
        stdout.print(_alert_table(deliveries, local), markup=False)
    if failures:
        errors = Table(title="Watchlists with errors")
        for column in ("watchlist", "articles failed", "last error", "when", "last article"):
            errors.add_column(column, overflow="fold")
        for failure in failures:
            errors.add_row(
                failure.watchlist,
                str(failure.articles),
                failure.last_error,
                local(failure.last_at),
                failure.last_url or "",
            )
        stdout.print(errors)


# Failures older than this are left out of `status`: they were fixed, or have been seen.
WATCHLIST_FAILURES_SHOWN = timedelta(days=7)


def _failures_json(failure: WatchlistFailures) -> dict[str, Any]:
    return {
        "watchlist": failure.watchlist,
        "articles_failed": failure.articles,
        "last_error": failure.last_error,
        "last_at": failure.last_at.isoformat(),
        "last_url": failure.last_url,
    }


def _status_json(
    url: str, name: str | None, state: FeedState | None, health: FeedHealth
) -> dict[str, Any]:
    def moment(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    described = {
        "state": health.state.value,
        "since": moment(health.since.astimezone(UTC) if health.since else None),
        "failed_polls": health.failed_polls,
        "last_error": health.last_error,
        "moved_to": health.moved_to,
        "usual_gap_seconds": health.usual_gap.total_seconds() if health.usual_gap else None,
        "words": health.words,
    }
    if state is None:
        return {"url": url, "name": name, "polled": False, **described}
    return {
        "url": url,
        "name": name or state.title,
        "polled": state.last_poll is not None,
        "last_poll": moment(state.last_poll),
        "last_success": moment(state.last_success),
        "http_status": state.http_status,
        "entries": state.entries,
        "next_poll": moment(state.next_poll),
        "consecutive_errors": state.error_count,
        **described,
        "error_message": state.last_error,
    }


@dataclass(frozen=True)
class _DigestStatus:
    name: str
    schedule: str
    recipients: tuple[str, ...]
    last_sent: datetime | None
    next_time: datetime
    unconfirmed: bool  # an issue left "sending": re-sent as it was at the next run

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "schedule": self.schedule,
            "to": list(self.recipients),
            "last_sent": self.last_sent.isoformat() if self.last_sent else None,
            "next": self.next_time.isoformat(),
            "unconfirmed": self.unconfirmed,
        }


def _digest_status(
    config: Config, digest: DigestSettings, store: Store, now: datetime
) -> _DigestStatus:
    """When `digest` last went out and when it goes out next: at once when a period is
    due and not done (the daemon sends it within a minute)."""
    known, registered = store.digest_registered(digest.name)
    last_done = store.last_digest_done(digest.name)
    # Not yet seen by the daemon: it registers it at its next minute, so `now` stands in.
    since = registered if known else now
    due = due_digest(now, config.timezone, digest, last_done, registered=since)
    upcoming = now if due else next_digest_time(now, config.timezone, digest.at, digest.every)
    return _DigestStatus(
        name=digest.name,
        schedule=f"{digest.schedule_words} {config.timezone.key}",
        recipients=digest.recipients,
        last_sent=store.last_digest_sent(digest.name),
        next_time=upcoming,
        unconfirmed=store.pending_digest(digest.name) is not None,
    )


def _alert_statuses(config: Config, store: Store) -> list[AlertDestinationStatus]:
    """Every configured destination (never used ones with zero counts), then any other
    that still has deliveries in the database."""
    found = {(status.alert, status.url_key): status for status in store.alert_statuses()}
    listed: list[AlertDestinationStatus] = []
    for alert in config.alerts:
        for destination in alert.destinations:
            status = found.pop((alert.name, destination.key), None)
            listed.append(
                status
                or AlertDestinationStatus(
                    alert=alert.name,
                    url_key=destination.key,
                    destination=destination.shown,
                    pending=0,
                    sent=0,
                    failed=0,
                    last_sent=None,
                    last_error=None,
                    next_attempt=None,
                )
            )
    return listed + list(found.values())


def _alert_table(
    deliveries: list[AlertDestinationStatus], local: Callable[[datetime | None], str]
) -> Table:
    table = Table(title="alerts")
    for column in ("alert", "destination", "last sent", "sent", "pending", "failed", "last error"):
        table.add_column(column, overflow="fold")
    for delivery in deliveries:
        table.add_row(
            delivery.alert,
            delivery.destination,
            local(delivery.last_sent),
            str(delivery.sent),
            str(delivery.pending)
            + (f" (next try {local(delivery.next_attempt)})" if delivery.pending else ""),
            str(delivery.failed),
            delivery.last_error or "",
        )
    return table


def _alert_status_json(delivery: AlertDestinationStatus) -> dict[str, Any]:
    return {
        "alert": delivery.alert,
        "destination": delivery.destination,
        "last_sent": delivery.last_sent.isoformat() if delivery.last_sent else None,
        "sent": delivery.sent,
        "pending": delivery.pending,
        "failed": delivery.failed,
        "next_attempt": delivery.next_attempt.isoformat() if delivery.next_attempt else None,
        "last_error": delivery.last_error,
    }
