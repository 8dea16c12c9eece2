"""The `monitor` command line. Commands only parse arguments, call the shared
operations in `service`/`pipeline`, and format the results."""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from monitor import __version__
from monitor.config import (
    Config,
    DigestSettings,
    PollSettings,
    find_config,
    lint_config,
    load_config,
    parse_duration,
    recover_settings,
)
from monitor.digest import by_relevance
from monitor.errors import ConfigError, MonitorError, QuerySyntaxError, SourceError
from monitor.fetch import Fetcher
from monitor.health import FeedHealth, HealthState
from monitor.logs import setup_logging
from monitor.matching import explain as explain_match
from monitor.models import (
    AlertDestinationStatus,
    ArticleText,
    ClaimedDigest,
    FeedSpec,
    FeedState,
    Fetched,
    SearchResult,
    StoredHit,
    TextSource,
    Watchlist,
    WatchlistFailures,
    utc_now,
)
from monitor.pipeline import FeedReport, Pipeline
from monitor.query import parse_query
from monitor.schedule import due_digest, manual_digest_key, next_digest_time
from monitor.service import (
    AlertRun,
    Skipped,
    alert_routes,
    apply_retention,
    compose_digest,
    digest_content,
    health_notices,
    open_pipeline,
    plan_poll,
    rescore_hits,
    run_digest,
    search_store,
    send_alerts,
)
from monitor.service import backfill as run_backfill
from monitor.sources.discover import USUAL_PATHS, Candidate, Discovery, discover
from monitor.sources.edit import FeedsDocument, write_atomically
from monitor.sources.edit import save as save_feeds
from monitor.sources.opml import MAX_OPML_BYTES, read_opml
from monitor.sources.plan import export_opml as export_feeds
from monitor.sources.plan import (
    feed_named,
    plan_addition,
    plan_import,
    plan_removal,
    plan_replacement,
    refuse_known_url,
)
from monitor.store import Store
from monitor.text import human_size

log = logging.getLogger("monitor")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

# Piped output (scripts, logs, tests) gets wide tables so cells are not wrapped mid-value.
_PIPED_WIDTH = None if sys.stdout.isatty() else 240
stdout = Console(highlight=False, markup=False, width=_PIPED_WIDTH)  # feed text is never markup
stderr = Console(stderr=True, highlight=False, markup=False)


def _load(ctx: click.Context) -> Config:
    path: Path = ctx.obj["config_path"]
    _exit_if_no_config(ctx)
    try:
        return load_config(path)
    except ConfigError as error:
        for problem in error.problems:
            stderr.print(problem, markup=False)
        stderr.print(f"{path}: {len(error.problems)} problem(s); nothing was run.", markup=False)
        ctx.exit(EXIT_FAILED)
        raise AssertionError("unreachable") from error


def _exit_if_no_config(ctx: click.Context) -> None:
    """With no -c and no $MONITOR_CONFIG, and no file where monitor looks: say where it looked."""
    looked: tuple[Path, ...] = ctx.obj.get("config_looked", ())
    if len(looked) < 2 or ctx.obj["config_path"].exists():
        return
    stderr.print(
        "no configuration file: looked for "
        + " and ".join(str(place) for place in looked)
        + "; create one there (the bundled feeds.yaml is a commented example), "
        "or give its path with -c PATH or $MONITOR_CONFIG",
        markup=False,
        soft_wrap=True,
    )
    ctx.exit(EXIT_FAILED)


def _load_for_reading(ctx: click.Context) -> tuple[Config, bool]:
    """The configuration for a command that only reads, and whether it is the real one.

    When feeds.yaml has problems, the command still runs on the database the file names
    (`recover_settings`), with the problems and a warning on stderr; the flag is then
    True and the configuration holds no feeds, watchlists or digest settings.
    """
    path: Path = ctx.obj["config_path"]
    _exit_if_no_config(ctx)
    try:
        return load_config(path), False
    except ConfigError as error:
        for problem in error.problems:
            stderr.print(problem, markup=False, soft_wrap=True)
        recovered = recover_settings(path)
        if recovered is None:
            stderr.print(
                f"{path}: {len(error.problems)} problem(s), and it names no database that "
                "could be read instead; nothing was run.",
                markup=False,
                soft_wrap=True,
            )
            ctx.exit(EXIT_FAILED)
            raise AssertionError("unreachable") from error
        stderr.print(
            f"warning: {path} has {len(error.problems)} problem(s) (first: "
            f"{error.problems[0]}); showing {recovered.database} (from {recovered.how}) as it "
            "was last written. A running daemon keeps its last good configuration; fix the "
            "file for it to take the change.",
            markup=False,
            soft_wrap=True,
        )
        fallback = Config(
            path=path.absolute(),
            database=recovered.database,
            timezone=recovered.timezone,
            poll=PollSettings(),
            feeds=(),
            watchlists=(),
            digests=(DigestSettings(),),
        )
        return fallback, True


class CannotRun(click.ClickException):
    """The command could not run (an unknown name, an unreadable file or URL): exit 2."""

    exit_code = EXIT_USAGE


_WEEKS_OR_MONTHS = re.compile(r"(\d+)\s*(w|mo)")


def _since(value: str | None, tz: tzinfo = UTC) -> datetime | None:
    """A start time from a duration back from now (``12h``, ``1d``, ``2w``, ``1mo`` = 30
    days) or an ISO date or date-time (``2026-11-01``: midnight in `tz`)."""
    if value is None:
        return None
    text = value.strip()
    if match := _WEEKS_OR_MONTHS.fullmatch(text):
        days = int(match.group(1)) * (7 if match.group(2) == "w" else 30)
        return utc_now() - timedelta(days=days)
    try:
        return utc_now() - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: use a duration back from now (12h, 1d, 2w, 1mo) or an ISO date "
            "(2026-11-01, 2026-11-01T08:00)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)


def _read_only_store(config: Config) -> Store:
    """The database for a command that only reads: never created, migrated or written."""
    try:
        return Store(config.database, read_only=True)
    except MonitorError as error:
        raise CannotRun(str(error)) from error


def _watchlist_named(config: Config, name: str) -> Watchlist:
    """The configured watchlist called `name`, or a usage error that suggests the closest."""
    for watchlist in config.watchlists:
        if watchlist.name == name:
            return watchlist
    names = [watchlist.name for watchlist in config.watchlists]
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(map(repr, names))}"
    raise CannotRun(f"no watchlist named {name!r} in {config.path}{hint}")


def _config_option_after_command(
    ctx: click.Context, parameter: click.Parameter, value: Path | None
) -> None:
    if value is not None:
        settings = ctx.ensure_object(dict)
        settings["config_path"] = value
        settings["config_looked"] = (value,)


# `-c` is accepted after the command too (`monitor hits -c feeds.yaml`), as users type it.
config_option = click.option(
    "-c",
    "--config",
    type=click.Path(path_type=Path),
    default=None,
    expose_value=False,
    callback=_config_option_after_command,
    help="Configuration file (also accepted before the command).",
)


class _Commands(click.Group):
    """Every error monitor reports is one clear line on stderr and exit 1, never a traceback."""

    def main(self, args: Sequence[str] | None = None, *more: Any, **options: Any) -> Any:
        """Run as the program (``args`` None: read from sys.argv), a command that asked to
        (`_end_without_freeing`) ends the process at once when done, without freeing what
        it built object by object: at 100,000 watchlists, one to three seconds of
        ``monitor check``. Output and exit status are the same."""
        try:
            return super().main(args, *more, **options)
        except SystemExit as done:
            if args is None and _ending_without_freeing and isinstance(done.code, int | None):
                sys.stdout.flush()
                sys.stderr.flush()
                logging.shutdown()
                os._exit(done.code or 0)
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MonitorError as error:
            stderr.print(str(error), markup=False, soft_wrap=True)
            ctx.exit(EXIT_FAILED)


_ending_without_freeing = False


def _end_without_freeing() -> None:
    """Nothing this process built needs freeing before it exits (see `_Commands.main`)."""
    global _ending_without_freeing
    _ending_without_freeing = True


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="monitor")
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help=(
        "Configuration file (default: $MONITOR_CONFIG, else ./feeds.yaml, else "
        "$XDG_CONFIG_HOME/monitor/feeds.yaml, i.e. ~/.config/monitor/feeds.yaml)."
    ),
)
@click.option("-v", "--verbose", is_flag=True, help="Log debug details.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines as text, or as one JSON object each (journald, log shippers).",
)
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, verbose: bool, log_format: str) -> None:
    """Watch news feeds for topics and email a daily digest of the hits."""
    setup_logging(verbose=verbose, log_format=log_format)
    location = find_config(
        config_path, os.environ, cwd=Path.cwd(), home=Path(os.path.expanduser("~"))
    )
    ctx.obj = {"config_path": location.path, "config_looked": location.looked}


@main.command()
@config_option
@click.pass_context
def run(ctx: click.Context) -> None:
    """Run the daemon: poll feeds on schedule, send the digest daily, reload feeds.yaml on change."""
    from monitor.daemon import run_daemon
    from monitor.workers import limit_malloc_arenas, start_fork_server

    path: Path = ctx.obj["config_path"]
    # The workers' fork server imports the extraction code and loads its language model
    # (1 to 3 s) on the other core while this process reads feeds.yaml. This thread,
    # which it dies with, lives as long as the daemon.
    start_fork_server()
    _load(ctx)  # report config errors before anything starts
    # The warnings are worked out while the daemon opens its database and its workers
    # compile the watchlists (at 100,000 watchlists, a second or two each), and logged
    # before any error of the daemon's start.
    limit_malloc_arenas()  # as the daemon does before its threads: this one is the first
    warnings = threading.Thread(target=_log_warnings, args=(path,), name="lint", daemon=True)
    warnings.start()
    try:
        status = run_daemon(path)
    except MonitorError as error:
        warnings.join()
        stderr.print(str(error), markup=False)
        ctx.exit(EXIT_FAILED)
    warnings.join()
    ctx.exit(status)


def _log_warnings(path: Path) -> None:
    for warning in lint_config(path):
        log.warning("%s", warning)


@main.command()
@config_option
@click.option(
    "--strict", is_flag=True, help="Treat warnings (watchlists that look mistyped) as errors."
)
@click.pass_context
def check(ctx: click.Context, strict: bool) -> None:
    """Validate the configuration; exit 1 with every problem listed. Warnings point at
    watchlists that are valid but look mistyped (NEAR5, a lower-case and, a lone stopword)."""
    _end_without_freeing()
    config = _load(ctx)
    warnings = lint_config(config.path)
    for warning in warnings:
        stderr.print(warning, markup=False, soft_wrap=True)
    if strict and warnings:
        stderr.print(
            f"{config.path}: {len(warnings)} warning(s), errors with --strict.",
            markup=False,
            soft_wrap=True,
        )
        ctx.exit(EXIT_FAILED)
    stdout.print(
        f"{config.path}: OK — {len(config.feeds)} feeds, {len(config.watchlists)} watchlists, "
        + "; ".join(
            f"{digest.label} {digest.schedule_words} {config.timezone.key}"
            for digest in config.digests
        )
        + (f", {len(config.alerts)} alerts" if config.alerts else "")
        + (f"; {len(warnings)} warning(s)" if warnings else ""),
        markup=False,
    )


@main.command()
@config_option
@click.option("--format", "output", type=click.Choice(["table", "json"]), default="table")
@click.option(
    "--force",
    is_flag=True,
    help="Poll every feed now, even those backing off, asked to wait (Retry-After) or not due.",
)
@click.pass_context
def poll(ctx: click.Context, output: str, force: bool) -> None:
    """Poll the feeds that are due now: fetch, extract, match, store, send the alerts the
    hits call for; print a summary.

    Feeds backing off after failures, asked to wait by the server (Retry-After), gone
    (polled once a day) or not due yet are listed as skipped, with until when.
    """
    config = _load(ctx)
    reports: list[FeedReport] = []
    alerts: AlertRun | None = None
    with Store(config.database) as store:
        rescore_hits(store, config.watchlists)
        store.set_alert_routes(alert_routes(config))
        due, skipped = plan_poll(store, config.feeds, now=utc_now(), force=force)
        if due:
            with open_pipeline(config, store, clock=utc_now) as pipeline:
                reports = _poll_with_progress(pipeline, due, threads=config.poll.concurrency)
        if config.alerts:
            alerts = send_alerts(store, config, utc_now())
    now = utc_now()
    if output == "json":
        click.echo(json.dumps(_poll_json(config, reports, skipped), ensure_ascii=False, indent=2))
        return
    if reports:
        table = Table(title="poll summary")
        for column in ("feed", "result", "entries", "new", "hits", "feed text", "error"):
            table.add_column(column, overflow="fold")
        for report in reports:
            table.add_row(
                report.name,
                report.outcome.words,
                str(report.entries),
                str(report.new_entries)
                + (f" (+{report.waiting} waiting)" if report.waiting else ""),
                str(report.new_hits),
                str(report.fallbacks),
                report.error or "",
            )
        stdout.print(table)
    for skip in skipped:
        stdout.print(
            f"skipped {skip.name}: {skip.deferral.words(config.timezone, now)}", markup=False
        )
    failed = [report for report in reports if report.outcome == "failed"]
    summary = (
        f"{len(reports)} feeds polled, {len(failed)} failed, "
        f"{sum(r.new_entries for r in reports)} new entries, "
        f"{sum(r.new_hits for r in reports)} new hits"
    )
    if skipped:
        summary += f"; {len(skipped)} skipped (`monitor poll --force` polls them now)"
    stdout.print(summary, markup=False)
    if alerts is not None:
        stdout.print(f"alerts: {alerts.describe()}", markup=False)


def _poll_json(
    config: Config, reports: list[FeedReport], skipped: list[Skipped]
) -> list[dict[str, Any]]:
    """One object per configured feed, polled or skipped, in configuration order."""
    rows: dict[str, dict[str, Any]] = {}
    for report in reports:
        fields = {**report.log_fields(), "entries": report.entries}
        fields.pop("event")
        rows[report.url] = {**fields, "skipped_until": None, "skip_reason": None}
    for skip in skipped:
        rows[skip.spec.url] = {
            "feed": skip.name,
            "url": skip.spec.url,
            "outcome": "skipped",
            "status": None,
            "new_entries": 0,
            "new_hits": 0,
            "error": None,
            "moved_to": skip.moved_to,
            "entries": 0,
            "skipped_until": skip.deferral.until.isoformat(),
            "skip_reason": skip.deferral.reason.value,
        }
    return [rows[spec.url] for spec in config.feeds if spec.url in rows]


def _poll_with_progress(
    pipeline: Pipeline, specs: list[FeedSpec], *, threads: int
) -> list[FeedReport]:
    """Poll `specs`, with a progress bar on stderr when it is a terminal."""
    if not stderr.is_terminal:
        return pipeline.poll_all(specs, threads=threads)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
    ) as progress:
        task = progress.add_task("polling", total=len(specs))
        return pipeline.poll_all(
            specs, threads=threads, on_done=lambda _report: progress.advance(task)
        )


def _hit_json(hit: StoredHit) -> dict[str, Any]:
    return {
        "watchlist": hit.watchlist,
        "title": hit.title,
        "url": hit.url,
        "feed": hit.feed,
        "published": hit.published.isoformat() if hit.published else None,
        "found_at": hit.found_at.isoformat(),
        "matched": list(hit.matched),
        "snippet": hit.snippets[0] if hit.snippets else "",
        "snippets": list(hit.snippets),
        "backfilled": hit.backfilled,
        "relevance": hit.relevance,
        "in_passing": hit.in_passing,
        "evidence": hit.evidence,
        "also_in": [
            {"feed": copy.feed, "url": copy.url, "title": copy.title} for copy in hit.also_in
        ],
    }


@main.command()
@config_option
@click.option(
    "--since",
    default=None,
    help="Only hits found since then: 12h, 1d, 2w, 1mo (30 days) back, or an ISO date.",
)
@click.option("--watchlist", default=None, help="Only this watchlist's hits.")
@click.option(
    "--sort",
    type=click.Choice(["relevance", "date"]),
    default="relevance",
    show_default=True,
    help="Most relevant first (then newest), or newest first.",
)
@click.option("--format", "output", type=click.Choice(["table", "json"]), default="table")
@click.pass_context
def hits(
    ctx: click.Context, since: str | None, watchlist: str | None, sort: str, output: str
) -> None:
    """List stored hits, most relevant first; passing mentions are marked."""
    config, recovered = _load_for_reading(ctx)
    with _read_only_store(config) as store:
        found = store.hits(since=_since(since, config.timezone), watchlist=watchlist)
    if watchlist is not None and not found and not recovered:
        _watchlist_named(config, watchlist)  # a typo is an error, not an empty list
    if sort == "relevance":
        found = sorted(found, key=by_relevance)
    if output == "json":
        click.echo(json.dumps([_hit_json(hit) for hit in found], ensure_ascii=False, indent=2))
        return
    table = Table(title=f"{len(found)} hits")
    for column in ("found", "watchlist", "relevance", "title", "feed", "matched"):
        table.add_column(column, overflow="fold")
    for hit in found:
        table.add_row(
            hit.found_at.astimezone(config.timezone).strftime("%Y-%m-%d %H:%M"),
            hit.watchlist,
            _relevance_cell(hit),
            hit.title,
            hit.feed,
            ", ".join(hit.matched),
        )
    stdout.print(table)


def _relevance_cell(hit: StoredHit) -> str:
    if hit.relevance is None:
        return "?"
    return f"{hit.relevance:.2f}" + (" in passing" if hit.in_passing else "")


@main.command()
@config_option
@click.option(
    "--dry-run", is_flag=True, help="Print the digest instead of sending it; mark nothing."
)
@click.option("--name", "names", multiple=True, help="Only this digest (repeatable).")
@click.pass_context
def digest(ctx: click.Context, dry_run: bool, names: tuple[str, ...]) -> None:
    """Build and deliver every configured digest now, with the hits it has not sent."""
    config = _load_for_reading(ctx)[0] if dry_run else _load(ctx)
    now = utc_now()
    chosen = [_digest_named(config, name) for name in names] or list(config.digests)
    failed = False
    with _read_only_store(config) if dry_run else Store(config.database) as store:
        for settings in chosen:
            if dry_run:
                _preview_digest(store, config, settings, now=now, several=len(chosen) > 1)
                continue
            # Wait for a delivery the daemon may have under way: its whole session is bounded.
            wait = (settings.smtp.timeout if settings.smtp else 0.0) + 10.0
            key = manual_digest_key(settings.name, now)
            runs = run_digest(store, config, settings, key=key, now=now, wait=wait)
            if not runs:
                stdout.print(f"digest {settings.name}: no new hits: nothing sent", markup=False)
            for digest_run in runs:
                stdout.print(f"digest {digest_run.key}: {digest_run.description}", markup=False)
            failed |= any(run.busy or (not run.delivered and run.hits) for run in runs)
    if failed:
        ctx.exit(EXIT_FAILED)


def _digest_named(config: Config, name: str) -> DigestSettings:
    found = config.digest_named(name)
    if found is not None:
        return found
    known = [digest.name for digest in config.digests]
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    raise click.UsageError(f'no digest is named "{name}"{hint}; configured: {", ".join(known)}')


def _preview_digest(
    store: Store, config: Config, settings: DigestSettings, *, now: datetime, several: bool
) -> None:
    if several:
        click.echo(f"===== digest {settings.name} =====")
    stuck = store.pending_digest(settings.name)
    if stuck is not None:
        stdout.print(
            f"digest {stuck.key} ({len(stuck.hits)} hits) was interrupted before its "
            "delivery was confirmed: a real run sends it again first, unchanged",
            markup=False,
        )
    preview = store.preview_digest(
        now=now, name=settings.name, watchlists=settings.watchlists or None
    )
    covers_from = store.last_digest_sent(settings.name)
    notices = health_notices(store, config, settings, now=now)
    if preview is None and not notices:
        stdout.print(
            f"digest {settings.name}: no unsent hits: a digest now would send nothing",
            markup=False,
        )
        return
    if preview is None:  # only sources that need attention: a real run reports them
        preview = ClaimedDigest("preview", "<preview@monitor.local>", (), now, 0)
    content = digest_content(
        config, settings, preview, now=now, covers_from=covers_from, notices=notices
    )
    message = compose_digest(config, settings, preview, now=now, content=content)
    body = message.get_body(preferencelist=("plain",))
    click.echo(f"Subject: {message['Subject']}\nTo: {message['To']}\n")
    click.echo(body.get_content() if body is not None else message.as_string())


@main.command()
@config_option
@click.option("--format", "output", type=click.Choice(["table", "json"]), default="table")
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
    config, recovered = _load_for_reading(ctx)
    now = utc_now().astimezone(config.timezone)
    with _read_only_store(config) as store:
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


def _read_article(source: str, config: Config | None) -> ArticleText:
    """Fetch or read an article exactly as polling would see it."""
    if source == "-":
        data = sys.stdin.buffer.read()
        return _article_from_bytes(data, url=None)
    if source.startswith(("http://", "https://")):
        with Fetcher(config.poll) if config is not None else Fetcher() as fetcher:
            # The user typed this URL: trust it as we trust a configured feed.
            result = fetcher.fetch_page(source, feed_url=source)
        if not isinstance(result, Fetched):
            raise CannotRun(getattr(result, "message", f"{source}: not fetched"))
        from monitor.extract import extract_article  # trafilatura: only when extracting

        return extract_article(result.content, url=result.url)
    path = Path(source)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CannotRun(f"{path}: cannot read ({error.strerror})") from error
    return _article_from_bytes(data, url=None)


def _article_from_bytes(data: bytes, *, url: str | None) -> ArticleText:
    head = data[:2048].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")) or b"<body" in data[:65536].lower():
        from monitor.extract import extract_article  # trafilatura: only when extracting

        return extract_article(data, url=url)
    text = data.decode("utf-8", errors="replace").strip()
    return ArticleText(
        url=url, title="", text=text, source=TextSource.PAGE, note="plain text read as is"
    )


@main.command()
@config_option
@click.argument("source")
@click.pass_context
def extract(ctx: click.Context, source: str) -> None:
    """Print the title and full text of a URL or HTML file, as the pipeline extracts them."""
    config = None
    with_config: Path = ctx.obj["config_path"]
    if with_config.exists():
        config = _load(ctx)
    article = _read_article(source, config)
    click.echo(f"Title: {article.title}")
    click.echo(f"Language: {article.language or 'unknown'}")
    click.echo(f"Source: {article.source.value}" + (f" ({article.note})" if article.note else ""))
    click.echo("")
    click.echo(article.text)


@main.command()
@config_option
@click.argument("watchlist")
@click.argument("source")
@click.pass_context
def explain(ctx: click.Context, watchlist: str, source: str) -> None:
    """Say whether WATCHLIST matches SOURCE (URL, file or -) and why; exit 0 on match, 1 otherwise."""
    config = _load(ctx)
    chosen = _watchlist_named(config, watchlist)
    article = _read_article(source, config)
    result = explain_match(chosen, article)
    click.echo(f"{'MATCH' if result.matched else 'NO MATCH'}: {chosen.name}")
    for line in result.lines:
        click.echo(f"  {line}")
    if result.hit is not None:
        hit = result.hit
        judged = "in passing" if hit.in_passing else "a main hit"
        click.echo(f"  relevance: {hit.relevance:.2f}, {judged}: {hit.evidence}")
        for snippet in hit.snippets:
            click.echo(f"  > {snippet}")
    ctx.exit(EXIT_OK if result.matched else EXIT_FAILED)


@main.command()
@config_option
@click.argument("watchlist")
@click.option(
    "--since",
    default="30d",
    show_default=True,
    help="Only articles first seen since then: 12h, 1d, 2w, 1mo back, or an ISO date.",
)
@click.option("--quiet", is_flag=True, help="Record the hits but leave them out of the digest.")
@click.pass_context
def backfill(ctx: click.Context, watchlist: str, since: str, quiet: bool) -> None:
    """Run WATCHLIST over stored articles and record the hits it finds (flagged as backfilled)."""
    config = _load(ctx)
    chosen = _watchlist_named(config, watchlist)
    start = _since(since, config.timezone)
    with Store(config.database) as store:
        rescore_hits(store, config.watchlists)
        scanned, added = run_backfill(store, chosen, since=start, now=utc_now(), quiet=quiet)
        dropped = store.dropped_text_count(start)
    where = "left out of digests" if quiet else "listed in the next digest"
    skipped = (
        f"; {dropped} articles skipped, their text dropped by retention.article_text"
        if dropped
        else ""
    )
    stdout.print(
        f"{chosen.name}: {scanned} articles scanned, {added} new hits ({where}){skipped}",
        markup=False,
    )


@main.command()
@config_option
@click.argument("query")
@click.option(
    "--since",
    default=None,
    help="Only articles first seen since then: 12h, 1d, 2w, 1mo back, or an ISO date "
    "(default: every stored article).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Show at most this many articles, the most relevant first.",
)
@click.option("--format", "output", type=click.Choice(["table", "json"]), default="table")
@click.pass_context
def search(ctx: click.Context, query: str, since: str | None, limit: int, output: str) -> None:
    """Run QUERY (the watchlist language) over the stored articles; record nothing.
    Exit 0 when something matched, 1 when nothing did."""
    config, _ = _load_for_reading(ctx)
    try:
        node = parse_query(query, config.sets)
    except QuerySyntaxError as error:
        raise CannotRun(
            f"bad query: {error.message}\n  {query}\n  {' ' * error.offset}^"
        ) from error
    with _read_only_store(config) as store:
        run = search_store(store, node, since=_since(since, config.timezone))
    shown = run.results[:limit]
    if output == "json":
        click.echo(
            json.dumps([_search_json(result) for result in shown], ensure_ascii=False, indent=2)
        )
    else:
        table = Table(title=f"{len(run.results)} articles match {query}")
        for column in ("date", "feed", "title", "relevance", "matched"):
            table.add_column(column, overflow="fold")
        for result in shown:
            stored, hit = result.stored, result.hit
            when = stored.article.published or stored.first_seen
            table.add_row(
                when.astimezone(config.timezone).strftime("%Y-%m-%d %H:%M"),
                stored.feed,
                stored.article.title
                + (" (title only: text dropped)" if stored.text_dropped_at else ""),
                f"{hit.relevance:.2f}" + (" in passing" if hit.in_passing else ""),
                ", ".join(hit.matched),
            )
        stdout.print(table)
        how = "through the search index" if run.used_index else "one by one (no index expression)"
        more = f"; showing the first {limit} (--limit)" if len(run.results) > limit else ""
        stdout.print(
            f"{len(run.results)} matching articles, {run.read} read {how}{more}", markup=False
        )
    ctx.exit(EXIT_OK if run.results else EXIT_FAILED)


def _search_json(result: SearchResult) -> dict[str, Any]:
    stored, hit = result.stored, result.hit
    return {
        "title": stored.article.title,
        "url": stored.article.url,
        "feed": stored.feed,
        "published": stored.article.published.isoformat() if stored.article.published else None,
        "first_seen": stored.first_seen.isoformat(),
        "relevance": hit.relevance,
        "in_passing": hit.in_passing,
        "evidence": hit.evidence,
        "matched": list(hit.matched),
        "clauses": [
            {"clause": clause.clause, "words": list(clause.words), "field": clause.field}
            for clause in hit.clauses
        ],
        "snippets": list(hit.snippets),
        "text_dropped": stored.text_dropped_at is not None,
    }


@main.command()
@config_option
@click.argument("target", type=click.Path(path_type=Path, dir_okay=False))
@click.pass_context
def backup(ctx: click.Context, target: Path) -> None:
    """Copy the database to TARGET consistently, even while the daemon writes to it."""
    config = _load(ctx)
    if target.exists():
        raise CannotRun(f"{target} already exists: give a new file name")
    with _read_only_store(config) as store:
        try:
            store.backup(target)
        except MonitorError as error:
            target.unlink(missing_ok=True)
            raise CannotRun(str(error)) from error
    stdout.print(
        f"{config.database} copied to {target} ({human_size(target.stat().st_size)})",
        markup=False,
    )


@main.command()
@config_option
@click.pass_context
def vacuum(ctx: click.Context) -> None:
    """Apply retention, then rebuild the database file compactly, returning deleted rows'
    space to the disk."""
    config = _load(ctx)
    before = config.database.stat().st_size if config.database.exists() else 0
    with Store(config.database) as store:
        try:
            dropped = apply_retention(store, config, now=utc_now())
            store.optimize_search_index()
            store.vacuum()
        except MonitorError as error:
            stderr.print(str(error), markup=False)
            ctx.exit(EXIT_FAILED)
    after = config.database.stat().st_size
    if config.retention.article_text is not None:
        stdout.print(
            f"retention: the text of {dropped} more articles dropped "
            f"(kept {config.retention.article_text.days} days)",
            markup=False,
        )
    stdout.print(f"{config.database}: {human_size(before)} → {human_size(after)}", markup=False)


# ---------------------------------------------------------------------------- sources


def _feeds_document(ctx: click.Context) -> FeedsDocument:
    try:
        return FeedsDocument.read(ctx.obj["config_path"])
    except SourceError as error:
        raise CannotRun(str(error)) from error


def _discovery_fetcher(path: Path) -> Fetcher:
    """A fetcher with the configured limits when the file loads, else the defaults."""
    try:
        return Fetcher(load_config(path).poll)
    except ConfigError:
        return Fetcher()


def _save_edit(document: FeedsDocument, new_text: str) -> None:
    """Write the edit, or print the problems it would cause and exit 1 (nothing changed)."""
    try:
        report = save_feeds(document, new_text)
    except ConfigError as error:
        for problem in error.problems:
            stderr.print(problem, markup=False, soft_wrap=True)
        stderr.print(
            f"{document.path}: the change would leave {len(error.problems)} problem(s); "
            "the file was not changed",
            markup=False,
        )
        raise click.exceptions.Exit(EXIT_FAILED) from error
    except SourceError as error:
        raise CannotRun(str(error)) from error
    if report.remaining_problems:
        stderr.print(
            f"note: {document.path} still has {len(report.remaining_problems)} problem(s) it had "
            "before this change; run monitor check",
            markup=False,
        )


def _candidates_table(discovery: Discovery, document: FeedsDocument) -> Table:
    table = Table(title=f"found from {discovery.url}")
    for column in ("#", "title", "entries", "latest entry (UTC)", "url", "found by"):
        table.add_column(column, overflow="fold")
    for number, candidate in enumerate(discovery.candidates, start=1):
        latest = (
            candidate.latest.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if candidate.latest else ""
        )
        title = candidate.title or ""
        if candidate.kind == "sitemap" and not title:
            title = "(sitemap)"
        configured = document.same_url(candidate.url)
        if configured is not None:
            title += f" [already configured: {configured.name or configured.url}]"
        # Text, not markup: a feed's title may hold "[...]".
        table.add_row(
            str(number),
            Text(title),
            str(candidate.entries),
            latest,
            Text(candidate.url),
            Text(candidate.found_by),
        )
    return table


def _choose(discovery: Discovery, pick: int | None) -> Candidate:
    found = discovery.candidates
    if not found:
        tried = "".join(f"\n  - {note}" for note in discovery.notes[:12])
        raise CannotRun(
            f'no feed found from {discovery.url}: no <link rel="alternate"> feed, none of '
            f"{', '.join(USUAL_PATHS)}, no sitemap in robots.txt. Tried:{tried}\n"
            "Look for an RSS or Atom link on the site and give its address."
        )
    if pick is not None:
        if pick > len(found):
            raise CannotRun(f"--pick {pick}: only {len(found)} found; choose 1 to {len(found)}")
        return found[pick - 1]
    if len(found) > 1:
        raise CannotRun(
            f"{len(found)} feeds found: run again with --pick N to choose one (numbers above)"
        )
    return found[0]


def _check_interval(
    ctx: click.Context, parameter: click.Parameter, value: str | None
) -> str | None:
    if value is None:
        return None
    try:
        parse_duration(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    return value.strip()


@main.command()
@config_option
@click.argument("url")
@click.option("--name", default=None, help="The feed's name (default: the feed's own title).")
@click.option("--interval", default=None, callback=_check_interval, help="Poll interval, e.g. 30m.")
@click.option("--tag", "tags", multiple=True, help="A tag for the feed (repeat for several).")
@click.option(
    "--pick", type=click.IntRange(min=1), default=None, help="Which of several found feeds to add."
)
@click.option(
    "--replace",
    "replace",
    default=None,
    metavar="NAME_OR_URL",
    help="Give this configured feed the new URL instead (it moved); its other keys stay.",
)
@click.pass_context
def add(
    ctx: click.Context,
    url: str,
    name: str | None,
    interval: str | None,
    tags: tuple[str, ...],
    pick: int | None,
    replace: str | None,
) -> None:
    """Add the feed at URL, or found from any page of a site, to feeds.yaml."""
    path: Path = ctx.obj["config_path"]
    document = _feeds_document(ctx)
    if replace is not None and (name or interval or tags):
        raise CannotRun("--replace keeps the feed's name, interval and tags: give only the URL")
    try:
        # Reported before any request: an unknown name, a URL already configured.
        if replace is not None:
            feed_named(document, replace)
        else:
            refuse_known_url(document, url)
        with _discovery_fetcher(path) as fetcher:
            discovery = discover(url, fetcher)
    except SourceError as error:
        raise CannotRun(str(error)) from error
    if discovery.candidates:
        stdout.print(_candidates_table(discovery, document))
    chosen = _choose(discovery, pick)
    try:
        if replace is not None:
            target, new_text = plan_replacement(document, replace, chosen)
            _save_edit(document, new_text)
            stdout.print(
                f"{path}: {target.label} now reads {chosen.url} (line {target.line}); "
                "a running daemon picks the change up within seconds",
                markup=False,
            )
            return
        new = plan_addition(document, chosen, name=name, interval=interval, tags=tags)
        _save_edit(document, document.with_added([new]))
    except SourceError as error:
        raise CannotRun(str(error)) from error
    kind = " (as a sitemap: type: sitemap)" if new.type == "sitemap" else ""
    shown = f'"{new.name}" ' if new.name else ""
    stdout.print(
        f"{path}: added {shown}{new.url}{kind}; a running daemon picks it up within seconds",
        markup=False,
    )


@main.command()
@config_option
@click.argument("feed", metavar="NAME|URL")
@click.pass_context
def remove(ctx: click.Context, feed: str) -> None:
    """Remove a feed from feeds.yaml, by its name or URL (any spelling of it)."""
    document = _feeds_document(ctx)
    try:
        target, new_text = plan_removal(document, feed)
    except SourceError as error:
        raise CannotRun(str(error)) from error
    _save_edit(document, new_text)
    stdout.print(
        f"{document.path}: removed {target.label} (was at line {target.line}); its articles "
        "and hits stay in the database",
        markup=False,
    )


@main.command("import-opml")
@config_option
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Say what would be added; change nothing.")
@click.pass_context
def import_opml(ctx: click.Context, file: Path, dry_run: bool) -> None:
    """Add the feeds of an OPML export (Feedly, Inoreader, Miniflux, FreshRSS, ...) to feeds.yaml."""
    document = _feeds_document(ctx)
    try:
        with file.open("rb") as handle:
            data = handle.read(MAX_OPML_BYTES + 1)
        plan = plan_import(document, read_opml(data, source=str(file)))
    except OSError as error:
        raise CannotRun(f"{file}: cannot read it ({error.strerror or error})") from error
    except SourceError as error:
        raise CannotRun(str(error)) from error
    if plan.added and not dry_run:
        _save_edit(document, document.with_added(plan.added))
    verb = "would add" if dry_run else "added"
    stdout.print(f"{document.path}: {verb} {len(plan.added)} feed(s)", markup=False)
    for new in plan.added:
        tagged = f"  [{', '.join(new.tags)}]" if new.tags else ""
        stdout.print(f"  + {new.name} ({new.url}){tagged}", markup=False)
    if plan.duplicates:
        stdout.print(f"skipped {len(plan.duplicates)} duplicate(s):", markup=False)
        for duplicate in plan.duplicates:
            stdout.print(f"  = {duplicate}", markup=False)
    if plan.skipped:
        stdout.print(f"skipped {len(plan.skipped)} outline(s) that are not feeds:", markup=False)
        for skipped in plan.skipped:
            stdout.print(f"  - {skipped}", markup=False)


@main.command("export-opml")
@config_option
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False), required=False)
@click.pass_context
def export_opml(ctx: click.Context, file: Path | None) -> None:
    """Write the configured feeds as OPML 2.0 to FILE (default: standard output)."""
    document = _feeds_document(ctx)
    data = export_feeds(document, created=utc_now())
    if file is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        write_atomically(file, data)
    except OSError as error:
        raise CannotRun(f"{file}: cannot write it ({error.strerror or error})") from error
    stderr.print(f"{len(document.feeds)} feeds written to {file}", markup=False)
