"""Writes from many threads: queued in-process for the write lock, and polls that only
change their feed's row committed together (`GroupCommit`), each caller returning once
its own write is committed."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.errors import StorageError
from monitor.models import FeedSpec, NotModified, Validators
from monitor.schedule import decide_update
from monitor.store import Store
from monitor.store.commits import GroupCommit
from monitor.store.connections import Connections

NOW = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)


def table(path: Path) -> Connections:
    db = Connections(path, busy_timeout=10)
    db.enable_wal()
    with db.write("creating the table") as conn:
        conn.execute("CREATE TABLE items (value INTEGER CHECK (value >= 0))")
    return db


def committed(path: Path) -> list[int]:
    """What another connection sees: only committed rows."""
    with sqlite3.connect(path) as conn:
        return sorted(value for (value,) in conn.execute("SELECT value FROM items"))


def insert(conn: sqlite3.Connection, values: Sequence[int]) -> None:
    conn.executemany("INSERT INTO items (value) VALUES (?)", [(value,) for value in values])


def describe(values: Sequence[int]) -> str:
    return f"saving {list(values)}"


class Blocking:
    """`insert`, held up at its first call until released: while it is held, other
    threads' items queue behind that transaction."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.groups: list[list[int]] = []

    def __call__(self, conn: sqlite3.Connection, values: Sequence[int]) -> None:
        self.groups.append(list(values))
        if len(self.groups) == 1:
            self.entered.set()
            assert self.release.wait(10)
        insert(conn, values)


def submit_all(group: GroupCommit[int], values: Sequence[int]) -> dict[int, BaseException]:
    """Each value submitted from a thread of its own; the errors raised, by value."""
    errors: dict[int, BaseException] = {}

    def one(value: int) -> None:
        try:
            group.submit(value)
        except BaseException as error:
            errors[value] = error

    threads = [threading.Thread(target=one, args=(value,)) for value in values]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return errors


def queued_behind_a_commit(
    group: GroupCommit[int], write: Blocking, values: Sequence[int]
) -> tuple[threading.Thread, threading.Thread, dict[int, BaseException]]:
    """Write 0 submitted and held inside its commit (`write` blocks), then `values` submitted
    from another thread until every one of them waits. Returns both threads and the errors
    the second one's writes raised (filled in when it ends)."""
    first = threading.Thread(target=group.submit, args=(0,))
    first.start()
    assert write.entered.wait(10)
    errors: dict[int, BaseException] = {}
    others = threading.Thread(target=lambda: errors.update(submit_all(group, values)))
    others.start()
    deadline = time.monotonic() + 10
    while group.waiting < len(values) and time.monotonic() < deadline:
        time.sleep(0.01)
    return first, others, errors


def released(write: Blocking, *threads: threading.Thread) -> None:
    write.release.set()
    for thread in threads:
        thread.join(30)


def test_writes_queued_during_a_commit_are_committed_together(tmp_path: Path) -> None:
    db = table(tmp_path / "t.db")
    write = Blocking()
    group = GroupCommit(db, write, describe)
    first, others, _ = queued_behind_a_commit(group, write, range(1, 21))
    assert group.waiting == 20
    assert committed(tmp_path / "t.db") == []  # nothing is visible before its COMMIT
    released(write, first, others)
    assert write.groups == [[0], list(range(1, 21))]
    assert group.transactions == 2
    assert committed(tmp_path / "t.db") == list(range(21))
    db.close()


def test_a_write_is_committed_when_submit_returns(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    db = table(path)
    group = GroupCommit(db, insert, describe)
    seen_at_return: dict[int, list[int]] = {}

    def one(value: int) -> None:
        group.submit(value)
        seen_at_return[value] = committed(path)

    threads = [threading.Thread(target=one, args=(value,)) for value in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert all(value in seen for value, seen in seen_at_return.items())
    assert len(seen_at_return) == 30
    assert committed(path) == list(range(30))
    db.close()


def test_a_failing_write_fails_alone_and_the_rest_of_its_group_is_committed(
    tmp_path: Path,
) -> None:
    db = table(tmp_path / "t.db")
    write = Blocking()
    group = GroupCommit(db, write, describe)
    first, others, result = queued_behind_a_commit(group, write, [1, 2, -3, 4, 5])
    released(write, first, others)
    assert list(result) == [-3]
    assert isinstance(result[-3], StorageError)
    assert "saving [-3] failed" in str(result[-3])  # the message names its own write
    assert "CHECK constraint failed" in str(result[-3])
    assert committed(tmp_path / "t.db") == [0, 1, 2, 4, 5]
    db.close()


def test_a_write_alone_raises_its_error(tmp_path: Path) -> None:
    db = table(tmp_path / "t.db")
    group = GroupCommit(db, insert, describe)
    with pytest.raises(StorageError, match=r"saving \[-1\] failed"):
        group.submit(-1)
    group.submit(1)
    assert committed(tmp_path / "t.db") == [1]
    db.close()


def test_groups_are_capped(tmp_path: Path) -> None:
    db = table(tmp_path / "t.db")
    write = Blocking()
    group = GroupCommit(db, write, describe, most=4)
    first, others, _ = queued_behind_a_commit(group, write, range(1, 11))
    released(write, first, others)
    assert [len(values) for values in write.groups] == [1, 4, 4, 2]
    assert committed(tmp_path / "t.db") == list(range(11))
    db.close()


def test_a_write_waits_for_another_threads_write_then_goes_in(tmp_path: Path) -> None:
    """Queued on the process's own lock rather than in SQLite's busy handler: waiting,
    not failing, and in after the write before it."""
    db = table(tmp_path / "t.db")
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with db.write("holding the lock") as conn:
            insert(conn, [1])
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(10)
    waited: list[float] = []

    def second() -> None:
        started = time.monotonic()
        with db.write("second write") as conn:
            waited.append(time.monotonic() - started)
            insert(conn, [2])

    writer = threading.Thread(target=second)
    writer.start()
    time.sleep(0.2)
    assert not waited  # still waiting
    release.set()
    holder.join(10)
    writer.join(10)
    assert committed(tmp_path / "t.db") == [1, 2]
    db.close()


def test_a_write_held_beyond_the_busy_timeout_by_another_thread_is_a_storage_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.db"
    table(path).close()
    db = Connections(path, busy_timeout=0.1)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with db.write("holding the lock"):
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(10)
    try:
        with pytest.raises(StorageError) as raised, db.write("saving 3"):
            pass
        message = str(raised.value)
        assert f"saving 3 failed in {path}" in message
        assert "another write of this process held the database for more than 0.1 s" in message
    finally:
        release.set()
        holder.join(10)
    with db.write("saving 4") as conn:  # the lock was not left taken
        insert(conn, [4])
    db.close()


def test_polls_recorded_from_many_threads_each_save_their_feed_row(tmp_path: Path) -> None:
    """The store's own use: 304s of 200 feeds recorded at once, each feed's validators
    and next poll saved as the decider made them."""
    store = Store(tmp_path / "monitor.db")
    specs = [FeedSpec(url=f"https://f{n}.example/feed") for n in range(200)]
    states = [store.feed_state(spec.url) for spec in specs]

    def record(number: int) -> None:
        result = NotModified(url=specs[number].url, validators=Validators(etag=f'"{number}"'))
        store.record(decide_update(states[number], specs[number], result, NOW))

    threads = [threading.Thread(target=record, args=(n,)) for n in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    after = {state.url: state for state in store.feed_states()}
    for number, spec in enumerate(specs):
        assert after[spec.url].validators.etag == f'"{number}"'
        assert after[spec.url].next_poll == NOW + spec.interval
        assert after[spec.url].http_status == 304
    store.close()


# --------------------------------------------------------------------------- shared connections


def in_thread(work: Callable[[], object]) -> object:
    """`work()` run in a new thread; its result, or what it raised."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    return outcome[0]


def test_threads_that_only_read_and_write_share_a_connection(tmp_path: Path) -> None:
    db = table(tmp_path / "t.db")  # this thread's own connection
    for value in range(5):

        def read_and_write(value: int = value) -> object:
            rows = db.read("counting", "SELECT COUNT(*) FROM items")
            with db.write(f"saving {value}") as conn:
                insert(conn, [value])
            return rows[0][0]

        assert in_thread(read_and_write) == value
    assert db.opened == 2  # this thread's, and the one the five threads took in turn
    assert committed(tmp_path / "t.db") == list(range(5))
    db.close()


def test_a_read_inside_a_write_sees_the_write(tmp_path: Path) -> None:
    db = table(tmp_path / "t.db")

    def write_then_read() -> object:
        with db.write("saving 7") as conn:
            insert(conn, [7])
            inside = db.read("reading back", "SELECT value FROM items")
            assert db.connection() is conn
        return [row[0] for row in inside]

    assert in_thread(write_then_read) == [7]
    db.close()


def test_a_thread_with_its_own_connection_keeps_using_it(tmp_path: Path) -> None:
    db = table(tmp_path / "t.db")
    own = db.connection()
    with db.write("saving 1") as conn:
        assert conn is own
        insert(conn, [1])
    assert db.read("reading", "SELECT value FROM items")[0][0] == 1
    assert db.opened == 1
    db.close()


def test_connections_in_use_by_threads_at_once_are_distinct(tmp_path: Path) -> None:
    """Two threads each inside a write and a read at the same time: never one
    connection for both (a spare is lent to one thread at a time)."""
    path = tmp_path / "t.db"
    table(path).close()
    db = Connections(path, busy_timeout=10)
    reading = threading.Barrier(2)
    used: list[sqlite3.Connection] = []

    def write() -> object:
        with db.write("saving 1") as conn:
            used.append(conn)
            reading.wait(10)  # the other thread is reading meanwhile
            insert(conn, [1])
        return None

    def read() -> object:
        reading.wait(10)
        return db.read("reading", "SELECT COUNT(*) FROM items")[0][0]

    writer = threading.Thread(target=write)
    writer.start()
    assert in_thread(read) == 0  # WAL: the uncommitted write is not seen elsewhere
    writer.join(10)
    assert db.opened == 2
    assert committed(path) == [1]
    db.close()
