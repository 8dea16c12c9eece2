"""Group commit: small writes that many threads make at once, committed together.

A thread hands its write to `GroupCommit.submit` and gets control back once the
write is committed, or with the error that stopped it, exactly as with a
transaction of its own. Meanwhile, if another thread is committing, its write
waits in a queue; the next thread to commit takes the writes queued so far (at most
`most`) into one transaction. A crash before that COMMIT loses the whole group, none of whose
threads had returned: what a caller was told is written, is.

Why: at 10,000 feeds a round of unchanged polls is 10,000 transactions that each
update one feed row. Each paid BEGIN IMMEDIATE, a COMMIT with its fsync (1.5 ms
on the development machine) and, on a busy interpreter, a wait for the GIL after
every statement, all while holding the database's only write lock, for which the
other poll threads queued (bench/bench_daemon_scale.py). Grouped, one COMMIT
serves the polls that ended while the previous one ran.

If the group's transaction fails, each write is tried again alone, so that one
write's error (the one that caused it, or a full disk) is its own caller's and
the others are still committed.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from monitor.store.connections import Connections

Item = TypeVar("Item")

__all__ = ["GroupCommit"]


class _Submitted(Generic[Item]):
    __slots__ = ("error", "finished", "item", "woken")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.finished = False
        self.error: BaseException | None = None
        # Set when the item is finished, or when its thread is to commit the next group.
        self.woken = threading.Event()


class GroupCommit(Generic[Item]):
    """Commits the items that threads submit at once in one transaction.

    `write(conn, items)` writes items inside an open transaction; `describe(items)`
    says what is being written, for error messages ("saving the poll of feed #3").

    One thread commits at a time, a group that begins with its own item; when it is
    done it wakes the threads of its group and hands the next group to the thread of
    the oldest item still queued. Each thread is woken once (a condition shared by all
    woke every waiting poll thread at every commit).
    """

    def __init__(
        self,
        db: Connections,
        write: Callable[[sqlite3.Connection, Sequence[Item]], None],
        describe: Callable[[Sequence[Item]], str],
        *,
        most: int = 256,
    ) -> None:
        self._db = db
        self._write = write
        self._describe = describe
        self._most = most  # items in one transaction at most
        self._lock = threading.Lock()
        self._queue: list[_Submitted[Item]] = []
        self._committing = False  # a thread is committing, or has been handed the next group
        self.transactions = 0  # committed so far, for tests and benchmarks

    @property
    def waiting(self) -> int:
        """Items submitted and waiting for a transaction to take them."""
        with self._lock:
            return len(self._queue)

    def submit(self, item: Item) -> None:
        """Write `item`; return once it is committed, or raise what stopped it."""
        submitted = _Submitted(item)
        with self._lock:
            self._queue.append(submitted)
            leading = not self._committing
            self._committing = True
        if not leading:
            submitted.woken.wait()
        if not submitted.finished:  # this thread commits the next group, its item first
            with self._lock:
                group, self._queue = self._queue[: self._most], self._queue[self._most :]
            following: _Submitted[Item] | None = None
            try:
                self._commit(group)
            finally:
                with self._lock:
                    if self._queue:
                        following = self._queue[0]
                    else:
                        self._committing = False
                for other in group:
                    other.woken.set()
                if following is not None:
                    following.woken.set()
        if submitted.error is not None:
            raise submitted.error

    def _commit(self, group: list[_Submitted[Item]]) -> None:
        """Commit `group`, in one transaction if it can, else each item alone; every
        item is finished afterwards, with its error if it failed."""
        try:
            self._transaction([submitted.item for submitted in group])
        except Exception as error:
            if len(group) == 1:
                group[0].error = error
            else:
                for submitted in group:
                    try:
                        self._transaction([submitted.item])
                    except Exception as alone:
                        submitted.error = alone
        except BaseException as error:  # an interrupt: nothing of the group was written
            for submitted in group:
                submitted.error = error
            raise
        finally:
            for submitted in group:
                submitted.finished = True

    def _transaction(self, items: Sequence[Item]) -> None:
        with self._db.write(self._describe(items)) as conn:
            self._write(conn, items)
        self.transactions += 1
