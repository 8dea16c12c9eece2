"""Benchmark one full poll: fetch, parse, extract, match and store, against a slow local server.

    .venv/bin/python bench/bench_poll.py            # 20 feeds x 10 articles, 1,000-feed re-poll
    .venv/bin/python bench/bench_poll.py --quick    # smaller, for a smoke run
    .venv/bin/python bench/bench_poll.py --world small --repoll-feeds 0   # 20 feeds x 60 small pages

What it does, in one process tree on this machine only (127.0.0.x):

1. Serves N feeds with M new articles each, for each of --polls polls. The articles
   are real pages from ../shared/corpus/articles (--world full), or small pages of
   4-6 KB made from the corpus's BBC Afrique articles (--world small: 60 per feed,
   one host per feed); every response is delayed by --latency (100 ms). Feeds are
   spread over several loopback addresses (127.0.0.2, 127.0.0.3, ...) so the
   per-host limit behaves as it would with many sites.
2. Before each poll, times bare `trafilatura.extract` over that poll's pages on one
   core: the reference articles/s, and its CPU per page.
3. Runs `Pipeline.poll_all` on the poll's feeds (a fresh database for the first) and
   prints feeds/s, articles/s (and the ratio to bare trafilatura), the CPU of the
   main process, the extraction workers and the servers, per article too, with the
   ratio that CPU alone allows on idle cores, peak memory of the main process and of
   each extraction worker, and where the time went.
4. Serves 1,000 small feeds, polls them once, then times a second poll of all
   of them unchanged (half answer 304 to conditional requests, half ignore the
   validators and resend an identical body, which must not be parsed again).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import json
import multiprocessing
import os
import re
import resource
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.procfs import free_port
from monitor.config import Config, DigestSettings, PollSettings
from monitor.models import FeedSpec, Watchlist, utc_now
from monitor.pipeline import Pipeline
from monitor.query import from_lists, parse_query
from monitor.service import open_pipeline
from monitor.store import Store
from monitor.workers import ExtractionPool

CORPUS = Path(
    os.environ.get("MONITOR_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus")
)
PUBLISHED = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
FULL_TEXT_GROUPS = ("aeb-scrapinghub", "newspaper4k", "dragnet", "readability", "goose3")


def corpus_pages(limit: int) -> list[tuple[str, bytes]]:
    """(title, html) of real corpus pages, cycling when more are asked than exist."""
    pages: list[tuple[str, bytes]] = []
    for group in FULL_TEXT_GROUPS:
        for meta_path in sorted((CORPUS / "articles" / group).glob("*.json")):
            html_path = meta_path.with_suffix(".html.gz")
            if not html_path.exists():
                continue
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            title = (meta.get("metadata") or {}).get("title") or meta.get("id") or meta_path.stem
            pages.append((str(title), gzip.decompress(html_path.read_bytes())))
    if not pages:
        raise SystemExit(f"no corpus pages under {CORPUS / 'articles'}; set MONITOR_CORPUS")
    return [pages[index % len(pages)] for index in range(limit)]


SMALL_PAGE_BYTES = (4_000, 6_000)
_SENTENCE_END = re.compile(r"(?<=[.!?»])\s+")


def small_pages(limit: int) -> list[tuple[str, bytes]]:
    """(title, html) of small article pages (4-6 KB), as wire services and mobile sites
    serve them: a head with the usual meta tags, a short menu, the headline and the
    article's real text (BBC Afrique articles from ../shared/corpus/articles/masakhanews-fra,
    in French) cut to fit, a few related links and a footer."""
    source = CORPUS / "articles" / "masakhanews-fra"
    rows: list[dict[str, str]] = []
    for name in ("masakhanews_fra_test.tsv.gz", "masakhanews_fra_train_50shot.tsv.gz"):
        path = source / name
        if path.exists():
            text = gzip.decompress(path.read_bytes()).decode("utf-8")
            rows.extend(csv.DictReader(text.splitlines(), delimiter="\t"))
    rows = [row for row in rows if len(row["text"]) >= 4_000]
    if not rows:
        raise SystemExit(f"no BBC Afrique articles under {source}; set MONITOR_CORPUS")
    pages: list[tuple[str, bytes]] = []
    for index in range(limit):
        row = rows[index % len(rows)]
        low, high = SMALL_PAGE_BYTES
        target = low + (index * 7919) % (high - low)  # spread over the range, reproducibly
        pages.append((row["headline"], _small_page(row, index, target)))
    return pages


def _small_page(row: dict[str, str], index: int, target: int) -> bytes:
    title = row["headline"]
    url = row.get("url") or f"https://www.bbc.com/afrique/monde-{60_000_000 + index}"
    sections = (
        "monde", "afrique", "economie", "sport", "culture", "video", "podcasts",
    )  # fmt: skip
    menu = "".join(
        f'<li class="nav__item"><a class="nav__link" href="/afrique/{section}">'
        f"<span>{section.title()}</span></a></li>"
        for section in sections
    )
    share = "".join(
        f'<li><a class="share__{site}" href="https://{site}.com/share?u={index}">'
        f'<span class="visually-hidden">Partager sur {site}</span></a></li>'
        for site in ("facebook", "twitter", "whatsapp")
    )
    head = (
        '<!DOCTYPE html><html lang="fr"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} - BBC Afrique</title>"
        f'<link rel="canonical" href={quoteattr(url)}>'
        f'<meta property="og:title" content={quoteattr(title)}>'
        f'<meta property="og:url" content={quoteattr(url)}>'
        '<script type="application/ld+json">{"@context":"https://schema.org",'
        f'"@type":"NewsArticle","url":{json.dumps(url)},"datePublished":"2026-11-27T12:00:00Z",'
        '"publisher":{"@type":"Organization","name":"BBC Afrique"}}</script>'
        '<link rel="stylesheet" href="/static/m.css"></head><body>'
        '<div id="page" class="page"><header class="header"><div class="header__inner">'
        '<a href="/afrique" class="header__logo"><span>BBC Afrique</span></a>'
        f'<nav class="nav"><ul class="nav__list">{menu}</ul></nav></div></header>'
        '<main id="main" class="main"><article class="story"><div class="story__header">'
        f'<h1 class="story__title">{escape(title)}</h1><div class="story__meta">'
        '<span class="byline">Par la rédaction</span> '
        '<time datetime="2026-11-27T12:00:00Z">27 novembre 2026</time></div>'
        f'<ul class="share">{share}</ul></div>'
        '<figure class="story__image"><img src="/img/1.jpg" alt="" width="640" height="360">'
        '<figcaption>Photo d\'illustration</figcaption></figure><div class="story__body">'
    )
    related = "".join(
        f'<li class="related__item"><a href="/afrique/region-{index * 10 + n}">'
        f'<span class="related__title">Lire aussi : article {n}</span></a></li>'
        for n in range(3)
    )
    tail = (
        '</div></article><aside class="related"><h2>Sur le même sujet</h2>'
        f'<ul class="related__list">{related}</ul></aside></main>'
        '<footer class="footer"><ul>'
        + "".join(
            f'<li><a href="/{link}">{link.title()}</a></li>'
            for link in ("conditions", "confidentialite", "contact")
        )
        + "</ul><p>© 2026 BBC.</p></footer></div>"
        '<script src="/static/m.js" defer></script></body></html>'
    )
    budget = target - len(head.encode()) - len(tail.encode())
    body: list[str] = []
    sentences = _SENTENCE_END.split(row["text"])
    for sentence in sentences:
        # Wire copy marks up names and places, and links some of them.
        words = [
            f'<a href="/topics/{n}">{escape(word)}</a>'
            if n % 11 == 5
            else f"<b>{escape(word)}</b>"
            if n % 11 == 8
            else escape(word)
            for n, word in enumerate(sentence.split())
        ]
        paragraph = f'<div class="text-block"><p><span>{" ".join(words)}</span></p></div>'
        if sum(len(part.encode()) for part in body) + len(paragraph.encode()) > budget:
            break
        body.append(paragraph)
    return (head + "".join(body) + tail).encode("utf-8")


def rss(title: str, items: Sequence[tuple[str, str | None, str]]) -> bytes:
    """An RSS 2.0 document with (title, link, description) items."""
    parts = [
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>{escape(title)}</title>'
    ]
    for index, (item_title, link, description) in enumerate(items):
        parts.append("<item>")
        parts.append(f"<title>{escape(item_title)}</title>")
        parts.append(f'<guid isPermaLink="false">{escape(title)}-{index}</guid>')
        if link:
            parts.append(f"<link>{escape(link)}</link>")
        parts.append(f"<description>{escape(description)}</description>")
        parts.append(f"<pubDate>{format_datetime(PUBLISHED)}</pubDate></item>")
    parts.append("</channel></rss>")
    return "".join(parts).encode("utf-8")


# --------------------------------------------------------------------------- server process


def serve(host: str, port: int, routes: dict[str, bytes], latency: float, ready: object) -> None:
    etags = {path: '"' + hashlib.sha1(body).hexdigest()[:16] + '"' for path, body in routes.items()}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: with Nagle's algorithm the body then
        # waits for the client's delayed ACK, adding 40 ms to every response.
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            time.sleep(latency)
            body = routes.get(self.path)
            if body is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            honours_validators = not self.path.endswith("-noetag.xml")
            etag = etags[self.path]
            if honours_validators and self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.send_header("ETag", etag)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            content_type = (
                "application/rss+xml" if self.path.endswith(".xml") else "text/html; charset=utf-8"
            )
            self.send_header("Content-Type", content_type)
            if honours_validators:
                self.send_header("ETag", etag)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 256
    server = ThreadingHTTPServer((host, port), Handler)
    ready.set()  # type: ignore[attr-defined]
    server.serve_forever()


class Servers:
    """One server process per loopback address; routes decide what each host serves."""

    def __init__(
        self, routes_by_host: dict[str, dict[str, bytes]], latency: float, port: int
    ) -> None:
        self.processes: list[multiprocessing.Process] = []
        self.port = port
        for host, routes in routes_by_host.items():
            ready = multiprocessing.Event()
            process = multiprocessing.Process(
                target=serve, args=(host, self.port, routes, latency, ready), daemon=True
            )
            process.start()
            if not ready.wait(30):
                raise SystemExit(f"server on {host}:{self.port} did not start")
            self.processes.append(process)

    def close(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.join(5)


def hosts(count: int) -> Iterator[str]:
    for index in range(count):
        yield f"127.0.0.{2 + index}"


# --------------------------------------------------------------------------- configuration


def watchlists() -> tuple[Watchlist, ...]:
    sets = {"russie": ["Russie", "Moscou", "Kremlin", "Fédération de Russie", "Wagner"]}
    specs = [
        (
            "Togo — coopération militaire",
            from_lists(
                ["Togo"], ["coopération militaire", "accord de défense"], ["football"], sets
            ),
        ),
        ("Russie", parse_query("@russie AND (militaire OR défense OR sécurité)", sets)),
        (
            "Elections",
            parse_query("(election OR élection OR vote) NEAR/8 (president OR président)", sets),
        ),
        ("Tech", parse_query("(Apple OR Google OR Microsoft) AND (antitrust OR regulator*)", sets)),
        ("Climate", parse_query('"climate change" OR "changement climatique" OR emissions', sets)),
        ("Economy", parse_query('(inflation OR recession OR "interest rates") NOT sport*', sets)),
    ]
    return tuple(Watchlist(name=name, query=query) for name, query in specs)


def make_config(root: Path, feeds: list[FeedSpec], concurrency: int, per_host: int = 2) -> Config:
    return Config(
        path=root / "feeds.yaml",
        database=root / "bench.db",
        timezone=ZoneInfo("UTC"),
        poll=PollSettings(concurrency=concurrency, per_host=per_host, timeout=60.0),
        feeds=tuple(feeds),
        watchlists=watchlists(),
        digests=(DigestSettings(outbox=root / "digests"),),
    )


# --------------------------------------------------------------------------- measurements


def vm_hwm_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _bare_trafilatura_rate(pages: list[tuple[str, bytes]], result: Any) -> None:
    import trafilatura

    started, cpu_started = time.perf_counter(), time.process_time()
    for _title, html in pages:
        trafilatura.extract(html)
    result[0] = len(pages) / (time.perf_counter() - started)
    result[1] = (time.process_time() - cpu_started) / len(pages)


def vm_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pss_mib(pid: int) -> float:
    """Proportional set size: memory shared with other processes counted once overall."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bare_trafilatura(pages: list[tuple[str, bytes]]) -> tuple[float, float]:
    """Pages/s of bare `trafilatura.extract` on one core, and its CPU seconds per page, in
    a child process so its memory and caches do not count against the pipeline's figures."""
    result = multiprocessing.Array("d", 2)
    process = multiprocessing.Process(target=_bare_trafilatura_rate, args=(pages, result))
    process.start()
    process.join()
    return float(result[0]), float(result[1])


def full_poll(args: argparse.Namespace, pages: list[tuple[str, bytes]]) -> None:
    """`args.polls` polls of different feeds in one pipeline: the first right after
    start-up (each worker loads its language model and builds its matcher on the way),
    the next ones with warm workers, as a running daemon polls. Each poll is timed right
    after bare trafilatura on its own pages, so that both see the same machine."""
    host_list = list(hosts(args.hosts))
    routes: dict[str, dict[str, bytes]] = {host: {} for host in host_list}
    feeds: list[FeedSpec] = []
    feed_pages: list[list[tuple[str, bytes]]] = []
    # The port is chosen before routes are built because feed items carry absolute links.
    port = free_port()
    for feed_index in range(args.polls * args.feeds):
        host = host_list[feed_index % len(host_list)]
        items = []
        feed_pages.append([])
        for article_index in range(args.articles):
            title, html = pages[(feed_index * args.articles + article_index) % len(pages)]
            feed_pages[-1].append((title, html))
            path = f"/page/{feed_index}/{article_index}.html"
            routes[host][path] = html
            items.append((title, f"http://{host}:{port}{path}", title))
        feed_path = f"/feed/{feed_index}.xml"
        routes[host][feed_path] = rss(f"Feed {feed_index}", items)
        feeds.append(
            FeedSpec(
                url=f"http://{host}:{port}{feed_path}",
                name=f"Feed {feed_index}",
                interval=timedelta(minutes=15),
            )
        )

    servers = Servers(routes, args.latency, port)
    sizes = sorted(len(html) for _title, html in pages)
    ratios: list[float] = []
    try:
        print(
            f"pages: {len(pages)} {args.world} pages ({sizes[0] / 1024:.1f}-{sizes[-1] / 1024:.1f} KB, "
            f"median {sizes[len(sizes) // 2] / 1024:.1f} KB); each poll: {args.feeds} feeds x "
            f"{args.articles} new articles on {len(host_list)} hosts, "
            f"{args.latency * 1000:.0f} ms latency per response"
        )
        print(
            f"main process before the pipeline starts (the benchmark's own pages and routes): "
            f"{vm_rss_mib(os.getpid()):.0f} MiB"
        )
        with tempfile.TemporaryDirectory() as tmp:
            config = make_config(Path(tmp), feeds, args.concurrency, args.per_host)
            warm_up = time.perf_counter()
            with (
                Store(config.database) as store,
                open_pipeline(
                    config, store, clock=utc_now, extract_workers=args.workers
                ) as pipeline,
            ):
                warm_up = time.perf_counter() - warm_up
                assert isinstance(pipeline.articles, ExtractionPool)
                print(
                    f"starting the {pipeline.articles.workers} extraction workers: {warm_up:.2f} s"
                )
                for number in range(args.polls):
                    label = (
                        "first poll after start"
                        if number == 0
                        else f"poll {number + 1}, warm workers"
                    )
                    batch = slice(number * args.feeds, (number + 1) * args.feeds)
                    poll_pages = [page for group in feed_pages[batch] for page in group]
                    sample = poll_pages[: args.bare_sample or len(poll_pages)]
                    bare_rate, bare_cpu = bare_trafilatura(sample)
                    print(
                        f"\nbare trafilatura.extract, one core, {len(sample)} of this poll's pages: "
                        f"{bare_rate:.1f} articles/s, {bare_cpu * 1000:.2f} ms of CPU a page "
                        f"(load average {load_average()})"
                    )
                    ratios.append(
                        one_poll(
                            label,
                            pipeline,
                            feeds[batch],
                            args.concurrency,
                            bare_rate,
                            bare_cpu,
                            servers,
                        )
                    )
    finally:
        servers.close()
    print(
        "\nratio to bare trafilatura, poll by poll: "
        + ", ".join(f"{ratio:.2f}x" for ratio in ratios)
        + f" (load average now {load_average()})"
    )


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def one_poll(
    label: str,
    pipeline: Pipeline,
    feeds: list[FeedSpec],
    threads: int,
    bare_rate: float,
    bare_cpu: float,
    servers: Servers,
) -> float:
    """Poll `feeds`, print what it did and cost; the ratio of its articles/s to `bare_rate`."""
    pool = getattr(pipeline.articles, "_pool", None)
    worker_pids = list(getattr(pool, "_processes", {}) or {})
    server_pids = [process.pid for process in servers.processes if process.pid is not None]
    workers_before = sum(cpu_seconds(pid) for pid in worker_pids)
    servers_before = sum(cpu_seconds(pid) for pid in server_pids)
    started = time.perf_counter()
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    reports = pipeline.poll_all(feeds, threads=threads)
    elapsed = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    main_cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (
        cpu_after.ru_stime - cpu_before.ru_stime
    )
    workers_cpu = sum(cpu_seconds(pid) for pid in worker_pids) - workers_before
    servers_cpu = sum(cpu_seconds(pid) for pid in server_pids) - servers_before
    worker_peaks = [vm_hwm_mib(pid) for pid in worker_pids]
    worker_pss = [pss_mib(pid) for pid in worker_pids]
    articles = sum(report.new_entries for report in reports)
    failed = [report for report in reports if report.outcome == "failed"]
    fallbacks = sum(report.fallbacks for report in reports)
    hits = sum(report.new_hits for report in reports)
    print(
        f"{label}: {len(reports)} feeds ({len(failed)} failed), {articles} new articles "
        f"({fallbacks} fell back to feed text), {hits} hits in {elapsed:.2f} s "
        f"(load average {load_average()})"
    )
    print(f"  feeds/s:    {len(reports) / elapsed:8.2f}")
    print(
        f"  articles/s: {articles / elapsed:8.2f}   = {articles / elapsed / bare_rate:.2f}x bare "
        f"trafilatura on one core ({os.cpu_count()} cores here)"
    )
    print(
        f"  CPU during the poll: main process {main_cpu:.2f} s ({main_cpu / elapsed:.0%} of one core), "
        f"extraction workers {workers_cpu:.2f} s ({workers_cpu / elapsed:.0%} of one core), "
        f"the benchmark's servers {servers_cpu:.2f} s ({servers_cpu / elapsed:.0%})"
    )
    if articles:
        # What CPU alone allows, whatever else runs on the machine: the cores divided
        # by monitor's CPU per article, against bare trafilatura's on one core.
        per_article = (main_cpu + workers_cpu) / articles
        cores = os.cpu_count() or 1
        print(
            f"  CPU per article: main process {main_cpu / articles * 1000:.2f} ms + workers "
            f"{workers_cpu / articles * 1000:.2f} ms (servers {servers_cpu / articles * 1000:.2f} ms) "
            f"against bare trafilatura's {bare_cpu * 1000:.2f} ms: on {cores} idle cores at most "
            f"{cores * bare_cpu / per_article:.2f}x bare trafilatura"
        )
    print(
        f"  peak memory so far: main process {vm_hwm_mib(os.getpid()):.0f} MiB; extraction workers "
        + ", ".join(f"{peak:.0f} MiB" for peak in worker_peaks)
        + " (RSS, counting pages they share with the fork server; their proportional share now: "
        + ", ".join(f"{pss:.0f} MiB" for pss in worker_pss)
        + ")"
    )
    totals = {
        name: sum(getattr(report.times, name) for report in reports)
        for name in ("fetch", "parse", "page_fetch", "extract", "store")
    }
    print("  where the time went (seconds summed over threads, so waits overlap; 'extract' is the")
    print("  wait for a worker to extract and match a page):")
    for name, seconds in totals.items():
        per = seconds / articles * 1000 if articles else 0.0
        print(f"    {name:<10} {seconds:8.2f} s   {per:7.1f} ms/article")
    return articles / elapsed / bare_rate


def repoll(args: argparse.Namespace) -> None:
    host_list = list(hosts(args.hosts))
    port = free_port()
    routes: dict[str, dict[str, bytes]] = {host: {} for host in host_list}
    feeds = []
    for index in range(args.repoll_feeds):
        host = host_list[index % len(host_list)]
        suffix = "-noetag.xml" if index % 2 else ".xml"
        path = f"/small/{index}{suffix}"
        items = [
            (f"Item {index}-{n}", None, f"Summary {n} of feed {index}: Togo, Lomé, coopération.")
            for n in range(5)
        ]
        routes[host][path] = rss(f"Small feed {index}", items)
        feeds.append(FeedSpec(url=f"http://{host}:{port}{path}", name=f"Small {index}"))
    servers = Servers(routes, args.latency, port)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = make_config(Path(tmp), feeds, args.concurrency, args.per_host)
            with (
                Store(config.database) as store,
                open_pipeline(config, store, clock=utc_now) as pipeline,
            ):
                started = time.perf_counter()
                first = pipeline.poll_all(config.feeds, threads=config.poll.concurrency)
                first_elapsed = time.perf_counter() - started
                started = time.perf_counter()
                second = pipeline.poll_all(config.feeds, threads=config.poll.concurrency)
                elapsed = time.perf_counter() - started
        outcomes: dict[str, int] = {}
        for report in second:
            outcomes[report.outcome.value] = outcomes.get(report.outcome.value, 0) + 1
        print(
            f"\n{len(feeds)} small feeds on {len(host_list)} hosts, {args.latency * 1000:.0f} ms latency, "
            f"concurrency {args.concurrency}, {args.per_host} per host"
        )
        print(
            f"  first poll:        {first_elapsed:6.2f} s ({sum(r.new_entries for r in first)} entries stored)"
        )
        print(f"  unchanged re-poll: {elapsed:6.2f} s  {outcomes}")
        print(f"  peak memory (main process, whole run so far): {vm_hwm_mib(os.getpid()):.0f} MiB")
    finally:
        servers.close()


WORLDS = {
    # world: feeds per poll, articles per feed, hosts, pages timed with bare trafilatura
    "full": (20, 10, 10, 200),
    "small": (20, 60, 20, 0),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--world",
        choices=sorted(WORLDS),
        default="full",
        help="full: real corpus news pages (20 feeds x 10 articles on 10 hosts); small: "
        "4-6 KB wire/mobile pages (20 feeds x 60 articles, one host each)",
    )
    parser.add_argument("--feeds", type=int, help="feeds per poll")
    parser.add_argument("--articles", type=int, help="new articles per feed")
    parser.add_argument("--hosts", type=int, help="loopback addresses to spread feeds over")
    parser.add_argument("--polls", type=int, default=2, help="polls of new feeds, one pipeline")
    parser.add_argument(
        "--latency", type=float, default=0.1, help="seconds added to every response"
    )
    parser.add_argument(
        "--concurrency", type=int, default=32, help="requests in flight (poll.concurrency)"
    )
    parser.add_argument(
        "--per-host", type=int, default=2, help="requests in flight to one host (poll.per_host)"
    )
    parser.add_argument("--repoll-feeds", type=int, default=1000, help="0: no re-poll")
    parser.add_argument(
        "--workers",
        type=int,
        help="extraction workers (poll.workers; default: one per core but one)",
    )
    parser.add_argument(
        "--bare-sample", type=int, help="pages timed with bare trafilatura (0: all of a poll's)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="5 feeds x 4 articles, 100-feed re-poll"
    )
    args = parser.parse_args()
    feeds, articles, host_count, bare_sample = WORLDS[args.world]
    args.feeds = feeds if args.feeds is None else args.feeds
    args.articles = articles if args.articles is None else args.articles
    args.hosts = host_count if args.hosts is None else args.hosts
    args.bare_sample = bare_sample if args.bare_sample is None else args.bare_sample
    if args.quick:
        args.feeds, args.articles, args.repoll_feeds, args.bare_sample = 5, 4, 100, 20
    multiprocessing.set_start_method("fork")
    print(f"{os.cpu_count()} cores, load average {load_average()}")
    make_pages = small_pages if args.world == "small" else corpus_pages
    pages = make_pages(args.polls * args.feeds * args.articles)
    full_poll(args, pages)
    if args.repoll_feeds:
        repoll(args)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"\nCPU: user {usage.ru_utime:.1f} s, system {usage.ru_stime:.1f} s in the main process")


if __name__ == "__main__":
    main()
