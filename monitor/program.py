"""The `monitor` program (`python -m monitor` and the `monitor` script): `monitor run` turns
glibc's per-thread caches off (`monitor.allocator`) before anything heavy is imported, which
would otherwise be imported twice (0.6 s more at every start)."""

from __future__ import annotations

import sys

from monitor.allocator import restart_without_thread_caches, runs_the_daemon


def main() -> None:
    if runs_the_daemon(sys.argv[1:]):
        restart_without_thread_caches()
    from monitor.cli import main as command_line

    command_line()
