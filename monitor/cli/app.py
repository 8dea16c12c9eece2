"""The `monitor` command group and what every command shares: loading feeds.yaml,
reading the database, parsing times, and printing."""

from __future__ import annotations

import difflib
import logging
import os
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from monitor import __version__
from monitor.config import (
    Config,
    DigestSettings,
    PollSettings,
    find_config,
    load_config,
    parse_duration,
    recover_settings,
)
from monitor.errors import ConfigError, MonitorError
from monitor.logs import setup_logging
from monitor.models import Watchlist, utc_now
from monitor.store import Store

log = logging.getLogger("monitor")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

# Piped output (scripts, logs, tests) gets wide tables so cells are not wrapped mid-value.
_PIPED_WIDTH = None if sys.stdout.isatty() else 240
stdout = Console(highlight=False, markup=False, width=_PIPED_WIDTH)  # feed text is never markup
stderr = Console(stderr=True, highlight=False, markup=False)


def load(ctx: click.Context) -> Config:
    path: Path = ctx.obj["config_path"]
    exit_if_no_config(ctx)
    try:
        return load_config(path)
    except ConfigError as error:
        for problem in error.problems:
            stderr.print(problem, markup=False)
        stderr.print(f"{path}: {len(error.problems)} problem(s); nothing was run.", markup=False)
        ctx.exit(EXIT_FAILED)
        raise AssertionError("unreachable") from error


def exit_if_no_config(ctx: click.Context) -> None:
    """With no -c and no $MONITOR_CONFIG, and no file where monitor looks: say where it looked."""
    looked: tuple[Path, ...] = ctx.obj.get("config_looked", ())
    if len(looked) < 2 or ctx.obj["config_path"].exists():
        return
    stderr.print(
        "no configuration file: looked for "
        + " and ".join(str(place) for place in looked)
        + "; create one there (the bundled feeds.yaml is a commented example), "
        "or give its path with -c PATH or $MONITOR_CONFIG",
        markup=False,
        soft_wrap=True,
    )
    ctx.exit(EXIT_FAILED)


def load_for_reading(ctx: click.Context) -> tuple[Config, bool]:
    """The configuration for a command that only reads, and whether it is the real one.

    When feeds.yaml has problems, the command still runs on the database the file names
    (`recover_settings`), with the problems and a warning on stderr; the flag is then
    True and the configuration holds no feeds, watchlists or digest settings.
    """
    path: Path = ctx.obj["config_path"]
    exit_if_no_config(ctx)
    try:
        return load_config(path), False
    except ConfigError as error:
        for problem in error.problems:
            stderr.print(problem, markup=False, soft_wrap=True)
        recovered = recover_settings(path)
        if recovered is None:
            stderr.print(
                f"{path}: {len(error.problems)} problem(s), and it names no database that "
                "could be read instead; nothing was run.",
                markup=False,
                soft_wrap=True,
            )
            ctx.exit(EXIT_FAILED)
            raise AssertionError("unreachable") from error
        stderr.print(
            f"warning: {path} has {len(error.problems)} problem(s) (first: "
            f"{error.problems[0]}); showing {recovered.database} (from {recovered.how}) as it "
            "was last written. A running daemon keeps its last good configuration; fix the "
            "file for it to take the change.",
            markup=False,
            soft_wrap=True,
        )
        fallback = Config(
            path=path.absolute(),
            database=recovered.database,
            timezone=recovered.timezone,
            poll=PollSettings(),
            feeds=(),
            watchlists=(),
            digests=(DigestSettings(),),
        )
        return fallback, True


class CannotRun(click.ClickException):
    """The command could not run (an unknown name, an unreadable file or URL): exit 2."""

    exit_code = EXIT_USAGE


_WEEKS_OR_MONTHS = re.compile(r"(\d+)\s*(w|mo)")


def parse_since(value: str | None, tz: tzinfo = UTC) -> datetime | None:
    """A start time from a duration back from now (``12h``, ``1d``, ``2w``, ``1mo`` = 30
    days) or an ISO date or date-time (``2026-11-01``: midnight in `tz`)."""
    if value is None:
        return None
    text = value.strip()
    if match := _WEEKS_OR_MONTHS.fullmatch(text):
        days = int(match.group(1)) * (7 if match.group(2) == "w" else 30)
        return utc_now() - timedelta(days=days)
    try:
        return utc_now() - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: use a duration back from now (12h, 1d, 2w, 1mo) or an ISO date "
            "(2026-11-01, 2026-11-01T08:00)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)


def read_only_store(config: Config) -> Store:
    """The database for a command that only reads: never created, migrated or written."""
    try:
        return Store(config.database, read_only=True)
    except MonitorError as error:
        raise CannotRun(str(error)) from error


def watchlist_named(config: Config, name: str) -> Watchlist:
    """The configured watchlist called `name`, or a usage error that suggests the closest."""
    for watchlist in config.watchlists:
        if watchlist.name == name:
            return watchlist
    names = [watchlist.name for watchlist in config.watchlists]
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(map(repr, names))}"
    raise CannotRun(f"no watchlist named {name!r} in {config.path}{hint}")


def _config_option_after_command(
    ctx: click.Context, parameter: click.Parameter, value: Path | None
) -> None:
    if value is not None:
        settings = ctx.ensure_object(dict)
        settings["config_path"] = value
        settings["config_looked"] = (value,)


# `-c` is accepted after the command too (`monitor hits -c feeds.yaml`), as users type it.
config_option = click.option(
    "-c",
    "--config",
    type=click.Path(path_type=Path),
    default=None,
    expose_value=False,
    callback=_config_option_after_command,
    help="Configuration file (also accepted before the command).",
)


# `--format table|json`: a table for people, JSON for scripts.
format_option = click.option(
    "--format", "output", type=click.Choice(["table", "json"]), default="table"
)


class Commands(click.Group):
    """Every error monitor reports is one clear line on stderr and exit 1, never a traceback."""

    def main(self, args: Sequence[str] | None = None, *more: Any, **options: Any) -> Any:
        """Run as the program (``args`` None: read from sys.argv), a command that asked to
        (`end_without_freeing`) ends the process at once when done, without freeing what
        it built object by object: at 100,000 watchlists, one to three seconds of
        ``monitor check``. Output and exit status are the same."""
        global _as_program
        _as_program = args is None
        try:
            return super().main(args, *more, **options)
        except SystemExit as done:
            if args is None and _ending_without_freeing and isinstance(done.code, int | None):
                sys.stdout.flush()
                sys.stderr.flush()
                logging.shutdown()
                os._exit(done.code or 0)
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MonitorError as error:
            stderr.print(str(error), markup=False, soft_wrap=True)
            ctx.exit(EXIT_FAILED)


_ending_without_freeing = False
_as_program = False  # `main` reads sys.argv: this process is the `monitor` program


def running_as_program() -> bool:
    """Whether this process is the `monitor` program, not a caller of `main` (tests)."""
    return _as_program


def end_without_freeing() -> None:
    """Nothing this process built needs freeing before it exits (see `Commands.main`)."""
    global _ending_without_freeing
    _ending_without_freeing = True


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="monitor")
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help=(
        "Configuration file (default: $MONITOR_CONFIG, else ./feeds.yaml, else "
        "$XDG_CONFIG_HOME/monitor/feeds.yaml, i.e. ~/.config/monitor/feeds.yaml)."
    ),
)
@click.option("-v", "--verbose", is_flag=True, help="Log debug details.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines as text, or as one JSON object each (journald, log shippers).",
)
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, verbose: bool, log_format: str) -> None:
    """Watch news feeds for topics and email a daily digest of the hits."""
    setup_logging(verbose=verbose, log_format=log_format)
    location = find_config(
        config_path, os.environ, cwd=Path.cwd(), home=Path(os.path.expanduser("~"))
    )
    ctx.obj = {"config_path": location.path, "config_looked": location.looked}
