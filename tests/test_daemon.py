"""The daemon's single-instance lock, on real files."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monitor.allocator import runs_the_daemon, tunables_without_thread_cache
from monitor.daemon import single_instance
from monitor.errors import AlreadyRunning
from tests.processes import alive, descendants
from tests.servers import HTTPTestServer, Reply

ONE_ENTRY = (
    b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Un</title>'
    b"<item><title>Le Togo signe</title><guid>togo-1</guid>"
    b"<description>Le Togo signe un accord.</description></item></channel></rss>"
)


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


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_killing_the_daemon_leaves_no_worker_behind(tmp_path: Path) -> None:
    """SIGKILL runs no cleanup: the fork server and the extraction workers must die with the
    daemon by themselves (a hostile run left 69 processes, about 3 GB, after 20 kills)."""
    helpers: set[int] = set()
    with HTTPTestServer() as server:
        server.routes["/feed.xml"] = Reply(
            body=ONE_ENTRY, headers={"Content-Type": "application/rss+xml"}
        )
        daemon, log_path = _start_daemon(tmp_path, server.url("/feed.xml"))
        try:
            # The workers start with the first entry to extract and match.
            _wait_for_log(log_path, "1 new", daemon)
            helpers = descendants(daemon.pid)
            assert len(helpers) >= 2, "expected a fork server and extraction workers"
            daemon.kill()
            daemon.wait(10)
            deadline = time.monotonic() + 15
            while (left := {pid for pid in helpers if alive(pid)}) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not left, f"processes left behind after SIGKILL: {sorted(left)}"
        finally:
            if daemon.poll() is None:
                daemon.kill()
            for pid in helpers | descendants(daemon.pid):  # whatever a failure left behind
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def test_thread_caches_are_turned_off_unless_the_user_sized_them() -> None:
    assert tunables_without_thread_cache({}) == "glibc.malloc.tcache_count=0"
    assert (
        tunables_without_thread_cache({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"})
        == "glibc.malloc.mmap_threshold=65536:glibc.malloc.tcache_count=0"
    )
    assert tunables_without_thread_cache({"GLIBC_TUNABLES": "glibc.malloc.tcache_count=3"}) is None


@pytest.mark.parametrize(
    ("args", "daemon"),
    [
        (["run"], True),
        (["-c", "feeds.yaml", "run"], True),
        (["--config=feeds.yaml", "-v", "--log-format", "json", "run"], True),
        (["-vc", "run", "run"], True),  # "-vc FILE": the file is called "run"
        (["-c", "run", "status"], False),
        (["search", "run"], False),
        (["--help"], False),
        ([], False),
    ],
)
def test_the_program_knows_monitor_run_before_parsing_its_command_line(
    args: list[str], daemon: bool
) -> None:
    assert runs_the_daemon(args) is daemon


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux's /proc")
def test_the_daemon_runs_as_the_same_process_with_glibcs_thread_caches_off(
    tmp_path: Path,
) -> None:
    if os.confstr("CS_GNU_LIBC_VERSION") is None:  # pragma: no cover - musl
        pytest.skip("glibc's tunables only")
    daemon, log_path = _start_daemon(tmp_path)
    try:
        _wait_for_log(log_path, "monitor running", daemon)
        # The same PID (what systemd and the lock beside the database know), started again
        # with the tunable; the workers' fork server inherits it.
        environ = Path(f"/proc/{daemon.pid}/environ").read_bytes().split(b"\0")
        assert b"GLIBC_TUNABLES=glibc.malloc.tcache_count=0" in environ
        assert log_path.read_text(encoding="utf-8").count("monitor running") == 1
    finally:
        daemon.terminate()
        daemon.wait(30)
    assert daemon.returncode == 0


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="needs POSIX signals")
def test_sighup_rereads_the_configuration(tmp_path: Path) -> None:
    daemon, log_path = _start_daemon(tmp_path)
    config = tmp_path / "feeds.yaml"
    try:
        _wait_for_log(log_path, "monitor running", daemon)
        config.write_text(
            CONFIG.replace("digest:", "  - name: Bénin\n    query: Bénin\ndigest:"),
            encoding="utf-8",
        )
        daemon.send_signal(signal.SIGHUP)
        _wait_for_log(log_path, "received SIGHUP: re-reading", daemon)
        _wait_for_log(log_path, "configuration reloaded: 1 feeds, 2 watchlists", daemon)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
    assert daemon.returncode == 0, log_path.read_text(encoding="utf-8")


CONFIG = """
feeds:
  - url: http://127.0.0.1:9/feed.xml
watchlists:
  - name: Togo
    query: Togo
digest:
  from: veille@example.org
  to: [analyste@example.org]
"""


def _start_daemon(
    directory: Path, feed_url: str = "http://127.0.0.1:9/feed.xml"
) -> tuple[subprocess.Popen[bytes], Path]:
    """`monitor run` on a one-feed configuration in `directory`, its log in daemon.log."""
    config = directory / "feeds.yaml"
    config.write_text(CONFIG.replace("http://127.0.0.1:9/feed.xml", feed_url), encoding="utf-8")
    log_path = directory / "daemon.log"
    with open(log_path, "w", encoding="utf-8") as log_file:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "monitor", "-c", str(config), "run"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return daemon, log_path


def _wait_for_log(log_path: Path, text: str, daemon: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while text not in log_path.read_text(encoding="utf-8"):
        assert daemon.poll() is None, log_path.read_text(encoding="utf-8")
        assert time.monotonic() < deadline, log_path.read_text(encoding="utf-8")
        time.sleep(0.1)


UNIT = Path(__file__).resolve().parent.parent / "contrib" / "monitor.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is absent")
def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify checks that ExecStart exists: point it at this checkout's monitor command.
    command = Path(sys.executable).parent / "monitor"
    if not command.exists():
        pytest.skip(f"no monitor command beside {sys.executable} to point the unit at")
    unit = tmp_path / "monitor.service"
    unit.write_text(
        UNIT.read_text(encoding="utf-8").replace("/opt/monitor/.venv/bin/monitor", str(command)),
        encoding="utf-8",
    )
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "monitor.service" in line and "Documentation" not in line
    ]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr
