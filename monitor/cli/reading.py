"""Commands that read what monitor found: hits, search, a page's extracted text, why a
watchlist matches an article, and running a watchlist over stored articles."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from monitor.cli.app import (
    EXIT_FAILED,
    EXIT_OK,
    CannotRun,
    config_option,
    format_option,
    load,
    load_for_reading,
    main,
    parse_since,
    read_only_store,
    stdout,
    watchlist_named,
)
from monitor.config import Config
from monitor.digest import by_relevance
from monitor.errors import QuerySyntaxError
from monitor.fetch import Fetcher
from monitor.matching import explain as explain_match
from monitor.models import ArticleText, Fetched, SearchResult, StoredHit, TextSource, utc_now
from monitor.query import parse_query
from monitor.service import backfill as run_backfill
from monitor.service import rescore_hits, search_store
from monitor.store import Store


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
@format_option
@click.pass_context
def hits(
    ctx: click.Context, since: str | None, watchlist: str | None, sort: str, output: str
) -> None:
    """List stored hits, most relevant first; passing mentions are marked."""
    config, recovered = load_for_reading(ctx)
    with read_only_store(config) as store:
        found = store.hits(since=parse_since(since, config.timezone), watchlist=watchlist)
    if watchlist is not None and not found and not recovered:
        watchlist_named(config, watchlist)  # a typo is an error, not an empty list
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
        config = load(ctx)
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
    config = load(ctx)
    chosen = watchlist_named(config, watchlist)
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
    config = load(ctx)
    chosen = watchlist_named(config, watchlist)
    start = parse_since(since, config.timezone)
    with Store(config.database) as store:
        rescore_hits(store, config.watchlists, now=utc_now())
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
@format_option
@click.pass_context
def search(ctx: click.Context, query: str, since: str | None, limit: int, output: str) -> None:
    """Run QUERY (the watchlist language) over the stored articles; record nothing.
    Exit 0 when something matched, 1 when nothing did."""
    config, _ = load_for_reading(ctx)
    try:
        node = parse_query(query, config.sets)
    except QuerySyntaxError as error:
        raise CannotRun(
            f"bad query: {error.message}\n  {query}\n  {' ' * error.offset}^"
        ) from error
    with read_only_store(config) as store:
        run = search_store(store, node, since=parse_since(since, config.timezone))
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
