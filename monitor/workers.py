"""Article extraction in worker processes.

trafilatura is CPU-bound pure Python with no timeout of its own, and a
pathological page can take tens of seconds and hundreds of megabytes
(RELIABILITY.md §0.11). Running it in a process pool gives three things at
once: every core is used, a page that takes too long is abandoned (the pool is
recycled, the entry falls back to its feed text), and each worker runs under
an address-space limit so one page cannot take the daemon's memory.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool

from monitor.extract import extract_article, fallback_article
from monitor.models import ArticleText, Entry, TextSource

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 20.0
DEFAULT_MEMORY_LIMIT = 1024 * 1024 * 1024  # bytes of address space per worker


def _limit_worker_memory(limit: int) -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):  # pragma: no cover - platform without rlimits
        pass


def _extract_in_worker(
    html: bytes, url: str, entry: Entry | None, feed_language: str | None
) -> ArticleText:
    try:
        return extract_article(html, url=url, entry=entry, feed_language=feed_language)
    except MemoryError:
        if entry is None:
            raise
        return fallback_article(
            entry,
            url=url,
            reason="extraction ran out of memory on this page",
            feed_language=feed_language,
        )


class ExtractionPool:
    """A process pool for `extract_article`, recycled when a worker hangs or dies.

    Thread-safe: polling threads call `extract` concurrently; each call blocks
    until its page is extracted, times out, or the pool breaks.
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        memory_limit: int = DEFAULT_MEMORY_LIMIT,
    ) -> None:
        self.workers = workers or max(1, os.cpu_count() or 1)
        self.timeout = timeout
        self.memory_limit = memory_limit
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None

    def _get_pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=self.workers,
                    initializer=_limit_worker_memory,
                    initargs=(self.memory_limit,),
                )
            return self._pool

    def _recycle(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is not broken:
                return  # another thread already replaced it
            self._pool = None
        for process in list(getattr(broken, "_processes", {}).values()):
            process.kill()  # a hung trafilatura call never returns on its own
        broken.shutdown(wait=False, cancel_futures=True)

    def extract(
        self,
        html: bytes,
        *,
        url: str,
        entry: Entry | None,
        feed_language: str | None = None,
    ) -> ArticleText:
        pool = self._get_pool()
        try:
            future: Future[ArticleText] = pool.submit(
                _extract_in_worker, html, url, entry, feed_language
            )
            return future.result(timeout=self.timeout)
        except FutureTimeout:
            log.warning("%s: extraction took over %.0f s; using the feed's text", url, self.timeout)
            self._recycle(pool)
            reason = f"extraction took over {self.timeout:.0f} s and was abandoned"
        except BrokenProcessPool:
            log.warning(
                "%s: the extraction worker died (memory limit?); using the feed's text", url
            )
            self._recycle(pool)
            reason = "the extraction worker died on this page (memory limit or crash)"
        except MemoryError:
            reason = "extraction ran out of memory on this page"
        if entry is None:
            return ArticleText(url=url, title="", text="", source=TextSource.FEED, note=reason)
        return fallback_article(entry, url=url, reason=reason, feed_language=feed_language)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ExtractionPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
