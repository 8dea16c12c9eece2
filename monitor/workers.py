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
its own `Matcher`, built from the watchlists the pool was given (pickled once,
not once per worker) with the partitions for French and English articles built
before the worker takes its first page. After a configuration reload,
`set_watchlists` keeps the workers when few watchlists changed: each job then
carries a small update (which of the workers' watchlists to keep, in which
order, and the new ones), and a worker applies it once (at once when idle,
else before its next page), reusing what it compiled for the watchlists that
did not change. When many
changed, the workers are replaced. The pool is the only holder of the
watchlists during a poll.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import itertools
import logging
import multiprocessing
import multiprocessing.context
import multiprocessing.forkserver
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import process as futures_process
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace

from monitor.matching import Matcher
from monitor.matching.matcher import _collector_paused
from monitor.models import ArticleJob, ArticleOutcome, ParseFailed, ParseResult, Watchlist
from monitor.parse import parse_feed
from monitor.text import human_size

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 20.0
START_TIMEOUT = 600.0  # seconds for a new worker to start and compile the watchlists
DEFAULT_MEMORY_LIMIT = 1024 * 1024 * 1024  # bytes of address space per worker
# Pages handed to the workers ahead of time, per worker (see `_FedPool`).
QUEUED_PER_WORKER = 4

# Articles in these languages are matched from the worker's first page on; other
# languages build their partition on their first article (see `Matcher.prepare`).
PREPARED_LANGUAGES = ("fr", "en")
# A reload that adds or changes more watchlists than this (or than a tenth of them) gets
# new workers rather than an update carried by each job.
MAX_UPDATED_WATCHLISTS = 1000

# Set in each worker process by _start_worker, and replaced by _matcher_for.
_worker_matcher: Matcher | None = None
_worker_base: tuple[Watchlist, ...] = ()  # the watchlists the worker was started with
_worker_generation = 0  # the update the worker's matcher follows (0: none)


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


def _start_worker(memory_limit: int, watchlists: bytes = b"") -> None:
    """`watchlists`: pickled (`_pickled`), or empty for a process that does not match.

    The address-space limit is `memory_limit` plus what the compiled watchlists took: it
    bounds what one page may cost, whatever the number of watchlists (100,000 of them
    take several hundred megabytes, which a fixed limit would leave no page)."""
    global _worker_matcher, _worker_base
    die_with_parent()
    # Ctrl-C reaches the whole process group; the parent decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    before = _address_space()
    if watchlists:
        with _collector_paused():
            _worker_base = pickle.loads(watchlists)
            _worker_matcher = Matcher(_worker_base)
            _worker_matcher.prepare(PREPARED_LANGUAGES)
            # The matcher lives as long as the worker: later collections need not walk its
            # millions of objects again (frozen before the collector resumes, which would
            # otherwise walk them all once first).
            gc.freeze()
    after = _address_space()
    if before is not None and after is not None:
        memory_limit += max(0, after - before)
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    except (ImportError, ValueError, OSError):  # pragma: no cover - platform without rlimits
        pass


def _address_space() -> int | None:
    """This process's address space in bytes (Linux), else None."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        return None


def _process_in_worker(job: ArticleJob, update: _Update | None = None) -> ArticleOutcome:
    from monitor.articles import process_article  # the fork server imported it already

    return process_article(job, _matcher_for(update))


def _matcher_for(update: _Update | None) -> Matcher:
    """The worker's matcher, brought to `update` first if it follows an older one."""
    global _worker_matcher, _worker_generation
    if update is None or update.generation == _worker_generation:
        return _worker_matcher if _worker_matcher is not None else Matcher(())
    with _collector_paused():
        parts: tuple[range | Watchlist, ...] = pickle.loads(update.parts)
        watchlists = tuple(
            itertools.chain.from_iterable(
                (_worker_base[index] for index in part) if isinstance(part, range) else (part,)
                for part in parts
            )
        )
        _worker_matcher = Matcher(watchlists, previous=_worker_matcher)
    _worker_generation = update.generation
    return _worker_matcher


@dataclass(frozen=True)
class _Update:
    """The pool's watchlists as an edit of those its workers started with: `parts`, pickled,
    is a sequence of ranges of the workers' own watchlists (kept, compiled already) and of
    new watchlists, in the configuration's order."""

    generation: int
    parts: bytes


def _apply(update: _Update) -> None:
    _matcher_for(update)


def _update_of(
    base: Sequence[Watchlist], watchlists: Sequence[Watchlist], generation: int
) -> _Update | None:
    """`watchlists` as an `_Update` of `base` (the same objects are kept), or None when too
    many are new for an update to be cheaper than new workers."""
    limit = min(MAX_UPDATED_WATCHLISTS, max(1, len(watchlists) // 10))
    positions = {id(watchlist): index for index, watchlist in enumerate(base)}
    parts: list[range | Watchlist] = []
    new = 0
    for watchlist in watchlists:
        index = positions.get(id(watchlist))
        if index is None or base[index] is not watchlist:
            new += 1
            if new > limit:
                return None
            parts.append(watchlist)
        elif parts and isinstance(parts[-1], range) and parts[-1].stop == index:
            parts[-1] = range(parts[-1].start, index + 1)
        else:
            parts.append(range(index, index + 1))
    return _Update(generation, _pickled(tuple(parts)))


def _pickled(value: object) -> bytes:
    with _collector_paused():
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


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


def start_fork_server() -> None:
    """Start the workers' fork server now rather than with the first workers, so that its
    imports and language model load while the caller does something else (`monitor run`:
    reading feeds.yaml). It dies with the calling thread (`die_with_parent`): call this
    from one that lives as long as the workers, and only in a process that will start them.
    """
    if isinstance(_worker_context(), multiprocessing.context.ForkServerContext):
        multiprocessing.forkserver.ensure_running()


class _FedPool(ProcessPoolExecutor):
    """A process pool that hands its workers `queued_per_worker` calls ahead, not one.

    ProcessPoolExecutor queues one call beyond the ones running (EXTRA_QUEUED_CALLS);
    the next is queued by its management thread in this process once a result came
    back. That thread needs the GIL, which dozens of polling threads share: on small
    pages (a few ms each) a worker often finished its page and the spare one before
    the next arrived, and sat idle while pages waited (bench_poll.py --world small:
    the median gap between two pages in a worker halved with 4 calls per worker).
    The queue is the pool's own (`_call_queue`), rebuilt larger before any worker
    starts; should a future Python lay the pool out differently, the pool keeps its
    default queue and works as before. The cost: up to that many pages, pickled,
    wait in the queue's buffer (at most 4 x 5 MiB per worker, the extraction limit).
    """

    def __init__(
        self,
        workers: int,
        *,
        memory_limit: int,
        watchlists: bytes,  # pickled (`_pickled`)
        queued_per_worker: int,
    ) -> None:
        super().__init__(
            max_workers=workers,
            mp_context=_worker_context(),
            initializer=_start_worker,
            initargs=(memory_limit, watchlists),
        )
        self.queue_size = workers + 1  # ProcessPoolExecutor's own, unless replaced below
        old = getattr(self, "_call_queue", None)
        safe_queue = getattr(futures_process, "_SafeQueue", None)
        deeper_size = workers * queued_per_worker
        if deeper_size <= self.queue_size:
            return
        if old is None or safe_queue is None or self._executor_manager_thread is not None:
            return  # pragma: no cover - another Python's layout
        try:
            deeper = safe_queue(
                max_size=deeper_size,
                ctx=self._mp_context,
                pending_work_items=self._pending_work_items,
                shutdown_lock=self._shutdown_lock,
                thread_wakeup=self._executor_manager_thread_wakeup,
            )
        except (TypeError, AttributeError):  # pragma: no cover - another Python's layout
            return
        deeper._ignore_epipe = True
        self._call_queue = deeper
        self.queue_size = deeper_size
        old.close()


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
        # What new workers start with (pickled once for all of them, on first need), and
        # what the workers' jobs carry after a reload that kept them.
        self._watchlists = tuple(watchlists)  # the workers' own
        self._current = self._watchlists  # the configuration's: the update applied
        self._pickled: bytes | None = None
        self._update: _Update | None = None
        self._generation = 0
        self._lock = threading.Lock()
        self._parse_slot = threading.Semaphore(1)
        self._pool: _FedPool | None = None

    def _get_pool(self) -> _FedPool:
        return self._pool_and_update()[0]

    def _pool_and_update(self) -> tuple[_FedPool, _Update | None]:
        """The pool, started (fork server, every worker, watchlists compiled) when first
        needed, and the update its workers' jobs carry (read together: an update only fits
        the workers it was made for).

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
                if self._pickled is None:
                    self._pickled = _pickled(self._watchlists)
                pool = _FedPool(
                    self.workers,
                    memory_limit=self.memory_limit,
                    watchlists=self._pickled,
                    queued_per_worker=QUEUED_PER_WORKER,
                )
                try:
                    # Each worker compiles every watchlist first: tens of seconds for
                    # 100,000 on a loaded machine.
                    for future in [pool.submit(os.getpid) for _ in range(self.workers)]:
                        future.result(timeout=START_TIMEOUT)
                except Exception as error:
                    _kill(pool)
                    reason = str(error) or type(error).__name__
                    message = f"the extraction workers did not start ({reason})"
                    raise BrokenProcessPool(message) from error
                self._pool = pool
            return self._pool, self._update

    @property
    def started(self) -> bool:
        """Whether the worker processes are running (they start on the first page)."""
        with self._lock:
            return self._pool is not None

    def start(self) -> None:
        """Start the fork server and every worker now rather than on the first page.

        When it returns, every worker has compiled the watchlists and can match (the
        daemon calls it in the background at start-up; `monitor poll` leaves the workers
        to the first page that needs them).
        """
        self._get_pool()

    def set_watchlists(self, watchlists: Sequence[Watchlist]) -> None:
        """Match with `watchlists` from now on; pages already submitted finish with the old ones.

        The workers are kept when few watchlists are new objects (a reload keeps the
        objects of the watchlists whose definition did not change, see `parse_config`):
        each later job carries the update, and a worker applies it once. Otherwise the
        workers are replaced, and the new ones compile every watchlist."""
        watchlists = tuple(watchlists)
        old = None
        with self._lock:
            update, pool = None, self._pool
            if pool is not None:
                update = _update_of(self._watchlists, watchlists, self._generation + 1)
            self._current = watchlists
            if update is not None and pool is not None:
                self._update, self._generation = update, update.generation
                # Idle workers apply it now rather than before their next page (one may
                # take both calls: the other then applies it before its next page).
                with contextlib.suppress(RuntimeError):  # a pool shutting down
                    for _ in range(self.workers):
                        pool.submit(_apply, update)  # a broken pool: the next page sees it
            else:
                self._watchlists, self._pickled, self._update = watchlists, None, None
                old, self._pool = self._pool, None
        if old is not None:
            old.shutdown(wait=False)

    def _recycle(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is not broken:
                return  # another thread already replaced it
            self._pool = None
            if self._update is not None:  # new workers start from the current watchlists
                self._watchlists, self._pickled, self._update = self._current, None, None
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
            initargs=(self.memory_limit,),
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
            pool, update = self._pool_and_update()
        except BrokenProcessPool as error:
            return str(error)
        try:
            future: Future[ArticleOutcome] = pool.submit(_process_in_worker, job, update)
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
