"""The only SQL in `monitor`: feeds, articles, hits and digests in one SQLite file.

    schema.py       the migrations that build and upgrade the schema
    connections.py  one connection per thread, WAL, BEGIN IMMEDIATE, errors with advice
    commits.py      group commit: polls that only change their feed's row, committed together
    rows.py         times, article URL identity, rows ↔ `monitor.models` types
    database.py     `Store`: typed reads and the writes (one transaction per poll)
    story_index.py  the index of recent story signatures, kept in step with the database

Concurrency: one connection per thread, WAL journal, and every write inside
``BEGIN IMMEDIATE``, so readers never wait and writers queue for the lock up
to the busy timeout instead of failing (a process's own writers queue on a lock
of their own first).
"""

from monitor.store.connections import DEFAULT_BUSY_TIMEOUT
from monitor.store.database import Store
from monitor.store.rows import normalise_url
from monitor.store.schema import MIGRATIONS

__all__ = ["DEFAULT_BUSY_TIMEOUT", "MIGRATIONS", "Store", "normalise_url"]
