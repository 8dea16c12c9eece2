"""Decide what an add, a replace, a removal or an import does to feeds.yaml: pure rules
over a `FeedsDocument`, returning the new text or a `SourceError` that says why not."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from monitor.errors import SourceError
from monitor.sources.discover import Candidate
from monitor.sources.edit import ConfiguredFeed, FeedsDocument, NewFeed
from monitor.sources.opml import OpmlFeed, OpmlList, write_opml
from monitor.sources.urls import canonical_url
from monitor.text import one_line

__all__ = [
    "ImportPlan",
    "export_opml",
    "feed_named",
    "plan_addition",
    "plan_import",
    "plan_removal",
    "plan_replacement",
    "refuse_known_url",
]

MAX_NAME_CHARS = 200


def feed_named(document: FeedsDocument, name_or_url: str) -> ConfiguredFeed:
    """The feed called `name_or_url` (or at that URL); a usage error with a suggestion if none."""
    found = document.find(name_or_url)
    if found is not None:
        return found
    choices = document.names() or [feed.url for feed in document.feeds]
    close = difflib.get_close_matches(name_or_url, choices, n=1, cutoff=0.5)
    hint = f'; did you mean "{close[0]}"?' if close else ""
    raise SourceError(
        f'no feed is named "{name_or_url}" or has that URL in {document.path}{hint} '
        "(monitor status lists the feeds)"
    )


def plan_addition(
    document: FeedsDocument,
    candidate: Candidate,
    *,
    name: str | None,
    interval: str | None,
    tags: Sequence[str] = (),
) -> NewFeed:
    """The feed to append for `candidate`, refusing a URL or a name already configured."""
    _refuse_duplicate(document, candidate.url)
    chosen = one_line(name) if name else _name_from_title(candidate.title)
    if chosen:
        taken = {existing.casefold(): existing for existing in document.names()}
        if chosen.casefold() in taken:
            hint = "give another with --name" if name else "name it with --name"
            raise SourceError(
                f'a feed is already named "{taken[chosen.casefold()]}" in {document.path}: {hint}'
            )
    return NewFeed(
        url=candidate.url,
        name=chosen or None,
        interval=interval,
        tags=tuple(dict.fromkeys(one_line(tag) for tag in tags if one_line(tag))),
        type=candidate.kind,
    )


def plan_replacement(
    document: FeedsDocument, old: str, candidate: Candidate
) -> tuple[ConfiguredFeed, str]:
    """The feed being moved and the text with its URL replaced by the candidate's."""
    target = feed_named(document, old)
    new_url = candidate.url
    if candidate.kind != "feed":
        raise SourceError(
            f"{new_url} is a sitemap, not a feed: --replace only moves a feed to its new "
            f"address; add the sitemap with monitor add, then remove {target.label}"
        )
    existing = document.same_url(new_url)
    if existing is not None and existing.index != target.index:
        raise SourceError(
            f"{new_url} is already in {document.path} as {existing.label} (line {existing.line}); "
            f"remove one of them with monitor remove"
        )
    return target, document.with_url_replaced(target, new_url)


def plan_removal(document: FeedsDocument, name_or_url: str) -> tuple[ConfiguredFeed, str]:
    """The feed to remove and the text without it; refuses what would leave the file invalid."""
    target = feed_named(document, name_or_url)
    if len(document.feeds) == 1:
        raise SourceError(
            f"{target.label} is the only feed in {document.path}, and the file needs at least "
            "one: add the feed that replaces it first (monitor add URL), then remove this one"
        )
    if target.name is not None:
        scoped = document.watchlists_scoped_to(target.name)
        if scoped:
            raise SourceError(
                f'"{target.name}" is named in the feeds: of {_where(document, scoped)}: delete '
                f'"{target.name}" from that list first (or the watchlist, or its feeds: key to '
                "watch every feed), then run monitor remove again"
            )
    others = {tag.casefold() for feed in document.feeds if feed != target for tag in feed.tags}
    for tag in target.tags:
        using = document.watchlists_using_tag(tag)
        if using and tag.casefold() not in others:
            raise SourceError(
                f'{target.label} is the only feed with the tag "{tag}", which the tags: of '
                f"{_where(document, using)} use: give another feed that tag, or delete it "
                "from that list first, then run monitor remove again"
            )
    return target, document.with_removed(target)


def _where(document: FeedsDocument, places: Sequence[tuple[str, int]]) -> str:
    return "; ".join(f'watchlist "{name}" ({document.path}:{line})' for name, line in places)


@dataclass(frozen=True)
class ImportPlan:
    added: tuple[NewFeed, ...]
    duplicates: tuple[str, ...]  # "Title (url): already in feeds.yaml as ..."
    skipped: tuple[str, ...] = field(default=())  # outlines that are not usable feeds


def plan_import(document: FeedsDocument, opml: OpmlList) -> ImportPlan:
    """The OPML feeds to append, each with a unique name. A feed listed again in the file
    (Feedly lists a feed under each of its categories) is added once with the tags of
    every listing; one already configured under any spelling of its URL is skipped."""
    names = {name.casefold() for name in document.names()}
    merged: dict[str, OpmlFeed] = {}
    duplicates: list[str] = []
    for feed in opml.feeds:
        label = f"{feed.title} ({feed.url})" if feed.title else feed.url
        existing = document.same_url(feed.url)
        if existing is not None:
            duplicates.append(f"{label}: already configured as {existing.label}")
            continue
        key = canonical_url(feed.url)
        first = merged.get(key)
        if first is None:
            merged[key] = feed
            continue
        tags = tuple(dict.fromkeys((*first.tags, *feed.tags)))
        merged[key] = OpmlFeed(url=first.url, title=first.title, html_url=first.html_url, tags=tags)
        duplicates.append(f"{label}: listed again in the OPML file (its tags were merged)")
    added: list[NewFeed] = []
    for feed in merged.values():
        name = _unique_name(feed, names)
        names.add(name.casefold())
        added.append(NewFeed(url=feed.url, name=name, tags=feed.tags))
    return ImportPlan(added=tuple(added), duplicates=tuple(duplicates), skipped=opml.skipped)


def export_opml(document: FeedsDocument, *, created: datetime) -> bytes:
    feeds = [OpmlFeed(url=feed.url, title=feed.name, tags=feed.tags) for feed in document.feeds]
    return write_opml(feeds, title=f"monitor feeds ({document.path.name})", created=created)


def refuse_known_url(document: FeedsDocument, url: str) -> None:
    """A `SourceError` naming the configured feed when `url` is another spelling of its URL."""
    _refuse_duplicate(document, url)


def _refuse_duplicate(document: FeedsDocument, url: str) -> None:
    existing = document.same_url(url)
    if existing is not None:
        raise SourceError(
            f"{url} is already in {document.path} as {existing.label}, line {existing.line}; "
            "nothing was added"
        )


def _name_from_title(title: str | None) -> str:
    return one_line(title or "")[:MAX_NAME_CHARS].strip()


def _unique_name(feed: OpmlFeed, taken: set[str]) -> str:
    """The feed's title (else its host), made unique with its host, then a number."""
    host = (urlsplit(feed.url).hostname or feed.url).removeprefix("www.")
    base = _name_from_title(feed.title) or host
    candidates = [base, f"{base} ({host})"] if base != host else [base]
    for candidate in candidates:
        if candidate.casefold() not in taken:
            return candidate
    number = 2
    while f"{base} {number}".casefold() in taken:
        number += 1
    return f"{base} {number}"
