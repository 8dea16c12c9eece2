"""Every exception `monitor` raises on purpose, in one tree::

    MonitorError                 anything monitor itself reports; str() is the sentence to show
    ├── ConfigError              feeds.yaml cannot be used; .problems lists file:line:col messages
    ├── QueryError (ValueError)  one watchlist query cannot be used (reported through ConfigError)
    │   ├── QuerySyntaxError     .offset: where in the query text
    │   └── ListTermError        .list_name, .index: which all/any/none item
    ├── StorageError             a database operation failed: what, on which file, what to do
    │   └── DamagedDatabase      the file failed SQLite's integrity check
    ├── AlreadyRunning           another daemon holds the database's lock
    ├── SourceError              feeds.yaml cannot be edited as asked, or an OPML file is unusable
    └── DeliveryError            a digest was not, or not certainly, delivered

Expected per-feed and per-page failures (a 404, a timeout, a page that is not
a feed) are not exceptions: they are values (`models.FetchFailed`,
`models.ParseFailed`) recorded for that feed alone. A caller that only wants
to tell the user what went wrong catches `MonitorError`.
"""

from __future__ import annotations

__all__ = [
    "AlreadyRunning",
    "ConfigError",
    "DamagedDatabase",
    "DeliveryError",
    "ListTermError",
    "MonitorError",
    "QueryError",
    "QuerySyntaxError",
    "SourceError",
    "StorageError",
]


class MonitorError(Exception):
    """Base of every error monitor reports; its message names the file, feed or URL."""


class ConfigError(MonitorError):
    """The file cannot be used. `problems` holds one ``file:line:col: message`` per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class QueryError(MonitorError, ValueError):
    """A watchlist query cannot be used; config turns it into a file:line:col problem."""


class QuerySyntaxError(QueryError):
    """The query text cannot be used; ``offset`` is where (0-based) in the query text."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (column {offset + 1})")
        self.message = message
        self.offset = offset


class ListTermError(QueryError):
    """An item of an ``all``/``any``/``none`` list cannot be used."""

    def __init__(self, list_name: str, index: int, message: str) -> None:
        super().__init__(f"{list_name}[{index}]: {message}")
        self.list_name = list_name
        self.index = index
        self.message = message


class StorageError(MonitorError):
    """A database operation failed; the message says what was being done, on which file."""


class DatabaseFull(StorageError):
    """The disk (or SQLite's page limit) is full: the transaction rolled back, nothing was
    half-written, and the same work succeeds once there is space again."""


class DamagedDatabase(StorageError):
    """SQLite's integrity check found the database damaged; nothing was written."""


class AlreadyRunning(MonitorError):
    """Another monitor daemon already holds the lock beside this database."""


class SourceError(MonitorError):
    """A feed cannot be added, removed or imported as asked; the message says why and what to do."""


class DeliveryError(MonitorError):
    """The message was not (or not certainly) delivered."""

    def __init__(self, message: str, *, permanent: bool, maybe_delivered: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent  # 5xx or a configuration problem: retrying will not help
        self.maybe_delivered = maybe_delivered  # broke after the data was sent: re-send as is
