"""Article page bytes → `ArticleText`: the trafilatura adapter.

This is the only module that imports trafilatura, and it never fetches (no
`trafilatura.fetch_url`): the pipeline fetches pages with `monitor.fetch` and hands
the bytes here, and `monitor extract URL|FILE` calls the same function, so it
prints exactly what the pipeline matches against.

When the page cannot be used (too large, not HTML, no article text, an error inside
trafilatura or lxml) and the feed entry is known, the entry's own text is used
instead and `ArticleText.note` says why. The entry's content also wins when it is
more than twice as long as the page's text: a paywall or consent page then stands
between us and the article the feed already carries. Nothing here raises for any
input.

Extraction settings, measured on the 241 pages of ../shared/corpus/articles that
carry a full-text ground truth (token F1, whitespace tokens, lower-cased, multiset
overlap; see tests/test_extract.py)::

    trafilatura.extract(html) defaults                        F1 0.919   48 pages/s
    favor_recall=True                                         F1 0.922
    favor_precision=True                                      F1 0.926
    include_comments=False                                    F1 0.937
    include_comments=False, favor_recall=True                 F1 0.939
    include_comments=False, favor_precision=True              F1 0.940   34 pages/s
    include_comments=False, include_tables=False              F1 0.934
    include_comments=False, deduplicate=True                  F1 0.898
    include_comments=False, fast=True, favor_precision=True   F1 0.911
    include_comments=False, fast=True              (chosen)   F1 0.938   51-57 pages/s

(pages/s: one core, with trafilatura's metadata pass off except for the defaults
line.) ``fast`` skips trafilatura's fallback extractors (readability-lxml and
jusText); on news pages its own extractor alone is as good and 1.5 times as fast,
which is what lets polling keep both cores ahead of bare trafilatura on one.

On the 139 trafilatura-eval pages the chosen settings leak fewer boilerplate
snippets than the defaults (12.5 % of must-not-contain snippets found, against
15 %; 10 % with favor_precision and the fallbacks) while finding nearly as many
must-contain snippets (92.6 % against 94 %). Reader comments and sidebars are
where false watchlist hits come from, so comments stay out.

Limits (RELIABILITY §0.11, B13): pages over MAX_HTML_BYTES are not parsed at all.
trafilatura has no timeout of its own; a caller that must bound time or memory per
page runs this function in a worker process.
"""

from __future__ import annotations

import codecs
import re
from typing import Any

import trafilatura
from trafilatura.metadata import extract_title
from trafilatura.settings import use_config

from monitor.models import ArticleText, Entry, TextSource

__all__ = ["MAX_HTML_BYTES", "MIN_ARTICLE_CHARS", "extract_article", "fallback_article"]

MAX_HTML_BYTES: int = 5 * 1024 * 1024
# Less extracted text than this is a cookie wall, an error page or a video page, not an article.
MIN_ARTICLE_CHARS = 30

_EXTRACTION_OPTIONS: dict[str, Any] = {
    "include_comments": False,
    "favor_precision": False,
    "include_tables": True,
    "fast": True,
    # trafilatura's metadata pass (author, site name, and above all htmldate's date
    # search) costs a third of the extraction time; we need only the title, and the
    # date comes from the feed. Measured: 34.7 pages/s with metadata, 47.9 without.
    "with_metadata": False,
}
# Our own copy of trafilatura's settings, so nothing depends on its module-level default.
_TRAFILATURA_CONFIG = use_config()

_META_CHARSET = re.compile(
    rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z][\w.:-]*)""", re.IGNORECASE
)
# WHATWG: pages labelled Latin-1 or ASCII are windows-1252.
_LATIN1_LABELS = frozenset({"latin-1", "iso8859-1", "ascii", "cp1252"})
_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SPACES = re.compile(r"\s+")


# --------------------------------------------------------------------------- helpers


def _decode_page(html: bytes) -> str | bytes:
    """Text for a page whose encoding is certain, else the bytes for trafilatura to guess.

    A byte order mark wins, then valid UTF-8 (Latin-1 prose is almost never valid
    UTF-8), then a `<meta charset>` in the first 4 KB. trafilatura on its own ignores
    `<meta charset>` and guesses with charset_normalizer, which misreads short
    Latin-1 French pages.
    """
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if html.startswith(bom):
            return html[len(bom) :].decode(encoding, errors="replace")
    try:
        return html.decode("utf-8")
    except UnicodeDecodeError:
        pass
    declared = _META_CHARSET.search(html[:4096])
    if declared:
        try:
            codec = codecs.lookup(declared.group(1).decode("ascii")).name
        except LookupError:
            return html
        if codec in _LATIN1_LABELS:
            codec = "cp1252"
        if codec != "utf-8":
            try:
                return html.decode(codec)
            except UnicodeDecodeError:
                pass
    return html


def _page_language(tree: Any) -> str | None:
    candidates: list[object] = [
        tree.get("lang"),
        tree.get("{http://www.w3.org/XML/1998/namespace}lang"),
    ]
    for meta in tree.iterfind(".//meta"):
        name = (meta.get("http-equiv") or meta.get("property") or meta.get("name") or "").lower()
        if name in ("content-language", "og:locale", "language", "dc.language"):
            candidates.append(meta.get("content"))
    return next((code for code in map(_primary_language, candidates) if code), None)


def _primary_language(tag: object) -> str | None:
    if not isinstance(tag, str):
        return None
    primary = re.split(r"[-_,\s]", tag.strip(), maxsplit=1)[0].lower()
    return primary if re.fullmatch(r"[a-z]{2,3}", primary) else None


def _one_line(text: object) -> str:
    if not isinstance(text, str):
        return ""
    return _SPACES.sub(" ", _CONTROL_CHARS.sub(" ", text)).strip()


def _paragraphs(text: object) -> str:
    if not isinstance(text, str):
        return ""
    lines = (_one_line(line) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


# --------------------------------------------------------------------------- API


def fallback_article(
    entry: Entry, *, url: str | None, reason: str, feed_language: str | None = None
) -> ArticleText:
    """The feed entry's own text, for when its page could not be fetched or used.

    `reason` says what went wrong (the fetch error message, for instance); it is kept
    in `ArticleText.note` so the user can see why an article was matched on its
    summary only.
    """
    return ArticleText(
        url=url or entry.link,
        title=entry.title,
        text=entry.content or entry.summary,
        source=TextSource.FEED,
        note=f"{reason}; using the feed's text",
        language=entry.language or feed_language,
        published=entry.published,
    )


def extract_article(
    html: bytes,
    *,
    url: str | None,
    entry: Entry | None = None,
    feed_language: str | None = None,
) -> ArticleText:
    """Main text, title and language of an article page.

    `url` is the page's final URL (used for metadata and kept in the result); `entry`
    is the feed entry that linked to it, whose text is the fallback. Without an entry
    a page that yields nothing gives an empty text with a note.
    """

    def give_up(reason: str, page_title: str = "", page_language: str | None = None) -> ArticleText:
        if entry is not None:
            fallback = fallback_article(entry, url=url, reason=reason, feed_language=feed_language)
            if not fallback.title and page_title:
                return ArticleText(
                    url=fallback.url,
                    title=page_title,
                    text=fallback.text,
                    source=fallback.source,
                    note=fallback.note,
                    language=fallback.language or page_language,
                    published=fallback.published,
                )
            return fallback
        return ArticleText(
            url=url,
            title=page_title,
            text="",
            source=TextSource.PAGE,
            note=reason,
            language=page_language or feed_language,
        )

    if not html.strip():
        return give_up("the page is empty")
    if len(html) > MAX_HTML_BYTES:
        return give_up(
            f"the page is {len(html) / 1048576:.1f} MiB, over the "
            f"{MAX_HTML_BYTES // 1048576} MiB extraction limit"
        )
    try:
        tree = trafilatura.load_html(_decode_page(html))
        if tree is None:
            return give_up("the page is not HTML")
        page_language = _page_language(tree)
        page_title = _one_line(extract_title(tree))
        document = trafilatura.bare_extraction(
            tree, url=url, config=_TRAFILATURA_CONFIG, **_EXTRACTION_OPTIONS
        )
    except Exception as error:  # lxml and trafilatura raise a wide variety on junk input
        return give_up(f"the page could not be extracted ({type(error).__name__}: {error})")

    text = _paragraphs(getattr(document, "text", None))
    if len(text) < MIN_ARTICLE_CHARS:
        return give_up("the page yielded no article text", page_title, page_language)
    if entry is not None and len(entry.content) > 2 * len(text):
        return give_up(
            f"the page yielded much less text ({len(text)} characters) than the feed's "
            f"content ({len(entry.content)} characters), as a paywall or consent page does",
            page_title,
            page_language,
        )
    entry_language = entry.language if entry is not None else None
    return ArticleText(
        url=url or (entry.link if entry is not None else None),
        title=page_title or (entry.title if entry is not None else ""),
        text=text,
        source=TextSource.PAGE,
        language=page_language or entry_language or feed_language,
        published=entry.published if entry is not None else None,
    )
