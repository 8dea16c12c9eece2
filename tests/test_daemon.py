"""The daemon's single-instance lock, on real files."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.daemon import single_instance
from monitor.errors import AlreadyRunning


def test_a_second_daemon_on_the_same_database_is_refused(tmp_path: Path) -> None:
    database = tmp_path / "monitor.db"
    with (
        single_instance(database),
        pytest.raises(AlreadyRunning, match="already uses"),
        single_instance(database),
    ):
        pass
    with single_instance(database):  # released when the first one ended
        pass


def test_a_symlink_to_the_database_takes_the_same_lock(tmp_path: Path) -> None:
    database = tmp_path / "data" / "monitor.db"
    database.parent.mkdir()
    database.touch()
    link = tmp_path / "elsewhere.db"
    link.symlink_to(database)
    with (
        single_instance(database),
        pytest.raises(AlreadyRunning, match="already uses"),
        single_instance(link),
    ):
        pass
