"""OPML subscription lists in and out: pure functions from bytes to feeds and back.

Reading accepts OPML 1.0 and 2.0 as feed readers export them (Feedly, Inoreader,
Miniflux, FreshRSS, NetNewsWire, Tiny Tiny RSS): feeds are outlines with an
``xmlUrl`` (any case), at any depth; the folders holding them (outlines without
``xmlUrl``) and their ``category`` attribute (comma-separated, ``/`` paths as in
the OPML 2.0 spec) become tags, outermost folder first. Outlines without
``xmlUrl`` and no children are reported as skipped; ``feed://`` is read as
``http://``. The XML is parsed by `monitor.sources.safexml`.

Writing produces OPML 2.0: one outline per feed (``type="rss"``, ``text``,
``title``, ``xmlUrl``, ``htmlUrl`` when known, every tag in ``category``), grouped
under a folder outline named after the feed's first tag.
"""

from __future__ import annotations

import email.utils
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from xml.etree import ElementTree

from monitor.errors import SourceError
from monitor.sources.safexml import local_name, parse_untrusted_xml
from monitor.text import one_line

__all__ = ["MAX_OPML_BYTES", "OpmlFeed", "OpmlList", "read_opml", "write_opml"]

MAX_OPML_BYTES = 10 * 1024 * 1024
MAX_TAG_CHARS = 50
MAX_TAGS = 20
MAX_URL_CHARS = 2000
MAX_NESTING = 32
# Tiny Tiny RSS exports its preferences, labels and filters as outlines beside the feeds.
_TTRSS_SETTINGS = frozenset({"tt-rss-prefs", "tt-rss-labels", "tt-rss-filters"})


@dataclass(frozen=True)
class OpmlFeed:
    url: str
    title: str | None = None
    html_url: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class OpmlList:
    title: str | None
    feeds: tuple[OpmlFeed, ...]
    skipped: tuple[str, ...] = ()  # "Name: why", for outlines that are not usable feeds


def read_opml(data: bytes, *, source: str) -> OpmlList:
    """The feeds of an OPML document; `SourceError` naming `source` when it is not one."""
    if len(data) > MAX_OPML_BYTES:
        raise SourceError(f"{source} is larger than {MAX_OPML_BYTES // 1024 // 1024} MiB")
    root = parse_untrusted_xml(data, what=source)
    if local_name(root) != "opml":
        raise SourceError(
            f"{source} is not an OPML file (its root element is <{local_name(root)}>, "
            "not <opml>); export the subscriptions from your reader as OPML"
        )
    body = next((child for child in root if local_name(child) == "body"), None)
    if body is None:
        raise SourceError(f"{source} has no <body>: it lists no subscriptions")
    head = next((child for child in root if local_name(child) == "head"), None)
    title_element = (
        next((child for child in head if local_name(child) == "title"), None)
        if head is not None
        else None
    )
    title = one_line(title_element.text or "") if title_element is not None else ""
    feeds: list[OpmlFeed] = []
    skipped: list[str] = []
    _walk(body, (), feeds, skipped, depth=0)
    return OpmlList(title=title or None, feeds=tuple(feeds), skipped=tuple(skipped))


def _walk(
    parent: Any,
    folders: tuple[str, ...],
    feeds: list[OpmlFeed],
    skipped: list[str],
    *,
    depth: int,
) -> None:
    if depth > MAX_NESTING:
        skipped.append(f"outlines nested deeper than {MAX_NESTING} levels")
        return
    for outline in parent:
        if local_name(outline) != "outline":
            continue
        attributes = {str(name).lower(): str(value) for name, value in outline.attrib.items()}
        label = one_line(attributes.get("title") or attributes.get("text") or "")
        own_tags = _category_tags(attributes.get("category", ""))
        xml_url = attributes.get("xmlurl", "").strip()
        children = [child for child in outline if local_name(child) == "outline"]
        if not xml_url:
            if label.lower() in _TTRSS_SETTINGS:
                skipped.append(f"{label}: Tiny Tiny RSS settings, not feeds")
            elif children:
                folder = _tag(label)
                _walk(
                    outline,
                    (*folders, *([folder] if folder else []), *own_tags),
                    feeds,
                    skipped,
                    depth=depth + 1,
                )
            else:
                skipped.append(f"{label or 'an outline without text'}: no xmlUrl")
            continue
        url = _http_url(xml_url)
        if url is None:
            skipped.append(f"{label or xml_url}: {xml_url!r} is not an http(s) address")
            continue
        unusable = _unusable(url)
        if unusable:
            skipped.append(f"{label or url}: {unusable}")
            continue
        html_url = _http_url(attributes.get("htmlurl", "").strip())
        tags = tuple(dict.fromkeys((*folders, *own_tags)))[:MAX_TAGS]
        # An exporter with no title for the feed writes its address as the required text.
        title = label if label and label not in (xml_url, url) else None
        feeds.append(OpmlFeed(url=url, title=title, html_url=html_url, tags=tags))


def _http_url(text: str) -> str | None:
    if not text:
        return None
    if text.lower().startswith("feed://"):
        text = "http://" + text[len("feed://") :]
    elif text.lower().startswith("feed:http"):
        text = text[len("feed:") :]
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return text


def _unusable(url: str) -> str | None:
    """Why feeds.yaml would refuse `url` (see `monitor.config.schema`), or None."""
    parts = urlsplit(url)
    if any(character.isspace() for character in url):
        return "its address contains spaces"
    if parts.username is not None or parts.password is not None:
        return "its address holds a user name or password (user:password@), not supported"
    if len(url) > MAX_URL_CHARS:
        return f"its address is longer than {MAX_URL_CHARS} characters"
    try:
        parts.port  # noqa: B018 - urlsplit only checks the port when asked
    except ValueError:
        return "its address has an invalid port"
    return None


def _category_tags(value: str) -> list[str]:
    """``/News/Africa,tech`` → ``["News/Africa", "tech"]``: one tag per category."""
    tags = []
    for category in value.split(","):
        tag = _tag(category.strip().strip("/"))
        if tag:
            tags.append(tag)
    return tags


def _tag(text: str) -> str:
    """A folder or category name as a tag: one line, no commas, at most MAX_TAG_CHARS."""
    return one_line(text).replace(",", " ").strip()[:MAX_TAG_CHARS].strip()


# --------------------------------------------------------------------------- writing


def write_opml(feeds: Sequence[OpmlFeed], *, title: str, created: datetime) -> bytes:
    """An OPML 2.0 document listing `feeds`, grouped by their first tag."""
    opml = ElementTree.Element("opml", version="2.0")
    head = ElementTree.SubElement(opml, "head")
    ElementTree.SubElement(head, "title").text = title
    ElementTree.SubElement(head, "dateCreated").text = email.utils.format_datetime(created)
    body = ElementTree.SubElement(opml, "body")
    folders: dict[str, ElementTree.Element] = {}
    for feed in feeds:
        parent = body
        if feed.tags:
            first = feed.tags[0]
            if first not in folders:
                folders[first] = ElementTree.SubElement(body, "outline", text=first, title=first)
            parent = folders[first]
        text = feed.title or feed.url
        attributes = {"type": "rss", "text": text, "title": text, "xmlUrl": feed.url}
        if feed.html_url:
            attributes["htmlUrl"] = feed.html_url
        if feed.tags:
            attributes["category"] = ",".join(feed.tags)
        ElementTree.SubElement(parent, "outline", attributes)
    ElementTree.indent(opml, space="  ")
    document: bytes = ElementTree.tostring(opml, encoding="utf-8", xml_declaration=True)
    return document + b"\n"
