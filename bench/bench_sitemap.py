"""Benchmark reading sitemaps: parse time and peak memory of the largest sitemap allowed
(50,000 URLs, Google News fields on each), plain and gzipped, and of choosing what a
poll reads from it.

    .venv/bin/python bench/bench_sitemap.py            # 50,000 URLs
    .venv/bin/python bench/bench_sitemap.py --urls 5000

Each measurement runs in a fresh process, so the peak memory printed is that of one
parse alone (growth of the resident set over the interpreter with monitor imported).
"""

from __future__ import annotations

import argparse
import gzip
import multiprocessing
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.fetch.decoding import gunzip_file
from monitor.models import ParseFailed
from monitor.sitemaps import entries_to_read, parse_sitemap

NEWEST = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def news_sitemap(count: int) -> bytes:
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
        'xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">\n'
    ]
    for n in range(count):
        published = (NEWEST - timedelta(minutes=7 * n)).isoformat()
        parts.append(
            f"<url><loc>https://www.example.org/afrique/article/{n:06d}-le-togo-et-la-cedeao"
            f".html</loc><news:news><news:publication><news:name>Le Quotidien</news:name>"
            f"<news:language>fr</news:language></news:publication>"
            f"<news:publication_date>{published}</news:publication_date>"
            f"<news:title>Le Togo et la Cédéao : dépêche n° {n} &amp; suite</news:title>"
            f"</news:news></url>\n"
        )
    parts.append("</urlset>\n")
    return "".join(parts).encode()


def _measure(
    body: bytes, gzipped: bool, queue: multiprocessing.Queue[tuple[float, int, int]]
) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    content = gunzip_file(body, 1024**3) if gzipped else body
    parsed = parse_sitemap(content, url="https://www.example.org/sitemap_news.xml")
    assert not isinstance(parsed, ParseFailed), parsed
    chosen, _ = entries_to_read(parsed.entries, NEWEST - timedelta(days=2), 200)
    assert len(chosen) == min(200, len(parsed.entries))
    elapsed = time.perf_counter() - started
    growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
    queue.put((elapsed, growth, len(parsed.entries)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--urls", type=int, default=50_000)
    arguments = parser.parse_args()
    body = news_sitemap(arguments.urls)
    packed = gzip.compress(body)
    print(f"sitemap: {arguments.urls:,} URLs, {len(body) / 2**20:.1f} MiB "
          f"({len(packed) / 2**20:.2f} MiB gzipped)")  # fmt: skip
    context = multiprocessing.get_context("spawn")
    for label, data, gzipped in (("plain", body, False), ("gzipped", packed, True)):
        queue: multiprocessing.Queue[tuple[float, int, int]] = context.Queue()
        process = context.Process(target=_measure, args=(data, gzipped, queue))
        process.start()
        elapsed, growth, entries = queue.get()
        process.join()
        print(
            f"{label:8} parse + choose 200: {elapsed:.2f} s, {entries / elapsed:,.0f} URLs/s, "
            f"peak memory growth {growth / 2**20:.0f} MiB"
        )


if __name__ == "__main__":
    main()
