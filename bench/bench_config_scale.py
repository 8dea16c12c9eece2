"""Benchmark: feeds.yaml with 10,000 to 100,000 watchlists or feeds.

    .venv/bin/python bench/bench_config_scale.py              # 10,000 and 100,000 of each
    .venv/bin/python bench/bench_config_scale.py --sizes 10000 --what watchlists
    .venv/bin/python bench/bench_config_scale.py --profile 100000   # cProfile of load_config

Generated files (fixed seed), in the bundled file's style:

* ``watchlists``: 20 feeds and N watchlists generated from an entity list (a person,
  a place or an organisation each, as users derive them from a list of thousands of
  names): a name, ``any:`` of two to four spellings of the entity (full name, surname,
  initials); one in five a ``query:`` instead, mixing a quoted phrase, AND, OR, NOT and
  ``NEAR/n``; one in ten fixes ``language:``, one in twenty is scoped with ``feeds:``.
* ``feeds``: N feeds, each a distinct URL on one of N/20 hosts, a distinct name, one in
  three with ``tags:``, one in four with ``interval:``, and 20 watchlists, one scoped by
  tag.

Each step is timed in this process except ``monitor check``, run end to end as a
subprocess (interpreter start and imports included):

* ``load``: `load_config` (read, YAML, validation, cross-references, frozen settings);
* ``check``: ``monitor -c FILE check``, wall time and the subprocess's peak RSS;
* ``matcher``: ``Matcher(config.watchlists)`` with its French and English partitions
  built (`Matcher.prepare`, what each extraction worker does before its first page) and
  one article matched;
* ``watch``: a `ConfigWatcher` started on the file (what the daemon pays at start:
  settle read + load), then ``reload``: one watchlist renamed, the file saved, and
  `poll` returning the new configuration (settle pause of 0.2 s included), then
  ``matcher update``: the matcher for the reloaded watchlists built from the previous
  one (what each worker does once, before its next page, after a reload);
* ``monitor run``: from exec until it logs "monitor running" (it polls from then on), and
  until it logs "extraction workers ready" (its workers have compiled every watchlist
  and can match French and English articles), then a save and SIGHUP
  until it logs "configuration reloaded"; peak RSS of the daemon and of each worker.

Peak RSS of this process is printed after each size (it only grows, so the figure for a
size includes the sizes before it in the same run; run one size alone for its own peak).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from monitor.config import lint, load_config, loading
from monitor.matching import Matcher
from monitor.models import ArticleText, TextSource
from monitor.reload import ConfigWatcher

T = TypeVar("T")

_FIRST = [
    "Jean",
    "Marie",
    "Koffi",
    "Ama",
    "Yawa",
    "Kossi",
    "Afi",
    "Komlan",
    "Abla",
    "Edem",
    "Faure",
    "Gilchrist",
    "Agbéyomé",
    "Brigitte",
    "Aristide",
    "Salif",
    "Aminata",
    "Ousmane",
    "Fatou",
    "Moussa",
    "Ibrahim",
    "Mariam",
    "Awa",
    "Kwame",
    "Nana",
    "Akosua",
    "Adjoa",
    "Kofi",
    "Yao",
    "Mawuli",
    "Sénamé",
    "Dodzi",
    "Elom",
    "Mensah",
    "Aïcha",
    "Boubacar",
    "Hawa",
    "Idrissa",
]
_LAST = [
    "Dupont",
    "Agbodjan",
    "Kodjo",
    "Gnassingbé",
    "Olympio",
    "Fabre",
    "Kpodar",
    "Amegan",
    "Adjovi",
    "Tchao",
    "Lawson",
    "Akakpo",
    "Dalmeida",
    "Kokou",
    "Houngbo",
    "Klassou",
    "Dogbé",
    "Tomégah",
    "Sossou",
    "Ayité",
    "Kpatcha",
    "Agba",
    "Traoré",
    "Keïta",
    "Diallo",
    "Ouédraogo",
    "Sawadogo",
    "Coulibaly",
    "Kaboré",
    "Touré",
    "Ndiaye",
    "Sow",
    "Ba",
    "Sarr",
]
_PLACES = [
    "Lomé",
    "Kara",
    "Sokodé",
    "Atakpamé",
    "Dapaong",
    "Aného",
    "Kpalimé",
    "Tsévié",
    "Bassar",
    "Mango",
]
_ROLES = ["ministre", "député", "maire", "général", "procureur", "juge", "ambassadeur", "directeur"]
_TOPICS = ["élection", "corruption", "attaque", "nomination", "procès", "grève", "manifestation"]


def _entity(index: int) -> tuple[str, str, str]:
    """A distinct full name, its surname and initials."""
    first, last = _FIRST[index % len(_FIRST)], _LAST[index * 7 % len(_LAST)]
    # Users' entity lists hold thousands of distinct names; a number keeps ours distinct.
    surname = f"{last}{index}"
    return f"{first} {surname}", surname, f"{first[0]}. {surname}"


def _watchlist(index: int, rng: random.Random, feed_names: list[str]) -> list[str]:
    full, surname, initials = _entity(index)
    lines = [f'  - name: "{full} ({index})"']
    if index % 5 == 0:
        place, role, topic = rng.choice(_PLACES), rng.choice(_ROLES), rng.choice(_TOPICS)
        shape = index // 5 % 3
        if shape == 0:
            query = f'"{full}" OR ({surname} AND ({place} OR {role}))'
        elif shape == 1:
            query = f'("{full}" OR "{initials}") NEAR/10 ({topic} OR {role}) NOT sport'
        else:
            query = f'{surname} AND {place} AND "{topic}"'
        lines.append(f"    query: '{query}'")
    else:
        terms = [full, surname, initials][: rng.randint(2, 3)]
        if index % 7 == 0:
            terms.append(f"{rng.choice(_ROLES)} {surname}")
        lines.append("    any: [" + ", ".join(f'"{term}"' for term in terms) + "]")
    if index % 10 == 3:
        lines.append(f"    language: {rng.choice(('fr', 'en'))}")
    if index % 20 == 7:
        lines.append(f"    feeds: [{feed_names[index % len(feed_names)]}]")
    return lines


def generate(
    watchlists: int, feeds: int, seed: int = 12, site: str = "https://news{host}.example.org"
) -> str:
    rng = random.Random(seed)
    lines = [
        "# Generated by bench/bench_config_scale.py",
        "database: monitor.db",
        "timezone: Africa/Lome",
        "poll:",
        "  interval: 15m",
        "feeds:",
    ]
    feed_names = []
    hosts = max(1, feeds // 20)
    for index in range(feeds):
        name = f"Source {index}"
        feed_names.append(name)
        lines.append(f"  - url: {site.format(host=index % hosts)}/rss/{index}.xml")
        lines.append(f"    name: {name}")
        if index % 3 == 0:
            lines.append(f"    tags: [{('afrique', 'togo', 'radio')[index % 9 // 3]}]")
        if index % 4 == 1:
            lines.append("    interval: 30m")
    lines.append("watchlists:")
    for index in range(watchlists):
        lines.extend(_watchlist(index, rng, feed_names))
        if watchlists < 100 and index == 0:
            lines.append("    tags: [togo]")
    lines += [
        "digest:",
        '  at: "07:00"',
        "  from: monitor@example.org",
        "  to: [analyst@example.org]",
        "  outbox: digests",
    ]
    return "\n".join(lines) + "\n"


def _timed(step: Callable[[], T]) -> tuple[T, float]:
    gc.collect()
    started = time.perf_counter()
    result = step()
    return result, time.perf_counter() - started


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# Runs the command and prints its peak RSS in KiB last. A child forked from this large
# process would count this process's pages in its own peak (Linux keeps the high-water
# mark across exec), so the command is started from this small launcher instead.
_LAUNCHER = """
import os, subprocess, sys
process = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(process.pid, 0)
print(usage.ru_utime + usage.ru_stime, usage.ru_maxrss, file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _check(path: Path) -> tuple[float, float, str, float]:
    """Wall time, CPU time (user + system), output and peak RSS (MiB) of ``monitor check``
    on `path`."""
    started = time.perf_counter()
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            _LAUNCHER,
            *(sys.executable, "-m", "monitor"),
            "-c",
            str(path),
            "check",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"monitor check failed:\n{completed.stdout}\n{completed.stderr[-2000:]}")
    cpu, peak_kib = completed.stderr.strip().splitlines()[-1].split()
    return elapsed, float(cpu), completed.stdout.strip(), int(peak_kib) / 1024


_NAMED = [_entity(index)[0] for index in (1, 5, 10)]
ARTICLE = (
    f"Lomé, le 3 mars. Le ministre {_NAMED[0]} a reçu l'ambassadeur {_NAMED[1]} pour parler "
    f"de l'élection à venir. Une manifestation est prévue à Kara, selon le maire {_NAMED[2]}."
)


def _measure(what: str, size: int, folder: Path) -> Iterator[str]:
    text = generate(size, 20) if what == "watchlists" else generate(20, size)
    path = folder / f"{what}-{size}.yaml"
    path.write_text(text, encoding="utf-8")
    yield f"{what} {size:,} ({len(text.encode()) / 1024 / 1024:.1f} MiB)"
    cpu_before = time.process_time()
    _, load_seconds = _timed(lambda: load_config(path))
    load_cpu = time.process_time() - cpu_before
    yield f"  load_config            {load_seconds:8.2f} s   CPU {load_cpu:.2f} s   {_load_average()}"
    check_seconds, check_cpu, summary, check_rss = _check(path)
    yield (
        f"  monitor check          {check_seconds:8.2f} s   CPU {check_cpu:.2f} s   "
        f"peak RSS {check_rss:.0f} MiB (subprocess)   {_load_average()}"
    )
    yield f"    {summary[:110]}"

    article = ArticleText(
        url=None, title="Togo", text=ARTICLE, source=TextSource.FEED, language="fr"
    )
    # A daemon's first load: not the one remembered above, nor its watchlists and lint.
    loading._last_parsed, loading._known_watchlists, lint._known_findings = None, None, None
    watcher, start_seconds = _timed(lambda: ConfigWatcher(path))
    yield f"  daemon start (watcher) {start_seconds:8.2f} s   (0.2 s settle included)"
    started = watcher.current

    def build_and_match() -> tuple[Matcher, int]:
        matcher = Matcher(started.watchlists)
        matcher.prepare(("fr", "en"))
        return matcher, len(matcher.match(article))

    (matcher, hits), matcher_seconds = _timed(build_and_match)
    yield f"  Matcher fr+en + 1 art. {matcher_seconds:8.2f} s   ({hits} hits)"
    changed = text.replace("Source 1\n", "Source 1 renamed\n", 1)
    changed = changed.replace('name: "', 'name: "Renamed ', 1)
    path.write_text(changed, encoding="utf-8")
    reloaded, reload_seconds = _timed(watcher.poll)
    assert reloaded is not None and reloaded.watchlists[0].name.startswith("Renamed")
    yield f"  reload (poll)          {reload_seconds:8.2f} s   (0.2 s settle included)"
    pairs = zip(reloaded.watchlists, started.watchlists, strict=True)
    kept = sum(new is old for new, old in pairs)
    yield f"    {kept:,} of {len(reloaded.watchlists):,} watchlists kept (the same objects)"

    def update_and_match() -> int:
        updated = Matcher(reloaded.watchlists, previous=matcher)
        return len(updated.match(article))

    hits, update_seconds = _timed(update_and_match)
    yield f"  matcher update + 1 art.{update_seconds:8.2f} s   ({hits} hits)"
    yield f"  peak RSS (this process) {_peak_rss_mib():7.0f} MiB"
    yield from _daemon(what, size, folder)


def _daemon(what: str, size: int, folder: Path) -> Iterator[str]:
    """``monitor run`` end to end: until it logs "extraction workers ready", then a save and SIGHUP
    until it logs "configuration reloaded" (parse, matcher handed over, feed jobs synced,
    lint). Feeds point at a closed port of 127.0.0.1, so polls fail at once, offline."""
    site = "http://127.0.0.1:9/news{host}"
    text = generate(size, 20, site=site) if what == "watchlists" else generate(20, size, site=site)
    run_folder = folder / f"run-{what}-{size}"
    run_folder.mkdir()
    path = run_folder / "feeds.yaml"
    path.write_text(text, encoding="utf-8")
    started = time.perf_counter()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "monitor", "-c", str(path), "run"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert daemon.stderr is not None
    try:
        running = None
        for line in daemon.stderr:
            if "monitor running" in line:
                running = time.perf_counter() - started  # polling; the workers still start
            if "extraction workers ready" in line:
                break
        else:
            raise SystemExit(f"monitor run stopped: exit {daemon.wait()}")
        ready = time.perf_counter() - started
        ready_cpu = sum(map(_cpu_of, [daemon.pid, *_children(daemon.pid)]))
        yield f"  monitor run: polling   {running or 0.0:8.2f} s   (from exec)"
        yield (
            f"  monitor run: running   {ready:8.2f} s   (from exec to workers ready)   "
            f"CPU {ready_cpu:.2f} s (daemon, fork server, workers)   {_load_average()}"
        )
        workers_before = set(_children(daemon.pid))
        path.write_text(text.replace('name: "', 'name: "Renamed ', 1), encoding="utf-8")
        started = time.perf_counter()
        daemon.send_signal(signal.SIGHUP)
        for line in daemon.stderr:
            if "configuration reloaded" in line:
                break
        yield f"  monitor run: reloaded  {time.perf_counter() - started:8.2f} s   (SIGHUP to log line)"
        kept = workers_before == set(_children(daemon.pid))
        yield f"    worker processes {'kept' if kept else 'replaced'} by the reload"
        peaks = [_peak_of(daemon.pid)] + [_peak_of(child) for child in _children(daemon.pid)]
        yield "  peak RSS: daemon {:.0f} MiB, its children {}".format(
            peaks[0], ", ".join(f"{peak:.0f} MiB" for peak in peaks[1:]) or "none"
        )
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


def _load_average() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds of a live process and of its children that ended."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(field) for field in fields[11:15])
    return (utime + stime + cutime + cstime) / os.sysconf("SC_CLK_TCK")


def _peak_of(pid: int) -> float:
    """VmHWM of a live process, in MiB (0 when it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _children(pid: int) -> list[int]:
    """The processes below `pid` (the fork server, and the workers below it)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return [descendant for child in found for descendant in (child, *_children(child))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--what", choices=["watchlists", "feeds", "both"], default="both")
    parser.add_argument(
        "--profile", type=int, metavar="N", help="profile load_config at N watchlists"
    )
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if options.profile:
            path = Path(folder, "profile.yaml")
            path.write_text(generate(options.profile, 20), encoding="utf-8")
            profiler = cProfile.Profile()
            profiler.runcall(load_config, path)
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(35)
            return
        kinds = ["watchlists", "feeds"] if options.what == "both" else [options.what]
        print(f"python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.1f}")
        for what in kinds:
            for size in options.sizes:
                for line in _measure(what, size, Path(folder)):
                    print(line, flush=True)


if __name__ == "__main__":
    main()
