"""Commands that run monitor: the daemon, a check of feeds.yaml, one poll, a digest now,
backups and vacuum."""

from __future__ import annotations

import difflib
import json
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from monitor.cli.app import (
    EXIT_FAILED,
    CannotRun,
    config_option,
    end_without_freeing,
    format_option,
    load,
    load_for_reading,
    log,
    main,
    read_only_store,
    running_as_program,
    stderr,
    stdout,
)
from monitor.config import Config, DigestSettings, lint_config
from monitor.errors import MonitorError
from monitor.models import ClaimedDigest, FeedSpec, utc_now
from monitor.pipeline import FeedReport, Pipeline
from monitor.schedule import manual_digest_key
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
    send_alerts,
)
from monitor.store import Store
from monitor.text import human_size


@main.command()
@config_option
@click.pass_context
def run(ctx: click.Context) -> None:
    """Run the daemon: poll feeds on schedule, send the digest daily, reload feeds.yaml on change."""
    from monitor.allocator import restart_without_thread_caches
    from monitor.daemon import run_daemon
    from monitor.workers import limit_malloc_arenas, start_fork_server

    if running_as_program():
        restart_without_thread_caches()  # returns once glibc's thread caches are off
    path: Path = ctx.obj["config_path"]
    # The workers' fork server imports the extraction code and loads its language model
    # (1 to 3 s) on the other core while this process reads feeds.yaml. This thread,
    # which it dies with, lives as long as the daemon.
    start_fork_server()
    load(ctx)  # report config errors before anything starts
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
    end_without_freeing()
    config = load(ctx)
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
@format_option
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
    config = load(ctx)
    reports: list[FeedReport] = []
    alerts: AlertRun | None = None
    with Store(config.database) as store:
        rescore_hits(store, config.watchlists, now=utc_now())
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


@main.command()
@config_option
@click.option(
    "--dry-run", is_flag=True, help="Print the digest instead of sending it; mark nothing."
)
@click.option("--name", "names", multiple=True, help="Only this digest (repeatable).")
@click.pass_context
def digest(ctx: click.Context, dry_run: bool, names: tuple[str, ...]) -> None:
    """Build and deliver every configured digest now, with the hits it has not sent."""
    config = load_for_reading(ctx)[0] if dry_run else load(ctx)
    now = utc_now()
    chosen = [_digest_named(config, name) for name in names] or list(config.digests)
    failed = False
    with read_only_store(config) if dry_run else Store(config.database) as store:
        if not dry_run:
            rescore_hits(store, config.watchlists, now=now)
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
@click.argument("target", type=click.Path(path_type=Path, dir_okay=False))
@click.pass_context
def backup(ctx: click.Context, target: Path) -> None:
    """Copy the database to TARGET consistently, even while the daemon writes to it."""
    config = load(ctx)
    if target.exists():
        raise CannotRun(f"{target} already exists: give a new file name")
    with read_only_store(config) as store:
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
    config = load(ctx)
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
