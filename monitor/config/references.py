"""Checks across entries: unique feed URLs, feed names, watchlist, digest and alert
names, watchlists' ``feeds:`` naming configured feeds and ``tags:`` naming tags that
named feeds carry, and digests' and alerts' ``watchlists:`` naming configured watchlists.

Run on the raw tree, so these problems are reported together with any other.
"""

from __future__ import annotations

import difflib
from urllib.parse import urlsplit, urlunsplit

from monitor.config.yaml_tree import Position, Tree, _Positions, _Problems


def _check_references(tree: Tree, positions: _Positions, problems: _Problems) -> None:
    """Uniqueness and feed-name references, checked on the raw tree so they are reported
    together with any other problem."""
    if not isinstance(tree, dict):
        return
    feed_names: dict[str, Position] = {}
    feed_urls: dict[str, Position] = {}
    for index, feed in _items(tree.get("feeds")):
        url, name = feed.get("url"), feed.get("name")
        if isinstance(url, str) and url.strip():
            _claim(
                _url_identity(url),
                positions.of_value(("feeds", index, "url")),
                feed_urls,
                problems,
                "this feed URL is already listed at line {line}: remove one of them",
            )
        if isinstance(name, str) and name.strip():
            _claim(
                name.strip(),
                positions.of_value(("feeds", index, "name")),
                feed_names,
                problems,
                'another feed is already named "' + name.strip() + '" (line {line}): '
                "watchlists refer to feeds by name, so names must be unique",
            )
    feed_tags = _feed_tags(tree, positions)
    watchlist_names: dict[str, Position] = {}
    for index, watchlist in _items(tree.get("watchlists")):
        name = watchlist.get("name")
        if isinstance(name, str) and name.strip():
            _claim(
                name.strip().casefold(),
                positions.of_value(("watchlists", index, "name")),
                watchlist_names,
                problems,
                'the watchlist name "' + name.strip() + '" is already used at line {line}: '
                "names must be unique (hits are filed under them)",
            )
        _check_tag_scope(index, watchlist.get("tags"), feed_tags, positions, problems)
        scope = watchlist.get("feeds")
        if not isinstance(scope, list):
            continue
        for position_in_scope, feed_name in enumerate(scope):
            if (
                isinstance(feed_name, str)
                and feed_name.strip()
                and feed_name.strip() not in feed_names
            ):
                problems.add(
                    positions.of_value(("watchlists", index, "feeds", position_in_scope)),
                    _unknown_feed_message(feed_name.strip(), list(feed_names)),
                )
    _check_digests(tree, positions, problems, watchlist_names)
    _check_alert_references(tree, positions, problems)


def _check_digests(
    tree: dict[str, Tree],
    positions: _Positions,
    problems: _Problems,
    watchlist_names: dict[str, Position],
) -> None:
    """Digest names are unique (each keeps its own record of what it sent) and a digest's
    `watchlists:` name configured watchlists."""
    if "digest" not in tree and "digests" not in tree:
        problems.add(
            (0, 0),
            'missing "digest": add a digest: section with from: and to: '
            "(see the bundled feeds.yaml)",
        )
    digest_names: dict[str, Position] = {}
    known = [
        name.strip()
        for _, watchlist in _items(tree.get("watchlists"))
        if isinstance(name := watchlist.get("name"), str)
    ]
    for index, digest in _items(tree.get("digests")):
        name = digest.get("name")
        if isinstance(name, str) and name.strip():
            _claim(
                name.strip().casefold(),
                positions.of_value(("digests", index, "name")),
                digest_names,
                problems,
                'another digest is already named "' + name.strip() + '" (line {line}): '
                "each digest remembers what it sent under its name, so names must be unique",
            )
        chosen = digest.get("watchlists")
        if not isinstance(chosen, list):
            continue
        for position, watchlist in enumerate(chosen):
            if not isinstance(watchlist, str) or not watchlist.strip():
                continue
            if watchlist.strip().casefold() not in watchlist_names:
                problems.add(
                    positions.of_value(("digests", index, "watchlists", position)),
                    _unknown_watchlist_message(watchlist.strip(), known, "a digest"),
                )


def _check_alert_references(
    tree: dict[str, Tree], positions: _Positions, problems: _Problems
) -> None:
    """Alert names unique, each URL once per alert, watchlists named as configured."""
    watchlists = [
        name.strip()
        for _, watchlist in _items(tree.get("watchlists"))
        if isinstance(name := watchlist.get("name"), str)
    ]
    alert_names: dict[str, Position] = {}
    for index, alert in _items(tree.get("alerts")):
        name = alert.get("name")
        if isinstance(name, str) and name.strip():
            _claim(
                name.strip().casefold(),
                positions.of_value(("alerts", index, "name")),
                alert_names,
                problems,
                'the alert name "' + name.strip() + '" is already used at line {line}: '
                "names must be unique (deliveries are filed under them)",
            )
        named = alert.get("watchlists")
        for position, watchlist in enumerate(named if isinstance(named, list) else []):
            if (
                isinstance(watchlist, str)
                and watchlist.strip()
                and watchlist.strip() not in watchlists
            ):
                problems.add(
                    positions.of_value(("alerts", index, "watchlists", position)),
                    _unknown_watchlist_message(watchlist.strip(), watchlists, "an alert"),
                )
        urls = alert.get("urls")
        seen_urls: dict[str, Position] = {}
        for position, url in enumerate(urls if isinstance(urls, list) else []):
            if isinstance(url, str) and url.strip():
                _claim(
                    url.strip(),
                    positions.of_value(("alerts", index, "urls", position)),
                    seen_urls,
                    problems,
                    "this URL is already listed in this alert at line {line}: remove one of them",
                )


def _unknown_watchlist_message(name: str, configured: list[str], user: str) -> str:
    by_folded = {known.casefold(): known for known in configured}
    close = difflib.get_close_matches(name.casefold(), list(by_folded), n=1, cutoff=0.6)
    message = f'no watchlist is named "{name}"'
    if close:
        message += f' (did you mean "{by_folded[close[0]]}"?)'
    return message + f": {user}'s watchlists: must use the names given under watchlists:"


def _items(section: Tree) -> list[tuple[int, dict[str, Tree]]]:
    if not isinstance(section, list):
        return []
    return [(index, item) for index, item in enumerate(section) if isinstance(item, dict)]


def _claim(
    identity: str,
    position: Position,
    seen: dict[str, Position],
    problems: _Problems,
    duplicate_message: str,
) -> None:
    first = seen.get(identity)
    if first is None:
        seen[identity] = position
    else:
        problems.add(position, duplicate_message.format(line=first[0] + 1))


def _url_identity(url: str) -> str:
    parts = urlsplit(url.strip())
    return urlunsplit(
        (parts.scheme.lower(), parts.netloc.lower(), parts.path or "/", parts.query, "")
    )


def _unknown_feed_message(name: str, configured: list[str]) -> str:
    by_folded = {known.casefold(): known for known in configured}
    close = difflib.get_close_matches(name.casefold(), list(by_folded), n=1, cutoff=0.6)
    message = f'no feed is named "{name}"'
    if close:
        message += f' (did you mean "{by_folded[close[0]]}"?)'
    return message + (
        ": a watchlist's feeds: must use names given with name: under feeds: "
        "(a feed known only by its own title cannot be named here)"
    )


# Tags are compared without case: "Afrique" and "afrique" are one tag.
_TaggedFeed = tuple[str | None, Position]  # (name, where the tag is written)


def _feed_tags(tree: dict[str, Tree], positions: _Positions) -> dict[str, list[_TaggedFeed]]:
    """Folded tag → the feeds carrying it."""
    tagged: dict[str, list[_TaggedFeed]] = {}
    for index, feed in _items(tree.get("feeds")):
        tags, name = feed.get("tags"), feed.get("name")
        if not isinstance(tags, list):
            continue
        shown = name.strip() if isinstance(name, str) and name.strip() else None
        for position, tag in enumerate(tags):
            if isinstance(tag, str) and tag.strip():
                where = positions.of_value(("feeds", index, "tags", position))
                tagged.setdefault(tag.strip().casefold(), []).append((shown, where))
    return tagged


def _check_tag_scope(
    index: int,
    scope: Tree,
    feed_tags: dict[str, list[_TaggedFeed]],
    positions: _Positions,
    problems: _Problems,
) -> None:
    if not isinstance(scope, list):
        return
    for position_in_scope, tag in enumerate(scope):
        if not isinstance(tag, str) or not tag.strip():
            continue
        where = positions.of_value(("watchlists", index, "tags", position_in_scope))
        carriers = feed_tags.get(tag.strip().casefold())
        if not carriers:
            problems.add(where, _unknown_tag_message(tag.strip(), feed_tags))
            continue
        for name, tag_position in carriers:
            if name is None:
                problems.add(
                    tag_position,
                    f'this feed has the tag "{tag.strip()}", which a watchlist uses as its '
                    "scope, but no name: — give it a name: (watchlists refer to feeds by name)",
                )


def _unknown_tag_message(tag: str, feed_tags: dict[str, list[_TaggedFeed]]) -> str:
    close = difflib.get_close_matches(tag.casefold(), list(feed_tags), n=1, cutoff=0.6)
    message = f'no feed has the tag "{tag}"'
    if close:
        message += f' (did you mean "{close[0]}"?)'
    return message + (
        ": a watchlist's tags: must use tags given with tags: under feeds: "
        "(e.g. tags: [afrique] on a feed)"
    )
