"""Live reload of feeds.yaml: notice a saved change, wait until the file is whole,
validate it, and hand over the new `Config` or the problems.

No thread, no inotify: the daemon calls `ConfigWatcher.poll` every couple of
seconds from a scheduler job and keeps its last good configuration when `poll`
raises. The file is watched by path (``os.stat`` on the name, never an open
descriptor), so editors that save by writing a new file and renaming it over
the old one (vim, most IDEs) are seen like any other save.

A save is recognised by the file's identity and timestamps (device, inode,
size, mtime_ns, ctime_ns); the content hash then tells a real change from a
mere touch. A file caught half-written (``>`` redirection, editors that
truncate then write) is read again after a short pause until two reads agree,
and an empty or cut-off file is simply invalid: it never becomes a
configuration with no watchlists (`monitor.config` requires feeds, watchlists
and a digest).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from monitor.config import (
    MAX_CONFIG_BYTES,
    Config,
    check_config_size,
    decode_config_bytes,
    parse_config,
)
from monitor.errors import ConfigError

DEFAULT_SETTLE_SECONDS = 0.2
DEFAULT_MAX_SETTLE_SECONDS = 2.0


@dataclass(frozen=True)
class _FileState:
    """What ``stat`` says about the file; any difference means "look at the content"."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, path: Path) -> _FileState | None:
        try:
            status = os.stat(path)
        except FileNotFoundError:
            return None
        return cls(
            status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns
        )


@dataclass(frozen=True)
class _Snapshot:
    """One read of the file. `state` is None when there is no file; `unreadable`
    holds the reason when it exists but cannot be read."""

    state: _FileState | None
    content: bytes = b""
    unreadable: str | None = None

    @property
    def digest(self) -> str:
        if self.state is None:
            return "missing"
        if self.unreadable is not None:
            return "unreadable: " + self.unreadable
        return hashlib.sha256(self.content).hexdigest()


class ConfigWatcher:
    """Loads `path` at construction, then reports changes through `poll`.

    * ``ConfigWatcher(path)`` raises `ConfigError` when the file cannot be used now.
    * `current` is the last valid configuration.
    * `poll()` returns the new `Config` when the file changed and is valid; None when
      nothing changed, or when the file is still being written (the next poll looks
      again); and raises `ConfigError` when the file changed and is invalid, missing
      or unreadable. Each distinct bad content is raised once, not at every poll.
      Saving the previous good content again returns that configuration again.

    `clock` (monotonic seconds) and `sleep` are injectable so tests can drive the
    settling without waiting. `environ` (default ``os.environ``, read at each load)
    supplies ``${VAR}`` values.
    """

    def __init__(
        self,
        path: Path,
        *,
        environ: Mapping[str, str] | None = None,
        settle_seconds: float = DEFAULT_SETTLE_SECONDS,
        max_settle_seconds: float = DEFAULT_MAX_SETTLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.path = path
        self._environ = environ
        self._settle_seconds = settle_seconds
        self._max_settle_seconds = max_settle_seconds
        self._clock = clock
        self._sleep = sleep
        snapshot = self._read_settled()
        if snapshot is None:
            raise ConfigError(
                [
                    f"{path}: the file keeps changing; wait for the editor to finish, then start again"
                ]
            )
        self._current = self._load(snapshot)
        self._seen_state = snapshot.state
        self._seen_digest = snapshot.digest

    @property
    def current(self) -> Config:
        return self._current

    def poll(self) -> Config | None:
        """The new configuration if the file changed, else None; ConfigError if it is unusable."""
        if _FileState.of(self.path) == self._seen_state:
            return None
        snapshot = self._read_settled()
        if snapshot is None:
            return None
        self._seen_state = snapshot.state
        if snapshot.digest == self._seen_digest:
            return None
        self._seen_digest = snapshot.digest
        self._current = self._load(snapshot)
        return self._current

    # ------------------------------------------------------------------ internals

    def _read_settled(self) -> _Snapshot | None:
        """Read until two reads `settle_seconds` apart agree; None if the file is still
        changing after `max_settle_seconds`."""
        deadline = self._clock() + self._max_settle_seconds
        previous = self._read()
        while True:
            self._sleep(self._settle_seconds)
            latest = self._read()
            if latest == previous:
                return latest
            if self._clock() >= deadline:
                return None
            previous = latest

    def _read(self) -> _Snapshot:
        # stat before reading: a write during the read changes the state seen by the
        # next read, so the two reads cannot agree on a torn content.
        state = _FileState.of(self.path)
        if state is None:
            return _Snapshot(None)
        try:
            with self.path.open("rb") as handle:
                content = handle.read(MAX_CONFIG_BYTES + 1)
        except FileNotFoundError:  # removed between stat and open
            return _Snapshot(None)
        except OSError as error:
            return _Snapshot(state, unreadable=error.strerror or str(error))
        return _Snapshot(state, content)

    def _load(self, snapshot: _Snapshot) -> Config:
        if snapshot.state is None:
            raise ConfigError([f"{self.path}: the file is missing: restore it or save it again"])
        if snapshot.unreadable is not None:
            raise ConfigError(
                [f"{self.path}: cannot read the configuration: {snapshot.unreadable}"]
            )
        check_config_size(snapshot.content, path=self.path)
        text = decode_config_bytes(snapshot.content, path=self.path)
        environ = os.environ if self._environ is None else self._environ
        return parse_config(text, path=self.path, environ=environ)
