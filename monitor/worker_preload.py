"""Imported once by the extraction workers' fork server, never by the daemon itself.

It loads what every worker needs so that workers forked from the server share
it copy-on-write instead of each loading its own: the extraction code, the
language-identification model (about 70 MB), and what trafilatura and the
matcher only build on their first article (run here on a small page). Then
`gc.freeze()` moves all of it out of the garbage collector's sight: a worker's
collections would otherwise write to every object's header, copying each page
that holds one into the worker's own memory.

It also ties the fork server's life to the daemon's (`die_with_parent`), so
that a daemon killed with SIGKILL leaves no fork server, and so no worker, behind.
"""

import gc
from datetime import UTC, datetime

from monitor.articles import process_article
from monitor.matching import Matcher, detect_language
from monitor.models import ArticleJob, Entry, Fetched
from monitor.workers import die_with_parent

die_with_parent()

detect_language("Le Togo et le Bénin signent un accord de coopération.")

_PAGE = (
    "<!DOCTYPE html><html lang='fr'><head><meta charset='utf-8'><title>Accord</title></head>"
    "<body><nav>Accueil</nav><article><h1>Le Togo et le Bénin signent un accord</h1>"
    + "<p>Le Togo et le Bénin signent un accord de coopération militaire à Lomé, "
    "a annoncé le gouvernement mardi soir dans un communiqué.</p>"
    * 4
    + "</article><footer>©</footer></body></html>"
).encode()
process_article(
    ArticleJob(
        entry=Entry(
            key="preload",
            link="https://example.org/preload.html",
            title="Le Togo et le Bénin signent un accord",
            summary="",
            content="",
            published=datetime(2026, 1, 1, tzinfo=UTC),
        ),
        feed_name="preload",
        feed_language=None,
        page=Fetched(
            url="https://example.org/preload.html",
            status=200,
            headers={"content-type": "text/html; charset=utf-8"},
            content=_PAGE,
        ),
    ),
    Matcher(()),
)
gc.collect()
gc.freeze()
