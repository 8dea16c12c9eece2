"""Instant alerts, decided: what one alert says, and when a failed one is tried again.

Pure: no I/O, no clock (``now`` is passed in). `monitor.destinations` sends what
`compose_alert` writes; `service.send_alerts` asks `next_attempt` what to do
after a failure::

    stored hit ─► compose_alert ─► AlertMessage (title; text, Markdown and HTML bodies;
                                                 JSON fields for webhooks)
    attempts, created_at, now ─► next_attempt ─► the time to try again, or None: give up

The article's title, feed and snippet are untrusted text: the Markdown body
escapes what Markdown would read as markup and the HTML body escapes HTML, so
an article cannot inject links, images or tags into a notification. Only the
snippet's ``[[word]]`` marks become bold (``**word**`` in text and Markdown).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from monitor.models import StoredHit
from monitor.text import one_line, plain_link

FIRST_RETRY = timedelta(minutes=1)
LONGEST_RETRY = timedelta(hours=1)
GIVE_UP_AFTER = timedelta(hours=24)
MAX_TITLE_CHARS = 200
MAX_SNIPPET_CHARS = 500

_MARK = re.compile(r"\[\[(.+?)\]\]")
# What Markdown (CommonMark, Slack's mrkdwn, ntfy, Matrix) could read as markup in plain text.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~])")


@dataclass(frozen=True)
class AlertMessage:
    """One alert in every form a destination may want."""

    title: str  # "monitor: <watchlist>: <article title>"
    text: str
    markdown: str
    html: str
    # Structured fields a JSON webhook receives beside title and message.
    fields: dict[str, str] = field(default_factory=dict)


def compose_alert(hit: StoredHit, *, alert: str) -> AlertMessage:
    """What announcing `hit` (for the alert named `alert`) says."""
    title = _cut(one_line(hit.title), MAX_TITLE_CHARS) or "(untitled)"
    watchlist = one_line(hit.watchlist)
    feed = one_line(hit.feed)
    link = _safe_link(hit.url)
    snippet = _cut(one_line(hit.snippets[0]), MAX_SNIPPET_CHARS) if hit.snippets else ""
    plain_snippet = _MARK.sub(r"\1", snippet)
    footer = f"{watchlist} · {feed}"

    text_lines = [title, link or "(no link)"]
    if snippet:
        text_lines += ["", _MARK.sub(r"**\1**", snippet)]
    text_lines += ["", footer]

    markdown_lines = [f"**{_markdown(title)}**", f"<{link}>" if link else "(no link)"]
    if snippet:
        markdown_lines += ["", _marked_markdown(snippet)]
    markdown_lines += ["", f"_{_markdown(watchlist)}_ · {_markdown(feed)}"]

    heading = html.escape(title)
    if link:
        heading = f'<a href="{html.escape(link)}">{heading}</a>'
    html_parts = [f"<p><b>{heading}</b></p>"]
    if snippet:
        html_parts.append(f"<p>{_marked_html(snippet)}</p>")
    html_parts.append(f"<p><i>{html.escape(watchlist)}</i> · {html.escape(feed)}</p>")

    return AlertMessage(
        title=f"monitor: {watchlist}: {title}",
        text="\n".join(text_lines),
        markdown="\n".join(markdown_lines),
        html="\n".join(html_parts),
        fields={
            "alert": alert,
            "watchlist": watchlist,
            "article_title": title,
            "url": link or "",
            "snippet": plain_snippet,
            "snippet_marked": _MARK.sub(r"**\1**", snippet),
            "feed": feed,
            "matched": ", ".join(hit.matched),
            "found_at": hit.found_at.isoformat(),
            "hit_id": str(hit.hit_id),
        },
    )


def next_attempt(attempts: int, created_at: datetime, now: datetime) -> datetime | None:
    """After the `attempts`-th failed attempt at `now`: when to try again (1 min, then 2,
    4, ... at most an hour apart), or None to give up, once `GIVE_UP_AFTER` has passed
    since the hit was recorded at `created_at`."""
    delay = min(FIRST_RETRY * (1 << min(max(attempts - 1, 0), 20)), LONGEST_RETRY)
    retry_at = now + delay
    if retry_at - created_at > GIVE_UP_AFTER:
        return None
    return retry_at


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if cut.rfind("[[") > cut.rfind("]]"):  # never half a mark
        cut = cut[: cut.rfind("[[")]
    return cut.rstrip() + "…"


def _markdown(text: str) -> str:
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def _marked_markdown(snippet: str) -> str:
    pieces = _MARK.split(snippet)  # odd pieces are the marked words
    return "".join(
        f"**{_markdown(piece)}**" if index % 2 else _markdown(piece)
        for index, piece in enumerate(pieces)
    )


def _marked_html(snippet: str) -> str:
    pieces = _MARK.split(snippet)
    return "".join(
        f"<b>{html.escape(piece)}</b>" if index % 2 else html.escape(piece)
        for index, piece in enumerate(pieces)
    )


def _safe_link(url: str | None) -> str | None:
    """The article URL when it is a plain http(s) link that no alert markup can break out
    of (no quote or angle bracket); None for anything else."""
    return plain_link(url, refused="<>\"'`")
