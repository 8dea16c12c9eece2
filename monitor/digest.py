"""Claimed hits → `DigestContent` → one multipart email (text/plain + text/html).

Pure: no clock, no network, no database; the only I/O is reading the packaged
templates and message catalogues. The email reads as a morning briefing:

* at the top, the period covered and an overview (watchlist, new stories,
  passing mentions), each row linking to its section;
* per watchlist, its topic, then its stories most relevant first: at most
  `max_full` in full (title, source, date, why it matched, the best sentences,
  the other outlets that carried the same story), the rest one line each,
  then the passing mentions one line each;
* an article matching several watchlists is shown in full once, under the
  first of them in configuration order; the others refer to it in one line;
* a "Sources' health" section, only when something is wrong.

The HTML part is kept under `HTML_BUDGET` bytes, as sent (quoted-printable),
so Gmail never clips it: when a day is too big, fewer sentences and then fewer
stories are shown in full, and the rest become one-line entries; nothing found
is left out.

Words come from a gettext catalogue (`monitor/locale`), dates from Babel, both
in the digest's language. Everything that comes from feeds (titles, URLs, feed
names, snippets, even watchlist names from the config) is treated as hostile:

* the HTML template is rendered with autoescaping on (decided by a function
  that escapes every template except ``*.txt.j2``, so a renamed template can
  never silently lose escaping, cf. changedetection.io GHSA-pwgc-w4x9-gw67);
* snippet marks ``[[word]]`` become ``<mark>`` only *after* the snippet was
  escaped, so a mark can never carry markup;
* a link is emitted only for an absolute http(s) URL;
* header values lose every control character, so a CR/LF in a title can
  neither inject a header nor crash the digest.
"""

from __future__ import annotations

import email.policy
import email.utils
import re
import shlex
import unicodedata
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from email.message import EmailMessage
from functools import cache
from io import BytesIO
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2
from babel.dates import format_date, format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from markupsafe import Markup, escape

from monitor.config.settings import DIGEST_LANGUAGES
from monitor.health import error_words
from monitor.matching import MAX_SNIPPET_CHARS, MAX_SNIPPETS
from monitor.models import (
    ClaimedDigest,
    DigestContent,
    HealthNotice,
    NoticeKind,
    StoredHit,
)
from monitor.text import one_line, plain_link

LANGUAGES = DIGEST_LANGUAGES
DEFAULT_MAX_FULL = 10
# Gmail hides the end of a message whose HTML passes about 102 KB behind "[Message
# clipped]". The budget counts the HTML part as sent (quoted-printable), with a margin.
HTML_BUDGET = 100_000
MAX_TITLE_CHARS = 300
MAX_LINE_SENTENCE_CHARS = 160  # a one-line entry's sentence
MAX_COPIES_SHOWN = 5  # "also in": outlets named; more are counted
UNSCORED_RELEVANCE = 0.5
LOCALE_DIRECTORY = Path(__file__).parent / "locale"
_MARK = re.compile(r"\[\[(.+?)\]\]", re.DOTALL)


def build_digest(
    claimed: ClaimedDigest,
    *,
    watchlist_order: Sequence[str],
    tz: ZoneInfo,
    now: datetime,
    topics: Mapping[str, str] | None = None,
    hide_passing: Collection[str] = (),
    covers_from: datetime | None = None,
    notices: Sequence[HealthNotice] = (),
) -> DigestContent:
    """Group the claimed hits by watchlist, in configuration order: in each, the main hits
    most relevant first (then newest), then the passing mentions in the same order.

    Watchlists no longer in the configuration (renamed or removed since the
    hit was found) follow in alphabetical order: their hits are still sent.
    Backfilled hits form their own groups, shown after the others. The passing
    mentions of the watchlists in `hide_passing` are left out of the message,
    though they belong to the digest (and so are marked sent) like the others.
    `covers_from` (the previous digest, when known) starts the period shown at the
    top; without it, the oldest hit's discovery does.
    """
    rank = {name: position for position, name in enumerate(watchlist_order)}

    def group(hits: Sequence[StoredHit]) -> tuple[tuple[str, tuple[StoredHit, ...]], ...]:
        by_watchlist: dict[str, list[StoredHit]] = {}
        for hit in hits:
            if hit.in_passing and hit.watchlist in hide_passing:
                continue
            by_watchlist.setdefault(hit.watchlist, []).append(hit)
        names = sorted(by_watchlist, key=lambda name: (name not in rank, rank.get(name, 0), name))
        return tuple((name, tuple(sorted(by_watchlist[name], key=_main_first))) for name in names)

    fresh = [hit for hit in claimed.hits if not hit.backfilled]
    backfilled = [hit for hit in claimed.hits if hit.backfilled]
    if covers_from is None and claimed.hits:
        covers_from = min(hit.found_at for hit in claimed.hits)
    return DigestContent(
        digest_key=claimed.key,
        generated_at=now.astimezone(tz),
        groups=group(fresh),
        backfilled=group(backfilled),
        hit_ids=tuple(hit.hit_id for hit in claimed.hits),
        topics=dict(topics or {}),
        covers_from=covers_from,
        notices=tuple(notices),
    )


def by_relevance(hit: StoredHit) -> tuple[float, float, int]:
    """Sort key: most relevant first, then newest. A hit found before relevance existed
    and not rescored counts as halfway."""
    moment = hit.published or hit.found_at
    relevance = UNSCORED_RELEVANCE if hit.relevance is None else hit.relevance
    return (-relevance, -moment.timestamp(), -hit.hit_id)


def _main_first(hit: StoredHit) -> tuple[bool, float, float, int]:
    return (hit.in_passing, *by_relevance(hit))


@dataclass(frozen=True)
class Layout:
    """How much of each story is shown: the first level that fits the budget wins."""

    max_full: int  # stories in full per watchlist; the rest one line each
    snippets: int = MAX_SNIPPETS  # sentences per story in full
    line_sentences: bool = True  # one-line stories carry their sentence
    passing_sentences: bool = True  # passing mentions carry their sentence
    max_passing: int | None = None  # passing mentions listed per watchlist; the rest counted
    max_lines: int | None = None  # one-line entries per list; the rest are counted


KEPT_IN_FULL = 2  # stories in full per watchlist kept once one-line entries must be counted


def layouts(max_full: int) -> list[Layout]:
    """From the richest to the most compact, giving up first what matters least: extra
    sentences of stories in full, then the passing mentions (their sentence, then all but
    the first few, counted), then the sentences of one-line stories, then stories in full
    (every story is still listed, one line each). When even that is too long, one-line
    entries beyond the first few of each list are counted, with the command that lists
    them, and each watchlist opens again with its best `KEPT_IN_FULL` stories in full;
    those go last."""
    levels = [Layout(max_full), Layout(max_full, 1)]
    levels.append(Layout(max_full, 1, passing_sentences=False))
    levels.extend(
        Layout(max_full, 1, passing_sentences=False, max_passing=shown) for shown in (10, 3, 0)
    )
    compact = Layout(max_full, 1, line_sentences=False, passing_sentences=False, max_passing=0)
    levels.append(compact)
    full = max_full
    while full > 0:
        full //= 2
        levels.append(replace(compact, max_full=full))
    for kept in range(min(max_full, KEPT_IN_FULL), 0, -1):
        levels.extend(replace(compact, max_full=kept, max_lines=lines) for lines in (20, 10, 5))
    levels.extend(replace(compact, max_full=0, max_lines=lines) for lines in (20, 10, 5, 2, 0))
    return levels


def render_message(
    content: DigestContent,
    *,
    sender: str,
    recipients: Sequence[str],
    subject: str,
    message_id: str,
    tz: ZoneInfo,
    language: str = "en",
    max_full: int = DEFAULT_MAX_FULL,
    budget: int = HTML_BUDGET,
) -> EmailMessage:
    """The digest as an email ready for `notify.deliver`, its HTML part within `budget`
    bytes as sent whenever a layout allows it."""
    words = _translations(language)
    generated = content.generated_at.astimezone(tz)
    date_line = _long_date(generated, language)
    summary = _summary(content, words)
    message = EmailMessage(policy=email.policy.SMTP)
    message["Subject"] = clean_header(f"{subject}: {summary} — {_medium_date(generated, language)}")
    message["From"] = clean_header(sender)
    message["To"] = ", ".join(clean_header(recipient) for recipient in recipients)
    message["Date"] = email.utils.format_datetime(content.generated_at)
    message["Message-ID"] = clean_header(message_id)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation auto-replies
    message["X-Monitor-Digest"] = clean_header(content.digest_key)
    environment = _environment(language)
    candidates = layouts(max_full)
    for position, layout in enumerate(candidates):
        values = _values(content, tz, language, words, layout, date_line, summary)
        html = environment.get_template("digest.html.j2").render(values)
        if position == len(candidates) - 1 or _sent_size(html) <= budget:
            break
    # Quoted-printable keeps the message 7-bit clean, so no server needs 8BITMIME.
    message.set_content(
        environment.get_template("digest.txt.j2").render(values), cte="quoted-printable"
    )
    message.add_alternative(html, subtype="html", cte="quoted-printable")
    message["Content-Language"] = language  # after the parts: set_content drops Content-*
    return message


def html_part(message: EmailMessage) -> str:
    """The HTML part of a digest, decoded."""
    part = message.get_body(preferencelist=("html",))
    assert part is not None, "every digest has an HTML part"
    return str(part.get_content())


def sent_size(message: EmailMessage) -> int:
    """Bytes of the HTML part as sent (quoted-printable): what a mail client receives."""
    return _sent_size(html_part(message))


def _sent_size(html: str) -> int:
    part = EmailMessage(policy=email.policy.SMTP)
    part.set_content(html, subtype="html", cte="quoted-printable")
    return len(part.get_payload().encode("ascii"))  # type: ignore[union-attr]


def clean_header(value: str) -> str:
    """A header value with control characters turned into spaces and whitespace collapsed."""
    return one_line(value)


# --------------------------------------------------------------------------- views


@dataclass(frozen=True)
class _Link:
    text: str
    url: str | None  # only http(s); None → shown without a link


@dataclass(frozen=True)
class _Story:
    """A story in full."""

    anchor: str
    title: str
    url: str | None
    feed: str
    date: str
    matched: str
    text_snippets: tuple[str, ...]
    html_snippets: tuple[Markup, ...]
    also_in: tuple[_Link, ...]
    more_copies: int  # copies beyond those named


@dataclass(frozen=True)
class _Line:
    """A story on one line: past `max_full`, a passing mention, or a reference to a story
    shown in full under another watchlist (`see` names it, `anchor` links to it)."""

    anchor: str | None
    title: str
    url: str | None
    feed: str
    text_sentence: str
    html_sentence: Markup
    see: str | None = None


@dataclass(frozen=True)
class _Section:
    anchor: str
    watchlist: str
    topic: str | None
    stories: tuple[_Story, ...]
    more: tuple[_Line, ...]  # main stories past max_full
    references: tuple[_Line, ...]  # shown in full under an earlier watchlist
    passing: tuple[_Line, ...]
    new_count: int  # main stories, whether shown in full, on one line or only counted
    passing_count: int
    unlisted: int  # entries counted but not listed, to keep the message under its budget

    @property
    def command(self) -> str:
        """The command that lists every hit of this watchlist."""
        return f"monitor hits --watchlist {shlex.quote(self.watchlist)}"


@dataclass(frozen=True)
class _Notice:
    subject: str
    url: str | None
    text: str


def _values(
    content: DigestContent,
    tz: ZoneInfo,
    language: str,
    words: NullTranslations,
    layout: Layout,
    date_line: str,
    summary: str,
) -> dict[str, object]:
    homes: dict[int, tuple[str, str]] = {}  # article id -> (anchor, watchlist) of its full story
    sections = []
    for position, (name, hits) in enumerate(content.groups):
        sections.append(
            _section(
                f"w{position + 1}",
                name,
                hits,
                content.topics.get(name),
                tz,
                language,
                words,
                layout,
                homes,
            )
        )
    backfilled = [
        _section(
            f"b{position + 1}",
            name,
            hits,
            None,
            tz,
            language,
            words,
            replace(layout, max_full=0),
            {},
        )
        for position, (name, hits) in enumerate(content.backfilled)
    ]
    generated = content.generated_at.astimezone(tz)
    covers_from = content.covers_from.astimezone(tz) if content.covers_from else None
    return {
        "language": language,
        "summary": summary,
        "date": date_line,
        "period": _period(covers_from, generated, tz, language, words),
        "sections": sections,
        "passing_column": any(section.passing_count for section in sections),
        "backfilled": backfilled,
        "notices": [_notice(notice, tz, language, words) for notice in content.notices],
        "zone": _zone_label(generated, tz),
    }


def _section(
    anchor: str,
    name: str,
    hits: Sequence[StoredHit],
    topic: str | None,
    tz: ZoneInfo,
    language: str,
    words: NullTranslations,
    layout: Layout,
    homes: dict[int, tuple[str, str]],
) -> _Section:
    watchlist = _one_line(name)
    stories: list[_Story] = []
    more: list[_Line] = []
    references: list[_Line] = []
    passing: list[_Line] = []
    for hit in hits:
        if hit.in_passing:
            passing.append(_line(hit, None, layout, words, passing=True))
            continue
        home = homes.get(hit.article_id)
        if home is not None:
            references.append(_line(hit, home[0], layout, words, see=home[1]))
            continue
        story_anchor = f"{anchor}-{len(stories) + len(more) + 1}"
        homes[hit.article_id] = (story_anchor, watchlist)
        if len(stories) < layout.max_full:
            stories.append(_story(hit, story_anchor, tz, language, words, layout))
        else:
            more.append(_line(hit, story_anchor, layout, words))
    listed = layout.max_lines
    unlisted = 0
    if layout.max_passing is not None:
        unlisted += max(0, len(passing) - layout.max_passing)
        passing = passing[: layout.max_passing]
    if listed is not None:
        unlisted += sum(max(0, len(lines) - listed) for lines in (more, references, passing))
        more, references, passing = more[:listed], references[:listed], passing[:listed]
    return _Section(
        anchor=anchor,
        watchlist=watchlist,
        topic=_truncate(_one_line(topic), MAX_TITLE_CHARS) if topic else None,
        stories=tuple(stories),
        more=tuple(more),
        references=tuple(references),
        passing=tuple(passing),
        new_count=sum(not hit.in_passing for hit in hits),
        passing_count=sum(hit.in_passing for hit in hits),
        unlisted=unlisted,
    )


def _story(
    hit: StoredHit,
    anchor: str,
    tz: ZoneInfo,
    language: str,
    words: NullTranslations,
    layout: Layout,
) -> _Story:
    if hit.published is not None:
        date = _short_date(hit.published, tz, language)
    else:
        date = words.gettext("seen %(date)s") % {"date": _short_date(hit.found_at, tz, language)}
    snippets = [_truncate_snippet(_one_line(snippet)) for snippet in hit.snippets]
    snippets = [snippet for snippet in snippets if snippet][: layout.snippets]
    copies = [_Link(_plain(copy.feed), plain_link(copy.url)) for copy in hit.also_in]
    return _Story(
        anchor=anchor,
        title=_plain(hit.title) or words.gettext("(untitled)"),
        url=plain_link(hit.url),
        feed=_plain(hit.feed),
        date=date,
        matched=", ".join(_one_line(term) for term in hit.matched),
        text_snippets=tuple(_MARK.sub(r"*\1*", snippet) for snippet in snippets),
        html_snippets=tuple(_marked_html(snippet) for snippet in snippets),
        also_in=tuple(copies[:MAX_COPIES_SHOWN]),
        more_copies=max(0, len(copies) - MAX_COPIES_SHOWN),
    )


def _line(
    hit: StoredHit,
    anchor: str | None,
    layout: Layout,
    words: NullTranslations,
    *,
    see: str | None = None,
    passing: bool = False,
) -> _Line:
    sentence = ""
    wanted = layout.passing_sentences if passing else layout.line_sentences
    if wanted and see is None:
        sentence = next((one for one in map(_one_line, hit.snippets) if one), "")
        sentence = _truncate_snippet(sentence, MAX_LINE_SENTENCE_CHARS)
    return _Line(
        anchor=anchor,
        title=_plain(hit.title) or words.gettext("(untitled)"),
        url=plain_link(hit.url),
        feed=_plain(hit.feed),
        text_sentence=_MARK.sub(r"*\1*", sentence),
        html_sentence=_marked_html(sentence),
        see=see,
    )


def error_in_words(error: str, language: str) -> str:
    """A feed's stored error in the digest's ``language`` (`monitor.health.error_words`);
    in English, the source language, as stored (the words `monitor status` uses)."""
    return error if language == "en" else error_words(error, _translations(language).gettext)


def _notice(notice: HealthNotice, tz: ZoneInfo, language: str, words: NullTranslations) -> _Notice:
    since = _short_date(notice.since, tz, language) if notice.since else "?"
    values = {"since": since, "count": notice.count, "url": notice.url or ""}
    error = ""
    if notice.error:
        error = _one_line(notice.error)
        if notice.kind is not NoticeKind.ALERT_FAILED:
            error = error_in_words(error, language)
        error = _truncate(error, MAX_TITLE_CHARS)
    if notice.kind is NoticeKind.FAILING:
        text = words.ngettext(
            "failing since %(since)s (%(count)d poll)",
            "failing since %(since)s (%(count)d polls)",
            notice.count,
        )
    elif notice.kind is NoticeKind.SILENT:
        text = words.gettext("no new entry since %(since)s, much longer than usual")
    elif notice.kind is NoticeKind.MOVED:
        text = words.gettext("moved to %(url)s: update feeds.yaml (monitor add --replace)")
    elif notice.kind is NoticeKind.GONE:
        text = words.gettext("gone since %(since)s (the server says it no longer exists)")
    else:
        text = words.ngettext(
            "%(count)d alert not delivered since %(since)s",
            "%(count)d alerts not delivered since %(since)s",
            notice.count,
        )
    text %= values
    if error:
        text = words.gettext("%(what)s: %(detail)s") % {"what": text, "detail": error}
    return _Notice(_plain(notice.subject), plain_link(notice.url), text)


def _marked_html(snippet: str) -> Markup:
    # Escape first, then turn the (unescapable) [[ ]] delimiters into <mark>.
    escaped = str(escape(snippet))
    return Markup(_MARK.sub(r"<mark>\1</mark>", escaped))


def _one_line(text: str) -> str:
    """Feed text on one line: controls and line breaks become spaces, NFC-normalised."""
    return one_line(unicodedata.normalize("NFC", text))


def _plain(text: str) -> str:
    return _truncate(_one_line(text), MAX_TITLE_CHARS)


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    # Never leave half a mark behind: an unclosed "[[" would show as literal brackets.
    if cut.rfind("[[") > cut.rfind("]]"):
        cut = cut[: cut.rfind("[[")]
    return cut.rstrip() + "…"


def _truncate_snippet(snippet: str, limit: int = MAX_SNIPPET_CHARS) -> str:
    """A stored snippet cut to `limit` characters of text (what the matcher writes, by
    default) and the two ellipses around it, the marks not counted. A mark past the cut
    is dropped whole, never left half open."""
    budget = limit + 2
    kept: list[str] = []
    # Split with the mark's group: even pieces are plain text, odd ones marked words.
    for index, piece in enumerate(_MARK.split(snippet)):
        if len(piece) > budget:
            if index % 2 == 0:
                kept.append(piece[: max(0, budget - 1)].rstrip() + "…")
            else:
                kept.append("…")
            break
        kept.append(f"[[{piece}]]" if index % 2 else piece)
        budget -= len(piece)
    return "".join(kept)


# --------------------------------------------------------------------------- words and dates


@cache
def _translations(language: str) -> NullTranslations:
    """The message catalogue of `language`, compiled from its .po file (so no compiled
    file can fall behind its source); English is the source language."""
    if language not in LANGUAGES:
        raise ValueError(f"no digest wording for language {language!r}: use one of {LANGUAGES}")
    if language == "en":
        return NullTranslations()
    with open(catalogue_path(language), "rb") as source:
        catalogue = read_po(source, locale=language, domain="monitor")
    compiled = BytesIO()
    write_mo(compiled, catalogue)
    compiled.seek(0)
    return Translations(compiled, domain="monitor")


def catalogue_path(language: str) -> Path:
    return LOCALE_DIRECTORY / language / "LC_MESSAGES" / "monitor.po"


def _short_date(moment: datetime, tz: ZoneInfo, language: str) -> str:
    return str(format_datetime(moment, "d MMM HH:mm", tzinfo=tz, locale=language))


def _long_date(moment: datetime, language: str) -> str:
    return str(format_date(moment.date(), "full", locale=language))


def _medium_date(moment: datetime, language: str) -> str:
    return str(format_date(moment.date(), "medium", locale=language))


def _zone_label(moment: datetime, tz: ZoneInfo) -> str:
    """``Europe/Paris, UTC+1``: the zone every time in the digest is shown in."""
    offset = moment.astimezone(tz).utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    shown = "UTC" if minutes == 0 else f"UTC{sign}{hours}" + (f":{rest:02d}" if rest else "")
    return f"{tz.key}, {shown}"


def _period(
    start: datetime | None, end: datetime, tz: ZoneInfo, language: str, words: NullTranslations
) -> str:
    zone = _zone_label(end, tz)
    if start is None or _short_date(start, tz, language) == _short_date(end, tz, language):
        return words.gettext("until %(end)s (%(zone)s)") % {
            "end": _short_date(end, tz, language),
            "zone": zone,
        }
    return words.gettext("from %(start)s to %(end)s (%(zone)s)") % {
        "start": _short_date(start, tz, language),
        "end": _short_date(end, tz, language),
        "zone": zone,
    }


def _summary(content: DigestContent, words: NullTranslations) -> str:
    fresh = sum(1 for _, hits in content.groups for hit in hits if not hit.in_passing)
    passing = sum(1 for _, hits in content.groups for hit in hits if hit.in_passing)
    backfilled = sum(len(hits) for _, hits in content.backfilled)
    watchlists = len(content.groups)
    if not (fresh or passing or backfilled) and content.notices:
        problems = len(content.notices)
        return words.ngettext(
            "No new story; %(num)d problem needs attention",
            "No new story; %(num)d problems need attention",
            problems,
        ) % {"num": problems}
    parts = []
    if fresh or passing or not backfilled:
        stories = words.ngettext("%(num)d new story", "%(num)d new stories", fresh) % {"num": fresh}
        where = words.ngettext("in %(num)d watchlist", "in %(num)d watchlists", watchlists) % {
            "num": watchlists
        }
        part = f"{stories} {where}"
        if passing:
            part += " " + (
                words.ngettext("(+%(num)d in passing)", "(+%(num)d in passing)", passing)
                % {"num": passing}
            )
        parts.append(part)
    if backfilled:
        parts.append(
            words.ngettext("%(num)d found by backfill", "%(num)d found by backfill", backfilled)
            % {"num": backfilled}
        )
    return ", ".join(parts)


def _autoescape(template_name: str | None) -> bool:
    # Escaping is the default; only templates explicitly named as plain text opt out.
    return not (template_name or "").endswith(".txt.j2")


@cache
def _environment(language: str) -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("monitor", "templates"),
        autoescape=_autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        extensions=["jinja2.ext.i18n"],
    )
    environment.install_gettext_translations(_translations(language), newstyle=True)  # type: ignore[attr-defined]
    return environment
