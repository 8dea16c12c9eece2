"""Where feeds.yaml is, and which database a broken feeds.yaml still points at.

Lookup, first found wins: ``-c PATH``; ``$MONITOR_CONFIG``; ``./feeds.yaml``;
``$XDG_CONFIG_HOME/monitor/feeds.yaml`` (``~/.config/monitor/feeds.yaml`` when the
variable is unset, empty or relative, as the XDG Base Directory specification says).
When none exists, every place looked at is kept so the error can name them.

Recovery: the commands that only read (`status`, `hits`, `search`, `digest --dry-run`)
still work when feeds.yaml has an error, from the database it names. Its ``database:``
key is read from the YAML when the file still parses, else from a top-level
``database:`` line; without one, the default ``monitor.db`` beside the file is used if
it exists. No state is written anywhere: the answer comes from the file as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from monitor.config.loading import MAX_CONFIG_BYTES
from monitor.config.schema import DEFAULT_DATABASE, DEFAULT_TIMEZONE

CONFIG_NAME = "feeds.yaml"


@dataclass(frozen=True)
class ConfigLocation:
    path: Path  # the file to load (it may not exist: then `looked` says where we looked)
    looked: tuple[Path, ...]  # every place considered, in order


def find_config(
    explicit: Path | None, environ: Mapping[str, str], *, cwd: Path, home: Path
) -> ConfigLocation:
    """The configuration file to use, following the lookup order in the module docstring."""
    if explicit is not None:
        return ConfigLocation(explicit, (explicit,))
    from_environment = environ.get("MONITOR_CONFIG")
    if from_environment:
        path = Path(from_environment)
        return ConfigLocation(path, (path,))
    local = Path(CONFIG_NAME)
    xdg_home = environ.get("XDG_CONFIG_HOME", "")
    base = Path(xdg_home) if xdg_home and Path(xdg_home).is_absolute() else home / ".config"
    user = base / "monitor" / CONFIG_NAME
    for candidate in (local, user):
        if (cwd / candidate).is_file():
            return ConfigLocation(candidate, (cwd / local, user))
    return ConfigLocation(local, (cwd / local, user))


@dataclass(frozen=True)
class RecoveredSettings:
    """What a broken feeds.yaml still tells: its database, and its time zone if readable."""

    database: Path
    timezone: ZoneInfo
    how: str  # "the database: key", "the default monitor.db beside the file"


_DATABASE_LINE = re.compile(r"^database:[ \t]*(?P<value>[^#\n]*?)[ \t]*(?:#.*)?$", re.MULTILINE)
_TIMEZONE_LINE = re.compile(r"^timezone:[ \t]*(?P<value>[^#\n]*?)[ \t]*(?:#.*)?$", re.MULTILINE)


def recover_settings(path: Path) -> RecoveredSettings | None:
    """The database (and time zone) a feeds.yaml that does not validate still names,
    or None when it names none and no ``monitor.db`` lies beside it."""
    try:
        with path.open("rb") as handle:
            text = handle.read(MAX_CONFIG_BYTES).decode("utf-8-sig", errors="replace")
    except OSError:
        return None
    base = path.absolute().parent
    database = _top_level_text(text, "database", _DATABASE_LINE)
    timezone = _zone(_top_level_text(text, "timezone", _TIMEZONE_LINE))
    if database is not None:
        written = Path(database).expanduser()
        return RecoveredSettings(
            written if written.is_absolute() else base / written, timezone, "its database: key"
        )
    default = base / DEFAULT_DATABASE
    if default.is_file():
        return RecoveredSettings(default, timezone, f"the default {DEFAULT_DATABASE} beside it")
    return None


def _top_level_text(text: str, key: str, line: re.Pattern[str]) -> str | None:
    """The text value of a top-level key: from the YAML if it parses, else from its line.
    A value holding ``${`` is not used (its variable may be what is wrong)."""
    value: object = None
    try:
        document = YAML(typ="safe", pure=True).load(text)
    except YAMLError:
        document = None
    if isinstance(document, dict):
        value = document.get(key)
    else:
        found = line.search(text)
        value = found.group("value").strip("'\" ") if found else None
    if not isinstance(value, str) or not value.strip() or "${" in value:
        return None
    return value.strip()


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or DEFAULT_TIMEZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_TIMEZONE)
