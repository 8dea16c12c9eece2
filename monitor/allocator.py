"""The daemon runs with glibc's per-thread malloc caches turned off.

glibc keeps, for each thread, a cache of freed blocks of up to 1 KiB (its *tcache*: seven
of each size, up to about 230 KiB a thread) that no other thread can reuse. The daemon has
a poll thread per `poll.concurrency` and page threads besides, 170 to 220 threads at 128:
with the caches, the main process of a 10,000-feed daemon held 179–191 MiB at
`poll.concurrency` 96, without them 148–161 MiB, at the same speed (bench/bench_daemon_scale.py,
BENCHMARKS.md). The caches can only be turned off before the process starts (a glibc
tunable, read by the dynamic loader), so `monitor run` starts itself again, as the same
process (same PID, same arguments), with the tunable set: first thing in the program
(`monitor.program`), before the heavy imports, else in the `run` command itself. Its
extraction workers inherit the tunable.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

TUNABLES = "GLIBC_TUNABLES"
NO_THREAD_CACHE = "glibc.malloc.tcache_count=0"


def tunables_without_thread_cache(environ: Mapping[str, str]) -> str | None:
    """The value GLIBC_TUNABLES needs for no per-thread cache, or None when it already says
    how large that cache is (the user's choice, or this module's, kept)."""
    current = environ.get(TUNABLES, "")
    if "glibc.malloc.tcache_count=" in current:
        return None
    return f"{current}:{NO_THREAD_CACHE}" if current else NO_THREAD_CACHE


def restart_without_thread_caches() -> None:
    """Replace this process by itself with glibc's per-thread caches off; return when they
    are off already, or on a system without glibc. Call it before any thread starts."""
    if not _is_glibc() or not sys.executable:
        return
    tunables = tunables_without_thread_cache(os.environ)
    if tunables is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    environ = {**os.environ, TUNABLES: tunables}
    # `orig_argv` is the command line as the interpreter got it (`-m monitor ...` or the
    # `monitor` script, with any -X options).
    try:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environ)
    except OSError:  # pragma: no cover - the interpreter cannot be run again: run as it is
        return


def runs_the_daemon(args: Sequence[str]) -> bool:
    """Whether `monitor ARGS` is `monitor run`: its command, the first argument that is
    neither an option of `monitor` itself nor an option's value, is ``run``. Read before
    the command line's own parser is even imported, so that the daemon starts itself again
    at once (its `run` command does it too, for what this does not recognise)."""
    arguments = iter(args)
    for argument in arguments:
        if argument in ("-c", "--config", "--log-format"):
            next(arguments, None)
        elif argument.startswith("-"):
            # A cluster of short flags ending with -c ("-vc FILE") takes the next one.
            if not argument.startswith("--") and argument.endswith("c"):
                next(arguments, None)
        else:
            return argument == "run"
    return False


def _is_glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") is not None
    except (ValueError, OSError, AttributeError):  # not Linux, or not glibc (musl)
        return False
