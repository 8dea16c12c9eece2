"""Article page bytes → `ArticleText`: the trafilatura adapter.

This is the only module that imports trafilatura, and it never fetches (no
`trafilatura.fetch_url`): the pipeline fetches pages with `monitor.fetch` and hands
the bytes here, and `monitor extract URL|FILE` calls the same function, so it
prints exactly what the pipeline matches against.

`extract_page` says what a page yields, or why it cannot be used (too large, not
HTML, no article text, an error inside trafilatura or lxml); whether the feed's own
text is used instead is decided in `monitor.articles`, and nowhere else. Nothing
here raises for any input.

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

Limits: pages over MAX_HTML_BYTES are not parsed at all (lxml's memory grows
with the page, and a hostile page can be tens of megabytes). trafilatura has no
timeout of its own and a pathological page can take tens of seconds: a caller
that must bound time or memory per page runs this code in a worker process.
"""

from __future__ import annotations

import re
from copy import copy
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import trafilatura
from trafilatura.metadata import extract_title
from trafilatura.settings import Extractor, use_config

from monitor.models import ArticleText, TextSource
from monitor.text import decode_certain, drop_related_links, one_line, paragraphs, primary_language

__all__ = [
    "MAX_HTML_BYTES",
    "MIN_ARTICLE_CHARS",
    "PageExtraction",
    "extract_article",
    "extract_page",
]

MAX_HTML_BYTES: int = 5 * 1024 * 1024
# Less extracted text than this is a cookie wall, an error page or a video page, not an article.
MIN_ARTICLE_CHARS = 30

# Our own copy of trafilatura's settings, so nothing depends on its module-level default.
_TRAFILATURA_CONFIG = use_config()
# The extraction options, built once: trafilatura builds them on every call otherwise,
# reading its settings through configparser, which cost 0.35 ms a page (8 % of the
# article step on a 5 KB page). Each page gets a copy carrying its own URL.
_EXTRACTOR = Extractor(
    config=_TRAFILATURA_CONFIG,
    output_format="python",
    comments=False,
    precision=False,
    tables=True,
    fast=True,
    # trafilatura's metadata pass (author, site name, and above all htmldate's date
    # search) costs a third of the extraction time; we need only the title, and the
    # date comes from the feed. Measured: 34.7 pages/s with metadata, 47.9 without.
    with_metadata=False,
)

_META_CHARSET = re.compile(
    rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z][\w.:-]*)""", re.IGNORECASE
)


# --------------------------------------------------------------------------- helpers


def _decode_page(html: bytes) -> str | bytes:
    """Text for a page whose encoding is certain, else the bytes for trafilatura to guess.

    A `<meta charset>` in the first 4 KB counts as a declaration. trafilatura on
    its own ignores it and guesses with charset_normalizer, which misreads short
    Latin-1 French pages.
    """
    declared = _META_CHARSET.search(html[:4096])
    label = declared.group(1).decode("ascii") if declared else None
    text = decode_certain(html, label)
    return html if text is None else text


def _options_for(url: str | None) -> Extractor:
    """`_EXTRACTOR` for the page at `url`, as trafilatura would have built it."""
    options = copy(_EXTRACTOR)
    options.url = url
    options.source = url and url.encode("utf-8", "replace").decode("utf-8")
    return options


def _page_language(tree: Any) -> str | None:
    candidates: list[object] = [
        tree.get("lang"),
        tree.get("{http://www.w3.org/XML/1998/namespace}lang"),
    ]
    for meta in tree.iterfind(".//meta"):
        name = (meta.get("http-equiv") or meta.get("property") or meta.get("name") or "").lower()
        if name in ("content-language", "og:locale", "language", "dc.language"):
            candidates.append(meta.get("content"))
    return next((code for code in map(primary_language, candidates) if code), None)


def _declared_url(tree: Any, url: str | None) -> str | None:
    """The page's own address for itself: ``<link rel=canonical>``, else ``og:url``,
    made absolute against `url`. Whether to believe it is `monitor.stories`' decision."""
    for link in tree.iterfind(".//link"):
        rel = str(link.get("rel") or "").lower().split()
        href = str(link.get("href") or "").strip()
        if "canonical" in rel and href:
            return urljoin(url or "", href)
    for meta in tree.iterfind(".//meta"):
        if str(meta.get("property") or meta.get("name") or "").lower() == "og:url":
            content = str(meta.get("content") or "").strip()
            if content:
                return urljoin(url or "", content)
    return None


# --------------------------------------------------------------------------- API


@dataclass(frozen=True)
class PageExtraction:
    """What a page yields: its main text, or why it cannot be used (`problem`).

    Title and language are kept even when the text cannot be used: they still
    name the article when its feed text is used instead.
    """

    text: str  # paragraphs separated by "\n"; "" when `problem` is set
    title: str
    language: str | None  # declared by the page (lang, Content-Language, og:locale)
    problem: str | None = None
    canonical_url: str | None = None  # the page's <link rel=canonical> or og:url, absolute


def extract_page(html: bytes, *, url: str | None) -> PageExtraction:
    """Main text, title and language of an article page, or the reason it has none.

    `url` is the page's final URL, used by trafilatura for metadata.
    """
    if not html.strip():
        return PageExtraction("", "", None, "the page is empty")
    if len(html) > MAX_HTML_BYTES:
        return PageExtraction(
            "",
            "",
            None,
            f"the page is {len(html) / 1048576:.1f} MiB, over the "
            f"{MAX_HTML_BYTES // 1048576} MiB extraction limit",
        )
    try:
        tree = trafilatura.load_html(_decode_page(html))
        if tree is None:
            return PageExtraction("", "", None, "the page is not HTML")
        page_language = _page_language(tree)
        page_title = one_line(extract_title(tree))
        canonical = _declared_url(tree, url)
        document = trafilatura.bare_extraction(tree, url=url, options=_options_for(url))
    except Exception as error:  # lxml and trafilatura raise a wide variety on junk input
        reason = f"the page could not be extracted ({type(error).__name__}: {error})"
        return PageExtraction("", "", None, reason)
    text = drop_related_links(paragraphs(getattr(document, "text", None)))
    if len(text) < MIN_ARTICLE_CHARS:
        return PageExtraction(
            "", page_title, page_language, "the page yielded no article text", canonical
        )
    return PageExtraction(text, page_title, page_language, canonical_url=canonical)


def extract_article(html: bytes, *, url: str | None) -> ArticleText:
    """The article of a page on its own, with no feed entry behind it (`monitor extract`,
    `monitor explain`). A page that yields nothing gives an empty text with a note."""
    page = extract_page(html, url=url)
    return ArticleText(
        url=url,
        title=page.title,
        text=page.text,
        source=TextSource.PAGE,
        note=page.problem,
        language=page.language,
    )
