"""Commands that edit the sources in feeds.yaml: add, remove, import and export OPML."""

from __future__ import annotations

import sys
from datetime import UTC
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from monitor.cli.app import EXIT_FAILED, CannotRun, config_option, main, stderr, stdout
from monitor.config import load_config, parse_duration
from monitor.errors import ConfigError, SourceError
from monitor.fetch import Fetcher
from monitor.models import utc_now
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
