"""The extraction pool hands its workers pages ahead of time (`monitor.workers._FedPool`)."""

from __future__ import annotations

import time
from concurrent.futures import Future

from monitor.workers import DEFAULT_MEMORY_LIMIT, QUEUED_PER_WORKER, ExtractionPool, _FedPool


def _handed_over(futures: list[Future[None]]) -> int:
    """Calls the pool has passed to its workers: a future is marked running when its call
    leaves the pool's pending list for the queue the workers read from."""
    return sum(1 for future in futures if future.running() or future.done())


def test_a_worker_is_handed_several_calls_ahead_not_one() -> None:
    with _FedPool(
        1, memory_limit=DEFAULT_MEMORY_LIMIT, watchlists=b"", queued_per_worker=3
    ) as pool:
        assert pool.queue_size == 3
        futures = [pool.submit(time.sleep, 0.4) for _ in range(6)]
        deadline = time.monotonic() + 10
        while _handed_over(futures) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        # The first call runs, two more wait in the worker's queue; the rest stay pending.
        assert _handed_over(futures) == 3
        assert all(future.result(timeout=30) is None for future in futures)


def test_a_shallower_setting_keeps_the_executors_own_queue() -> None:
    """ProcessPoolExecutor's own queue holds one call more than it has workers; asking for
    less must not starve the workers further."""
    with _FedPool(
        1, memory_limit=DEFAULT_MEMORY_LIMIT, watchlists=b"", queued_per_worker=1
    ) as pool:
        assert pool.queue_size == 2
        futures = [pool.submit(time.sleep, 0.4) for _ in range(4)]
        deadline = time.monotonic() + 10
        while _handed_over(futures) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        assert _handed_over(futures) == 2
        assert all(future.result(timeout=30) is None for future in futures)


def test_extraction_pool_queues_pages_ahead_for_every_worker() -> None:
    with ExtractionPool(2) as extraction:
        extraction.start()
        pool = extraction._get_pool()
        assert pool.queue_size == 2 * QUEUED_PER_WORKER
