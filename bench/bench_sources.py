"""Benchmark: editing feeds.yaml and OPML in and out, at the sizes a real user reaches.

    .venv/bin/python bench/bench_sources.py          # feeds.yaml of 100, 500 and 2,000 feeds
    .venv/bin/python bench/bench_sources.py --quick  # 100 and 500 feeds

For each size, a feeds.yaml in the bundled file's style (comments, seven watchlists)
is written to a temporary folder and, each timed separately (best of 3):

- ``check``: loading it with the project's loader, as `monitor check` and the daemon's
  live reload do: the reference, since an edit validates its result the same way;
- ``add``: one feed appended (read, splice, validate the old and the new text with the
  project's loader, write a temporary file, fsync, rename, load again): what
  `monitor add` costs once discovery is done;
- ``remove``: the same for one feed removed;
- ``export``: the whole list as OPML 2.0;
- ``import``: the NetNewsWire export from the corpus (207 feeds, ../shared/corpus or
  $MONITOR_CORPUS), read, checked for duplicates and appended in one edit.

Then discovery of a page with one ``<link rel="alternate">`` on a local server (2
requests), and of a site found only through robots.txt (10 requests: the page, the home
page, six usual paths, robots.txt, the sitemap), each the median of 5 runs: with
immediate answers, then with 100 ms before each response (the candidates of one step
are fetched at once, two at a time on one host: the fetcher's default per-host limit).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from monitor.config import load_config  # noqa: E402
from monitor.fetch import Fetcher  # noqa: E402
from monitor.sources.discover import USUAL_PATHS, discover  # noqa: E402
from monitor.sources.edit import FeedsDocument, NewFeed, save  # noqa: E402
from monitor.sources.opml import read_opml  # noqa: E402
from monitor.sources.plan import export_opml, plan_import, plan_removal  # noqa: E402
from tests.corpus import corpus_path  # noqa: E402
from tests.servers import HTTPTestServer, Reply  # noqa: E402

LATENCY = 0.1  # seconds the server waits before each response, as a distant site would


def config_text(feeds: int) -> str:
    bundled = (REPO / "feeds.yaml").read_text(encoding="utf-8")
    head, rest = bundled.split("feeds:\n", 1)
    tail = rest[
        rest.index(
            "# ---------------------------------------------------------------------------- sets"
        ) :
    ]
    items = "".join(
        f"  # feed {number}\n  - url: https://site{number}.example.org/rss\n"
        f"    name: Feed {number}\n    tags: [t{number % 7}]\n    interval: 30m\n"
        for number in range(feeds)
    )
    # The bundled watchlists scope some of them by name: keep those names valid.
    named = "".join(
        f"  - url: https://bundled{index}.example.org/rss\n    name: {name}\n"
        for index, name in enumerate(
            ["RFI Afrique", "Jeune Afrique", "Le Monde Afrique", "France 24 Afrique", "BBC Afrique"]
        )
    )
    return head + "feeds:\n" + named + items + "\n" + tail


def best_of(runs: int, step: Callable[[], None], reset: Callable[[], None]) -> float:
    times = []
    for _ in range(runs):
        reset()
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return min(times)


def bench_file(feeds: int, folder: Path, opml: bytes | None) -> None:
    path = folder / f"feeds-{feeds}.yaml"
    original = config_text(feeds)

    def reset() -> None:
        path.write_text(original, encoding="utf-8")

    def add() -> None:
        document = FeedsDocument.read(path)
        save(
            document, document.with_added([NewFeed(url="https://new.example.org/rss", name="New")])
        )

    def remove() -> None:
        document = FeedsDocument.read(path)
        save(document, plan_removal(document, "Feed 3")[1])

    def export() -> None:
        export_opml(FeedsDocument.read(path), created=datetime.now(UTC))

    def import_opml() -> None:
        assert opml is not None
        document = FeedsDocument.read(path)
        plan = plan_import(document, read_opml(opml, source="Subs.opml"))
        save(document, document.with_added(plan.added))

    def check() -> None:
        load_config(path)

    size = len(original.encode()) // 1024
    figures = [
        f"check {best_of(3, check, reset) * 1000:7.1f} ms",
        f"add {best_of(3, add, reset) * 1000:7.1f} ms",
        f"remove {best_of(3, remove, reset) * 1000:7.1f} ms",
        f"export {best_of(3, export, reset) * 1000:6.1f} ms",
    ]
    if opml is not None:
        figures.append(f"import 207 feeds {best_of(3, import_opml, reset) * 1000:7.1f} ms")
    print(f"{feeds + 5:5d} feeds ({size:4d} KiB): " + ", ".join(figures))


def bench_discovery() -> None:
    rss = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
        b"<item><title>a</title><link>https://example.org/a</link></item></channel></rss>"
    )
    html = b'<html><head><link rel="alternate" type="application/rss+xml" href="/feed.xml"></head></html>'
    sitemap = b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>https://example.org/a</loc></url></urlset>'
    for delay in (0.0, LATENCY):
        linked = {
            "/linked": Reply(headers={"Content-Type": "text/html"}, body=html, delay=delay),
            "/feed.xml": Reply(body=rss, delay=delay),
        }
        sitemap_only = {
            "/page": Reply(
                headers={"Content-Type": "text/html"}, body=b"<html></html>", delay=delay
            ),
            "/": Reply(headers={"Content-Type": "text/html"}, body=b"<html></html>", delay=delay),
            "/robots.txt": Reply(body=b"Sitemap: /sitemap.xml\n", delay=delay),
            "/sitemap.xml": Reply(body=sitemap, delay=delay),
        }
        for path in USUAL_PATHS:
            sitemap_only[path] = Reply(404, body=b"not found", delay=delay)
        with Fetcher() as fetcher:
            for label, routes, start in (
                ("a page with one link", linked, "/linked"),
                ("a sitemap-only site", sitemap_only, "/page"),
            ):
                with HTTPTestServer(routes) as server:
                    times = []
                    for _ in range(5):
                        before = len(server.requests)
                        started = time.perf_counter()
                        found = discover(server.url(start), fetcher)
                        times.append(time.perf_counter() - started)
                        requests = len(server.requests) - before
                    assert found.candidates
                print(
                    f"discovery, {label}, {delay * 1000:.0f} ms per response: "
                    f"{statistics.median(times) * 1000:.1f} ms for {requests} requests "
                    f"({requests * delay * 1000:.0f} ms of latency if made one after another)"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 and 500 feeds only")
    arguments = parser.parse_args()
    corpus = corpus_path()
    subs = corpus / "feeds" / "netnewswire" / "Subs.opml" if corpus else None
    opml = subs.read_bytes() if subs and subs.exists() else None
    if opml is None:
        print("corpus not found: the import figure is skipped")
    sizes = (100, 500) if arguments.quick else (100, 500, 2000 - 5 - 207 - 1)
    with tempfile.TemporaryDirectory() as folder:
        for feeds in sizes:
            bench_file(feeds, Path(folder), opml)
    bench_discovery()


if __name__ == "__main__":
    main()
