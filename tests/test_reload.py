"""ConfigWatcher: saved changes are picked up, half-written files are waited out,
bad edits are reported once and never replace the last good configuration."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from monitor.errors import ConfigError
from monitor.reload import ConfigWatcher


def config_text(*watchlists: str) -> str:
    lines = ["feeds:", "  - url: https://example.org/rss", "watchlists:"]
    for name in watchlists:
        lines += [f"  - name: {name}", f"    all: ['{name}']"]
    lines += ["digest:", "  from: veille@example.org", "  to: [analyste@example.org]"]
    return "\n".join(lines) + "\n"


class FakeTime:
    """A monotonic clock that only moves when the watcher sleeps. `during_sleep`
    runs at each sleep, standing in for an editor writing concurrently."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps = 0
        self.during_sleep: Callable[[int], None] = lambda sleep_number: None

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.sleeps += 1
        self.during_sleep(self.sleeps)


class Editor:
    """Saves the file the way editors do; every save gets a new mtime so that saves
    closer together than the file system's timestamp granularity stay visible."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.mtime_ns = 1_700_000_000_000_000_000

    def _stamp(self) -> None:
        self.mtime_ns += 1_000_000_000
        os.utime(self.path, ns=(self.mtime_ns, self.mtime_ns))

    def write_in_place(self, text: str) -> None:
        self.path.write_text(text, encoding="utf-8")
        self._stamp()

    def truncate(self) -> None:
        self.path.write_bytes(b"")
        self._stamp()

    def append(self, text: str) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(text)
        self._stamp()

    def replace_by_rename(self, text: str) -> None:
        """vim's default: write a new file, rename it over the old one (new inode)."""
        temporary = self.path.with_name(self.path.name + ".swp")
        temporary.write_text(text, encoding="utf-8")
        self.mtime_ns += 1_000_000_000
        os.utime(temporary, ns=(self.mtime_ns, self.mtime_ns))
        os.replace(temporary, self.path)

    def touch(self) -> None:
        self._stamp()


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def editor(tmp_path: Path) -> Editor:
    path = tmp_path / "feeds.yaml"
    path.write_text(config_text("Togo"), encoding="utf-8")
    return Editor(path)


def watch(editor: Editor, fake_time: FakeTime) -> ConfigWatcher:
    return ConfigWatcher(editor.path, environ={}, clock=fake_time.clock, sleep=fake_time.sleep)


def names(watcher_result: object) -> list[str]:
    watchlists = getattr(watcher_result, "watchlists", ())
    return [watchlist.name for watchlist in watchlists]


def test_loads_at_construction(editor: Editor, fake_time: FakeTime) -> None:
    watcher = watch(editor, fake_time)
    assert names(watcher.current) == ["Togo"]
    assert watcher.poll() is None


def test_invalid_file_at_start_raises(editor: Editor, fake_time: FakeTime) -> None:
    editor.write_in_place("feeds: [\n")
    with pytest.raises(ConfigError, match="YAML syntax error"):
        watch(editor, fake_time)


def test_missing_file_at_start_raises(tmp_path: Path, fake_time: FakeTime) -> None:
    with pytest.raises(ConfigError, match="the file is missing"):
        ConfigWatcher(tmp_path / "feeds.yaml", clock=fake_time.clock, sleep=fake_time.sleep)


def test_unchanged_file_is_not_read_again(editor: Editor, fake_time: FakeTime) -> None:
    watcher = watch(editor, fake_time)
    sleeps_after_start = fake_time.sleeps
    assert [watcher.poll() for _ in range(5)] == [None] * 5
    assert fake_time.sleeps == sleeps_after_start  # no settling reads: stat said "same"


def test_saved_change_is_returned_once(editor: Editor, fake_time: FakeTime) -> None:
    watcher = watch(editor, fake_time)
    editor.write_in_place(config_text("Togo", "Bénin"))

    new_config = watcher.poll()

    assert names(new_config) == ["Togo", "Bénin"]
    assert watcher.current is new_config
    assert watcher.poll() is None


def test_rename_over_the_file_is_seen(editor: Editor, fake_time: FakeTime) -> None:
    watcher = watch(editor, fake_time)
    old_inode = editor.path.stat().st_ino
    editor.replace_by_rename(config_text("Ghana"))
    assert editor.path.stat().st_ino != old_inode

    assert names(watcher.poll()) == ["Ghana"]
    editor.replace_by_rename(config_text("Niger"))
    assert names(watcher.poll()) == ["Niger"]


def test_touch_without_change_returns_nothing(editor: Editor, fake_time: FakeTime) -> None:
    watcher = watch(editor, fake_time)
    editor.touch()
    assert watcher.poll() is None
    assert names(watcher.current) == ["Togo"]


def test_invalid_edit_is_reported_once_and_the_last_good_config_stays(
    editor: Editor, fake_time: FakeTime
) -> None:
    watcher = watch(editor, fake_time)
    good = watcher.current
    editor.write_in_place(config_text("Togo").replace("all: ['Togo']", "all: []"))

    with pytest.raises(ConfigError) as raised:
        watcher.poll()

    assert raised.value.problems == [
        f"{editor.path}:5:10: watchlists[1].all is empty: add terms or remove the key"
    ]
    assert watcher.current is good
    assert watcher.poll() is None  # the same bad content is not reported again
    editor.touch()
    assert watcher.poll() is None


def test_fixing_a_bad_edit_applies_it(editor: Editor, fake_time: FakeTime) -> None:
    watcher = watch(editor, fake_time)
    editor.write_in_place("watchlists: [\n")
    with pytest.raises(ConfigError):
        watcher.poll()

    editor.write_in_place(config_text("Togo"))  # back to the previous good content

    assert names(watcher.poll()) == ["Togo"]


def test_half_written_file_is_waited_for(editor: Editor, fake_time: FakeTime) -> None:
    """`>` truncates first: the first read sees an empty file, the editor finishes
    while the watcher pauses, and only the complete file is loaded."""
    watcher = watch(editor, fake_time)
    complete = config_text("Togo", "Sahel")
    editor.truncate()

    def finish_writing(sleep_number: int) -> None:
        if editor.path.stat().st_size == 0:
            editor.write_in_place(complete)

    fake_time.during_sleep = finish_writing

    assert names(watcher.poll()) == ["Togo", "Sahel"]


def test_file_written_in_pieces_is_read_only_when_whole(
    editor: Editor, fake_time: FakeTime
) -> None:
    watcher = watch(editor, fake_time)
    complete = config_text("Togo", "Sahel", "Lomé")
    pieces = [complete[:40], complete[40:90], complete[90:]]
    editor.truncate()
    editor.append(pieces.pop(0))

    def write_next_piece(sleep_number: int) -> None:
        if pieces:
            editor.append(pieces.pop(0))

    fake_time.during_sleep = write_next_piece

    assert names(watcher.poll()) == ["Togo", "Sahel", "Lomé"]


def test_file_that_keeps_changing_is_retried_later(editor: Editor, fake_time: FakeTime) -> None:
    watcher = watch(editor, fake_time)
    editor.write_in_place(config_text("Togo", "Mali"))
    fake_time.during_sleep = lambda sleep_number: editor.append(f"# still writing {sleep_number}\n")

    assert watcher.poll() is None  # gave up settling; nothing reported, nothing replaced
    assert names(watcher.current) == ["Togo"]

    fake_time.during_sleep = lambda sleep_number: None
    assert names(watcher.poll()) == ["Togo", "Mali"]


def test_empty_file_is_invalid_never_zero_watchlists(editor: Editor, fake_time: FakeTime) -> None:
    watcher = watch(editor, fake_time)
    editor.truncate()

    with pytest.raises(ConfigError, match="the file has no settings"):
        watcher.poll()
    assert names(watcher.current) == ["Togo"]


def test_cut_off_file_is_invalid(editor: Editor, fake_time: FakeTime) -> None:
    watcher = watch(editor, fake_time)
    editor.write_in_place(config_text("Togo").split("digest:")[0])

    with pytest.raises(ConfigError, match='missing "digest"'):
        watcher.poll()


def test_deleted_file_is_reported_once_then_restored(editor: Editor, fake_time: FakeTime) -> None:
    watcher = watch(editor, fake_time)
    editor.path.unlink()

    with pytest.raises(ConfigError, match="the file is missing"):
        watcher.poll()
    assert watcher.poll() is None
    assert names(watcher.current) == ["Togo"]

    editor.path.write_text(config_text("Togo", "Bénin"), encoding="utf-8")
    assert names(watcher.poll()) == ["Togo", "Bénin"]


def test_environment_is_read_at_each_load(editor: Editor, fake_time: FakeTime) -> None:
    environ = {"WATCH": "Togo"}
    editor.write_in_place(config_text("${WATCH}"))
    watcher = ConfigWatcher(
        editor.path, environ=environ, clock=fake_time.clock, sleep=fake_time.sleep
    )
    assert names(watcher.current) == ["Togo"]

    environ["WATCH"] = "Bénin"
    editor.append("# edited\n")
    assert names(watcher.poll()) == ["Bénin"]
