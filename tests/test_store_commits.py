"""Writes from many threads: queued in-process for the write lock, and polls that only
change their feed's row committed together (`GroupCommit`), each caller returning once
its own write is committed."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
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


def test_writes_queued_during_a_commit_are_committed_together(tmp_path: Path) -> None:
    db = table(tmp_path / "t.db")
    write = Blocking()
    group = GroupCommit(db, write, describe)
    first = threading.Thread(target=group.submit, args=(0,))
    first.start()
    assert write.entered.wait(10)
    others = threading.Thread(target=submit_all, args=(group, range(1, 21)))
    others.start()
    deadline = time.monotonic() + 10
    while group.waiting < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert group.waiting == 20
    assert committed(tmp_path / "t.db") == []  # nothing is visible before its COMMIT
    write.release.set()
    first.join(10)
    others.join(30)
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
    first = threading.Thread(target=group.submit, args=(0,))
    first.start()
    assert write.entered.wait(10)
    result: dict[int, BaseException] = {}
    others = threading.Thread(target=lambda: result.update(submit_all(group, [1, 2, -3, 4, 5])))
    others.start()
    deadline = time.monotonic() + 10
    while group.waiting < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    write.release.set()
    first.join(10)
    others.join(30)
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
    first = threading.Thread(target=group.submit, args=(0,))
    first.start()
    assert write.entered.wait(10)
    others = threading.Thread(target=submit_all, args=(group, range(1, 11)))
    others.start()
    deadline = time.monotonic() + 10
    while group.waiting < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    write.release.set()
    first.join(10)
    others.join(30)
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
