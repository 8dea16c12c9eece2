"""The article step (`monitor.articles.process_article`) in worker processes.

The main process never imports the extraction code (trafilatura, lxml's HTML parser):
only the workers' fork server does (`monitor.worker_preload`).

trafilatura is CPU-bound pure Python with no timeout of its own, and a
pathological page can take tens of seconds and hundreds of megabytes.
Running the article step in a process pool gives three things at once: every
core is used, a page that takes too long is abandoned (the pool is recycled,
the entry falls back to its feed text), and each worker runs under an
address-space limit so one page cannot take the daemon's memory.

Matching runs in the same call, right after extraction: analysing an article
(normalise, tokenise, stem, detect the language) is the second largest cost
per article, and doing it where the text already is keeps the main process,
which holds the GIL for fetching and storing, nearly idle. Each worker holds
its own `Matcher`, built from the watchlists the pool was given;
`set_watchlists` replaces the workers after a configuration reload. The pool
is the only holder of the watchlists during a poll.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import multiprocessing.context
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace

from monitor.matching import Matcher
from monitor.models import ArticleJob, ArticleOutcome, ParseFailed, ParseResult, Watchlist
from monitor.parse import parse_feed
from monitor.text import human_size

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 20.0
DEFAULT_MEMORY_LIMIT = 1024 * 1024 * 1024  # bytes of address space per worker
WORKER_START_TIMEOUT = 60.0  # seconds for the workers to start and compile the watchlists

_worker_matcher: Matcher | None = None  # set in each worker process by _start_worker


PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent() -> None:
    """Ask the kernel to kill this process when its parent dies (Linux; elsewhere a no-op).

    A daemon killed with SIGKILL runs no cleanup: without this its fork server and
    every extraction worker (about 150 MB each) would live on as orphans, and each
    restart would add more. The fork server dies with the daemon, the workers with
    the fork server. If the parent died before the request was made, exit now.
    """
    if not sys.platform.startswith("linux"):  # pragma: no cover - Linux only
        return
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    except (OSError, AttributeError) as error:  # pragma: no cover - no prctl
        log.warning("cannot tie this process to its parent's life: %s", error)
        return
    if os.getppid() != parent or parent == 1:
        os._exit(0)  # orphaned already: the parent died before the request took effect


def _start_worker(memory_limit: int, watchlists: tuple[Watchlist, ...]) -> None:
    global _worker_matcher
    die_with_parent()
    # Ctrl-C reaches the whole process group; the parent decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    except (ImportError, ValueError, OSError):  # pragma: no cover - platform without rlimits
        pass
    _worker_matcher = Matcher(watchlists)


def _process_in_worker(job: ArticleJob) -> ArticleOutcome:
    from monitor.articles import process_article  # the fork server imported it already

    matcher = _worker_matcher if _worker_matcher is not None else Matcher(())
    return process_article(job, matcher)


def _worker_context() -> multiprocessing.context.BaseContext:
    """Workers start from a fork server, never by forking this process.

    Pools are created and recycled while polling threads run; a plain fork
    copies whatever locks those threads hold at that instant (logging, imports,
    SQLite, HTTP pools) into the child, which can then hang forever. The fork
    server is a clean single-threaded process that has already imported the
    extraction code and loaded the language model (`monitor.worker_preload`),
    so a new worker starts in milliseconds and shares that memory.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():  # pragma: no cover - not Linux
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["monitor.workers", "monitor.worker_preload"])
    return context


def default_workers() -> int:
    """One worker per core this process may use, but one: the main process, which fetches,
    parses and stores, needs a core of its own. With 10,000 feeds it used five to ten times
    the CPU of the workers (bench/bench_daemon_scale.py); each worker holds 40 to 60 MB."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas for this process (a no-op elsewhere).

    glibc gives threads arenas of their own, up to eight per core, and memory freed in one
    is never handed to another: with a poll thread per `poll.concurrency` and page threads
    besides, a 10,000-feed daemon held 290 MB instead of 230 MB. The price, measured on a
    loaded machine: about 14 % more CPU per poll in the main process (BENCHMARKS.md).
    """
    if not sys.platform.startswith("linux"):  # pragma: no cover - glibc only
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # pragma: no cover - not glibc (musl)
        return
    mallopt(_M_ARENA_MAX, arenas)


_M_ARENA_MAX = -8  # from <malloc.h>


def _too_large(url: str, problem: str) -> ParseFailed:
    return ParseFailed(
        url=url,
        message=f"{url}: {problem}; the feed is too large to read in one poll: ask the "
        "site for a shorter feed, or raise poll.feed_deadline",
    )


def _kill(pool: ProcessPoolExecutor) -> None:
    for process in list(getattr(pool, "_processes", {}).values()):
        process.kill()  # a hung trafilatura call never returns on its own
    pool.shutdown(wait=False, cancel_futures=True)


class ExtractionPool:
    """A process pool that extracts and matches articles, recycled when a worker hangs or dies.

    Thread-safe: polling threads call `process`/`extract` concurrently; each call
    blocks until its page is done, times out, or the pool breaks.
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        watchlists: Sequence[Watchlist] = (),
        timeout: float = DEFAULT_TIMEOUT,
        memory_limit: int = DEFAULT_MEMORY_LIMIT,
    ) -> None:
        self.workers = workers or default_workers()
        self.timeout = timeout
        self.memory_limit = memory_limit
        self._watchlists = tuple(watchlists)
        self._lock = threading.Lock()
        self._parse_slot = threading.Semaphore(1)
        self._pool: ProcessPoolExecutor | None = None

    def _get_pool(self) -> ProcessPoolExecutor:
        """The pool, started (fork server, every worker, watchlists compiled) when first needed.

        Nothing starts before a page needs extracting: a poll where every feed answers
        304 or an unchanged body never pays for the fork server, which imports the
        extraction code and loads the language model (1 to 3 s and about 130 MB). The
        first page waits for the start, outside its own timeout.

        The thread that first gets here starts the fork server, which dies with that
        thread (`die_with_parent`: Linux's parent-death signal follows the thread): the
        callers are the pipeline's page and poll threads, which live until it closes.
        """
        with self._lock:
            if self._pool is None:
                pool = ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=_worker_context(),
                    initializer=_start_worker,
                    initargs=(self.memory_limit, self._watchlists),
                )
                try:
                    for future in [pool.submit(os.getpid) for _ in range(self.workers)]:
                        future.result(timeout=WORKER_START_TIMEOUT)
                except Exception as error:
                    _kill(pool)
                    reason = str(error) or type(error).__name__
                    message = f"the extraction workers did not start ({reason})"
                    raise BrokenProcessPool(message) from error
                self._pool = pool
            return self._pool

    @property
    def started(self) -> bool:
        """Whether the worker processes are running (they start on the first page)."""
        with self._lock:
            return self._pool is not None

    def start(self) -> None:
        """Start the fork server and every worker now rather than on the first page."""
        self._get_pool()

    def set_watchlists(self, watchlists: Sequence[Watchlist]) -> None:
        """Match with `watchlists` from now on; pages already submitted finish with the old ones."""
        with self._lock:
            self._watchlists = tuple(watchlists)
            old, self._pool = self._pool, None
        if old is not None:
            old.shutdown(wait=False)

    def _recycle(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is not broken:
                return  # another thread already replaced it
            self._pool = None
        _kill(broken)

    def process(self, job: ArticleJob) -> ArticleOutcome:
        """The article step for one entry, in a worker.

        When the worker cannot finish (a timeout, a crash, the memory limit) the
        pool is recycled and the step runs again on the feed's own text, the
        page's failure as the reason. If that fails too, the entry keeps the
        feed's text with no hits, and the note says so.
        """
        outcome = self._run(job)
        if isinstance(outcome, tuple):
            return outcome
        label = job.page.url if job.page is not None else (job.entry.link or job.entry.key)
        log.warning("%s: %s; using the feed's text", label, outcome)
        retry = replace(job, page=None, known=None, no_page_reason=outcome)
        second = self._run(retry)
        if isinstance(second, tuple):
            return second
        log.error(
            "%s: matching the feed's text failed too (%s); stored without hits", label, second
        )
        from monitor.articles import step_failed

        return step_failed(job, f"{outcome}, and matching the feed's text failed too ({second})")

    def parse(
        self, content: bytes, *, url: str, headers: Mapping[str, str], timeout: float
    ) -> ParseResult:
        """`parse_feed` in a process of its own, under the workers' memory limit, given up
        after `timeout` seconds: a 15 MB feed of 60,000 entries takes close to half a
        minute of CPU and a few hundred megabytes in feedparser, which must hold neither
        the polling threads' GIL nor the daemon's memory.

        Not in the extraction pool: killing a parse that overran must not kill the
        extractions of other feeds' pages running beside it. One such parse at a time
        (the wait counts against `timeout`), so several huge feeds cannot add up their
        memory; the process starts from the fork server in milliseconds.
        """
        started = time.monotonic()
        size = human_size(len(content))
        if not self._parse_slot.acquire(timeout=timeout):
            problem = f"another large feed was being read for all of the {timeout:.3g} s allowed"
            return _too_large(url, problem)
        executor = ProcessPoolExecutor(
            max_workers=1,
            mp_context=_worker_context(),
            initializer=_start_worker,
            initargs=(self.memory_limit, ()),
        )
        try:
            future: Future[ParseResult] = executor.submit(
                parse_feed, content, url=url, headers=dict(headers)
            )
            return future.result(timeout=max(0.0, started + timeout - time.monotonic()))
        except FutureTimeout:
            problem = f"reading it ({size}) took over {timeout:.3g} s and was abandoned"
        except BrokenProcessPool:
            problem = f"the process reading it ({size}) died (memory limit or crash)"
        except Exception as error:  # parse_feed never raises: this is a bug of ours
            log.exception("parsing %s in a worker raised", url)
            problem = f"reading it failed ({type(error).__name__}: {error})"
        finally:
            for process in list(getattr(executor, "_processes", {}).values()):
                process.kill()  # feedparser never stops on its own; a no-op once it exited
            executor.shutdown(wait=False, cancel_futures=True)
            self._parse_slot.release()
        return _too_large(url, problem)

    def _run(self, job: ArticleJob) -> ArticleOutcome | str:
        """The step's result, or why the worker could not give it."""
        try:
            pool = self._get_pool()
        except BrokenProcessPool as error:
            return str(error)
        try:
            future: Future[ArticleOutcome] = pool.submit(_process_in_worker, job)
            return future.result(timeout=self.timeout)
        except FutureTimeout:
            self._recycle(pool)
            return f"extraction took over {self.timeout:.0f} s and was abandoned"
        except BrokenProcessPool:
            self._recycle(pool)
            return "the extraction worker died on this page (memory limit or crash)"
        except MemoryError:
            return "extraction ran out of memory on this page"
        except Exception as error:  # a bug on one article must not fail its whole feed
            log.exception("the article step raised")
            return f"the article step failed ({type(error).__name__}: {error})"

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ExtractionPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
