"""The way in: a file's bytes → text → tree → validated model → `Config`.

Owns the size limit and UTF-8 decoding, the order of the steps in
`parse_config`, and building the frozen settings from the validated model.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from monitor.collector import collector_paused
from monitor.config.environment import _substitute_environment
from monitor.config.messages import _describe_error, _unmask
from monitor.config.references import _check_references
from monitor.config.schema import (
    _ConfigModel,
    _FeedModel,
    _sets_for_checking,
    _SmtpModel,
    _WatchlistModel,
)
from monitor.config.settings import (
    DEFAULT_DIGEST_NAME,
    AlertDestination,
    AlertSettings,
    Config,
    DigestLanguage,
    DigestSettings,
    PollSettings,
    RetentionSettings,
    SmtpSettings,
)
from monitor.config.yaml_tree import (
    Tree,
    _hand_over,
    _Positions,
    _Problems,
    _read_yaml,
    _shown,
)
from monitor.errors import ConfigError
from monitor.models import FeedSpec, Watchlist
from monitor.text import human_size

MAX_CONFIG_BYTES = 64 * 1024 * 1024  # 100,000 watchlists take about 10 MiB


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate `path`. Raises ConfigError listing every problem.

    `environ` supplies ``${VAR}`` values (default: ``os.environ``).
    """
    try:
        data = read_config_bytes(path)
    except OSError as error:
        raise ConfigError(
            [f"{path}: cannot read the configuration: {error.strerror or error}"]
        ) from error
    text = decode_config_bytes(data, path=path)
    return parse_config(text, path=path, environ=os.environ if environ is None else environ)


def read_config_bytes(path: Path) -> bytes:
    """The file's bytes, refusing files over MAX_CONFIG_BYTES without reading them whole."""
    with path.open("rb") as handle:
        data = handle.read(MAX_CONFIG_BYTES + 1)
    check_config_size(data, path=path)
    return data


def check_config_size(data: bytes, *, path: Path) -> None:
    """ConfigError if `data` (read with a cap of MAX_CONFIG_BYTES + 1) is too large."""
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            [
                f"{path}: the file is larger than {human_size(MAX_CONFIG_BYTES)}: "
                "is it really feeds.yaml?"
            ]
        )


def decode_config_bytes(data: bytes, *, path: Path) -> str:
    """UTF-8 (an optional BOM is accepted) or a ConfigError pointing at the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        before = data[: error.start]
        line = before.count(b"\n") + 1
        column = len(before) - (before.rfind(b"\n") + 1) + 1
        raise ConfigError(
            [
                f"{path}:{line}:{column}: byte 0x{data[error.start]:02x} is not valid UTF-8: "
                "save the file as UTF-8"
            ]
        ) from None


def parse_config(text: str, *, path: Path, environ: Mapping[str, str]) -> Config:
    """Validate the YAML `text` of `path` into a Config. Raises ConfigError listing every problem.

    `path` is shown in messages as given and locates relative ``database``/``outbox``.

    The last valid configuration is remembered: the same text, path and environment give
    the same (frozen) `Config` again at once, so that `monitor run`, which checks the file
    before the daemon loads it, does not validate 100,000 watchlists twice.
    """
    global _last_parsed
    key = (
        text,
        str(path),
        str(path.absolute()),
        os.path.expanduser("~"),  # `~` in database/outbox
        tuple(sorted(environ.items())),
    )
    remembered = _last_parsed
    if remembered is not None and remembered[0] == key:
        return remembered[1]
    with without_garbage_collection():
        config = _parse_config(text, path=path, environ=environ)
    _last_parsed = (key, config)
    return config


_last_parsed: tuple[tuple[object, ...], Config] | None = None


def without_garbage_collection() -> AbstractContextManager[None]:
    """Pause the cyclic garbage collector while a configuration is built. A large file
    allocates millions of objects, none of them garbage, and each full collection
    triggered on the way walks all of them again: with 100,000 watchlists the collector
    took more than half the time. The objects are freed by reference counting anyway;
    the collector runs again as usual afterwards (for the whole process: a load in
    another thread pauses it there too for those seconds), the objects the load made
    counted as old ones (see `monitor.collector`)."""
    return collector_paused()


def _parse_config(text: str, *, path: Path, environ: Mapping[str, str]) -> Config:
    global _keyed
    problems = _Problems(path)
    document = _read_yaml(text, problems)
    if document is None:
        raise problems.error()
    tree, positions = document
    if tree is None:
        problems.add(
            (0, 0),
            "the file has no settings: it needs at least feeds:, watchlists: and digest: "
            "(see the bundled feeds.yaml)",
        )
        raise problems.error()
    # Only a "$" can start a ${VAR}, and only a backslash escape can write one without "$".
    substitutes = "$" in text or "\\" in text
    if substitutes:
        _substitute_environment(tree, positions, environ, problems)
    known = _known_watchlists
    keys = _watchlist_keys(tree)
    model = _validate(tree, positions, problems, known, keys)
    _check_references(tree, positions, problems)
    if problems or model is None:
        raise problems.error()
    config = _build_config(model, path, known)
    _remember_watchlists(tree, keys, model, config)
    if not substitutes:  # the tree is still the file's own: `lint_config` can use it
        _hand_over(text, document)
        if keys is not None and isinstance(tree, dict):
            _keyed = (tree.get("watchlists"), keys)
    return config


@dataclass(frozen=True)
class _KnownWatchlists:
    """The watchlists of the last valid configuration, by their definition: a reload gives
    each unchanged watchlist its validated model and its `Watchlist` (the same object) again,
    so neither is validated or compiled twice, and the workers' matchers keep theirs."""

    sets: str  # the `sets:` they were validated with (a set reference compiles its members)
    models: dict[str, _WatchlistModel]  # the watchlist's tree, as `_watchlist_keys` writes it
    built: dict[int, Watchlist]  # id of a model in `models` -> its Watchlist


_known_watchlists: _KnownWatchlists | None = None


def _watchlist_keys(tree: Tree) -> list[str] | None:
    """Each watchlist's definition as text (its tree's repr: types and order included)."""
    watchlists = tree.get("watchlists") if isinstance(tree, dict) else None
    if not isinstance(watchlists, list):
        return None
    return [repr(watchlist) for watchlist in watchlists]


def _remember_watchlists(
    tree: Tree, keys: list[str] | None, model: _ConfigModel, config: Config
) -> None:
    global _known_watchlists
    if keys is None or not isinstance(tree, dict) or len(keys) != len(model.watchlists):
        _known_watchlists = None
        return
    _known_watchlists = _KnownWatchlists(
        sets=repr(tree.get("sets")),
        models=dict(zip(keys, model.watchlists, strict=True)),
        built={
            id(validated): watchlist
            for validated, watchlist in zip(model.watchlists, config.watchlists, strict=True)
        },
    )


# The list of watchlists of the tree handed over to the lint, and their keys: the lint takes
# them once (`take_watchlist_keys`) rather than write 100,000 keys again.
_keyed: tuple[Tree, list[str]] | None = None


def take_watchlist_keys(watchlists: Tree) -> list[str] | None:
    """The keys of `watchlists` if they are the list the last load keyed (once)."""
    global _keyed
    keyed, _keyed = _keyed, None
    return keyed[1] if keyed is not None and keyed[0] is watchlists else None


def _validate(
    tree: Tree,
    positions: _Positions,
    problems: _Problems,
    known: _KnownWatchlists | None = None,
    keys: list[str] | None = None,
) -> _ConfigModel | None:
    if not isinstance(tree, dict):
        problems.add(
            (0, 0),
            f"expected settings such as feeds: and watchlists:, got {_shown(tree)} "
            "(see the bundled feeds.yaml)",
        )
        return None
    given: Mapping[str, object] = tree
    if known is not None and keys is not None and known.sets == repr(tree.get("sets")):
        # A model instance is taken as it is (pydantic does not validate it again).
        raw = tree["watchlists"]
        assert isinstance(raw, list), "keys are only made for a list"
        models: Mapping[str, object] = known.models
        given = {
            **tree,
            "watchlists": [models.get(key, item) for key, item in zip(keys, raw, strict=True)],
        }
    try:
        return _ConfigModel.model_validate(
            given, context={"sets": _sets_for_checking(tree.get("sets"))}
        )
    except ValidationError as error:
        for detail in error.errors():
            position, message = _describe_error(detail, positions)
            problems.add(position, _unmask(message, tuple(detail["loc"]), positions))
        return None


def _smtp(model: _SmtpModel | None) -> SmtpSettings | None:
    if model is None:
        return None
    return SmtpSettings(
        host=model.host,
        port=model.port or (465 if model.security == "ssl" else 587),
        security=model.security,
        username=model.username,
        password=model.password,
        timeout=model.timeout.total_seconds(),
    )


def _digests(
    model: _ConfigModel, watchlists: Sequence[Watchlist], resolve: Callable[[str], Path]
) -> tuple[DigestSettings, ...]:
    """The configured digests; a `digest:` block is one digest, named "digest", of every
    watchlist. Without `language:`, a digest speaks the language most of its watchlists
    are written in (English when none says)."""

    def language(chosen: DigestLanguage | None, names: Sequence[str]) -> DigestLanguage:
        if chosen is not None:
            return chosen
        spoken: Counter[DigestLanguage] = Counter()
        for watchlist in watchlists:
            if names and watchlist.name not in names:
                continue
            if watchlist.language == "fr":
                spoken["fr"] += 1
            elif watchlist.language == "en":
                spoken["en"] += 1
        return spoken.most_common(1)[0][0] if spoken else "en"

    if model.digest is not None:
        block = model.digest
        return (
            DigestSettings(
                name=DEFAULT_DIGEST_NAME,
                at=block.at,
                every=block.every,
                sender=block.sender,
                recipients=tuple(block.to),
                smtp=_smtp(block.smtp),
                outbox=resolve(block.outbox),
                subject=block.subject,
                language=language(block.language, ()),
                max_full=block.max_full,
            ),
        )
    assert model.mail is not None and model.digests is not None, "checked by _ConfigModel"
    mail = model.mail
    return tuple(
        DigestSettings(
            name=entry.name,
            at=entry.at,
            every=entry.every,
            sender=mail.sender,
            recipients=tuple(entry.to),
            smtp=_smtp(mail.smtp),
            outbox=resolve(mail.outbox),
            subject=entry.subject or entry.name,
            language=language(entry.language, entry.watchlists or ()),
            max_full=entry.max_full,
            watchlists=tuple(entry.watchlists or ()),
        )
        for entry in model.digests
    )


def _feed_scope(
    watchlist: _WatchlistModel, feeds: list[_FeedModel], tagged: Mapping[str, set[int]]
) -> tuple[str, ...]:
    """The names of the feeds a watchlist applies to: those its ``feeds:`` names, and the
    named feeds carrying any tag of its ``tags:`` (compared without case). () = every feed.
    `tagged`: folded tag → the indexes in `feeds` of the named feeds carrying it."""
    if not watchlist.tags:
        return tuple(dict.fromkeys(watchlist.feeds)) if watchlist.feeds else ()
    names = list(watchlist.feeds or ())
    carriers: set[int] = set()
    for tag in watchlist.tags or ():
        carriers.update(tagged.get(tag.casefold(), ()))
    names.extend(feeds[index].name or "" for index in sorted(carriers))
    return tuple(dict.fromkeys(names))


def _named_feeds_by_tag(feeds: list[_FeedModel]) -> dict[str, set[int]]:
    tagged: dict[str, set[int]] = {}
    for index, feed in enumerate(feeds):
        if feed.name:
            for tag in feed.tags or ():
                tagged.setdefault(tag.casefold(), set()).add(index)
    return tagged


def _build_config(model: _ConfigModel, path: Path, known: _KnownWatchlists | None = None) -> Config:
    base = path.absolute().parent

    def resolve(written: str) -> Path:
        candidate = Path(written).expanduser()
        return candidate if candidate.is_absolute() else base / candidate

    poll = PollSettings(
        interval=model.poll.interval,
        timeout=model.poll.timeout.total_seconds(),
        connect_timeout=model.poll.connect_timeout.total_seconds(),
        max_bytes=model.poll.max_bytes,
        concurrency=model.poll.concurrency,
        per_host=model.poll.per_host,
        user_agent=model.poll.user_agent,
        max_sitemap_urls=model.poll.max_sitemap_urls,
        feed_deadline=model.poll.feed_deadline,
        workers=model.poll.workers,
    )
    tagged = _named_feeds_by_tag(model.feeds)
    built = known.built if known is not None else {}

    def build(watchlist: _WatchlistModel) -> Watchlist:
        feeds = _feed_scope(watchlist, model.feeds, tagged)
        before = built.get(id(watchlist))
        # Its model is the same object only when its definition did not change; its
        # feed scope may have (a tag given to another feed).
        if before is not None and before.feeds == feeds:
            return before
        return Watchlist(
            name=watchlist.name,
            query=watchlist.compiled,
            language=watchlist.language,
            feeds=feeds,
            languages=tuple(dict.fromkeys(watchlist.languages or ())),
            topic=watchlist.topic,
            hide_passing=watchlist.passing == "hide",
        )

    watchlists = tuple(map(build, model.watchlists))
    return Config(
        path=path.absolute(),
        database=resolve(model.database),
        timezone=ZoneInfo(model.timezone),
        poll=poll,
        feeds=tuple(
            FeedSpec(
                url=feed.url,
                name=feed.name,
                interval=feed.interval or poll.interval,
                language=feed.language,
                kind=feed.type,
            )
            for feed in model.feeds
        ),
        watchlists=watchlists,
        digests=_digests(model, watchlists, resolve),
        sets=MappingProxyType({name: tuple(terms) for name, terms in model.sets.items()}),
        alerts=_build_alerts(model),
        retention=RetentionSettings(article_text=model.retention.article_text),
    )


def _build_alerts(model: _ConfigModel) -> tuple[AlertSettings, ...]:
    if not model.alerts:
        return ()
    from monitor.destinations import destination_key, masked_destination

    return tuple(
        AlertSettings(
            name=alert.name,
            watchlists=tuple(dict.fromkeys(alert.watchlists)),
            destinations=tuple(
                AlertDestination(url=url, key=destination_key(url), shown=masked_destination(url))
                for url in alert.urls
            ),
        )
        for alert in model.alerts
    )
