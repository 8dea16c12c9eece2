"""feeds.yaml loading: a valid file becomes a Config; every bad file is refused with
every problem listed as ``file:LINE:COL: message``."""

from __future__ import annotations

import re
import textwrap
from datetime import time, timedelta
from pathlib import Path

import pytest

from monitor.config import (
    MAX_CONFIG_BYTES,
    load_config,
    parse_config,
    parse_duration,
    parse_size,
)
from monitor.errors import ConfigError
from monitor.matching import Matcher
from monitor.models import ArticleText, TextSource
from monitor.query import from_lists, parse_query
from monitor.text import human_size
from tests.corpus import REPO_ROOT, require_corpus

VALID = """\
database: data/monitor.db
timezone: Africa/Lome
poll:
  interval: 15m
  timeout: 45s
  max_bytes: 8MiB
  concurrency: 4
  per_host: 1
  user_agent: test-agent/1.0
feeds:
  - url: https://example.org/rss
    name: Example
    interval: 1h30m
    language: fr-FR
  - url: http://other.example.net/feed.xml
sets:
  russie: [Russie, Moscou, "Fédération de Russie"]
watchlists:
  - name: Togo — coopération militaire
    all: [Togo]
    any: ["coopération militaire", "accord de défense"]
    none: [football]
  - name: Togo — Russie
    query: 'Togo AND @russie AND (militaire OR défense) NOT title:football'
    language: fr
    feeds: [Example]
  - name: Norvège
    all: [NO, on]
digest:
  at: "06:30"
  from: Veille <veille@example.org>
  to: [analyste@example.org, chef@example.org]
  subject: Veille du jour
  smtp:
    host: smtp.example.org
    security: ssl
    username: ${SMTP_USER}
    password: ${SMTP_PASSWORD}
  outbox: /var/spool/monitor
"""

ENVIRON = {"SMTP_USER": "veille", "SMTP_PASSWORD": "s3cret-value"}

MINIMAL = """\
feeds:
  - url: https://example.org/rss
watchlists:
  - name: Togo
    all: [Togo]
digest:
  from: veille@example.org
  to: [analyste@example.org]
"""


def write(tmp_path: Path, text: str, name: str = "feeds.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ=ENVIRON if environ is None else environ)
    return raised.value.problems


def only_problem(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    problems = problems_of(tmp_path, text, environ)
    assert len(problems) == 1, problems
    return problems[0]


def with_minimal(extra: str) -> str:
    """MINIMAL (which ends inside `digest:`) followed by `extra` lines, as written."""
    return MINIMAL + extra


def located(problem: str) -> tuple[int, int]:
    """(line, column) of a ``file:LINE:COL: message`` problem."""
    match = re.search(r":(\d+):(\d+): ", problem)
    assert match is not None, problem
    return int(match.group(1)), int(match.group(2))


# --------------------------------------------------------------------------- valid files


def test_full_example_becomes_a_config(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)

    config = load_config(path, environ=ENVIRON)

    assert config.path == path
    assert config.database == tmp_path / "data" / "monitor.db"
    assert config.timezone.key == "Africa/Lome"
    assert config.poll.interval == timedelta(minutes=15)
    assert config.poll.timeout == 45.0
    assert config.poll.max_bytes == 8 * 1024 * 1024
    assert (config.poll.concurrency, config.poll.per_host) == (4, 1)
    assert config.poll.user_agent == "test-agent/1.0"

    example, other = config.feeds
    assert example.url == "https://example.org/rss"
    assert example.name == "Example"
    assert example.interval == timedelta(hours=1, minutes=30)
    assert example.language == "fr"
    assert other.name is None
    assert other.interval == timedelta(minutes=15)  # poll.interval
    assert other.language is None

    assert dict(config.sets) == {"russie": ("Russie", "Moscou", "Fédération de Russie")}
    military, russia, norway = config.watchlists
    assert military.name == "Togo — coopération militaire"
    assert military.query == from_lists(
        ["Togo"], ["coopération militaire", "accord de défense"], ["football"], {}
    )
    assert russia.query == parse_query(
        "Togo AND @russie AND (militaire OR défense) NOT title:football",
        {"russie": ["Russie", "Moscou", "Fédération de Russie"]},
    )
    assert russia.language == "fr"
    assert russia.feeds == ("Example",)
    # YAML 1.2: NO and on stay words, not booleans.
    assert norway.query == from_lists(["NO", "on"], [], [], {})

    digest = config.digest
    assert digest.at == time(6, 30)
    assert digest.sender == "Veille <veille@example.org>"
    assert digest.recipients == ("analyste@example.org", "chef@example.org")
    assert digest.subject == "Veille du jour"
    assert digest.outbox == Path("/var/spool/monitor")
    assert digest.smtp is not None
    assert digest.smtp.host == "smtp.example.org"
    assert digest.smtp.port == 465  # the ssl default
    assert digest.smtp.security == "ssl"
    assert (digest.smtp.username, digest.smtp.password) == ("veille", "s3cret-value")


def test_minimal_file_gets_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), environ={})

    assert config.database == tmp_path / "monitor.db"
    assert config.timezone.key == "UTC"
    assert config.poll.interval == timedelta(minutes=15)
    assert config.feeds[0].interval == timedelta(minutes=15)
    assert config.digest.at == time(7, 0)
    assert config.digest.smtp is None
    assert config.digest.outbox == tmp_path / "digests"
    assert dict(config.sets) == {}


def test_bundled_feeds_yaml_loads_without_environment() -> None:
    config = load_config(REPO_ROOT / "feeds.yaml", environ={})

    assert 8 <= len(config.feeds) <= 15
    assert all(feed.url.startswith("https://") for feed in config.feeds)
    names = [watchlist.name for watchlist in config.watchlists]
    assert names[0] == "Togo — coopération militaire"
    assert config.watchlists[0].query == from_lists(
        ["Togo"],
        ["coopération militaire", "accord de défense", "instructeurs russes"],
        ["football"],
        config.sets,
    )
    assert 5 <= len(names) - 1 <= 6
    assert config.digest.smtp is None  # writes .eml files, so `make run` needs no mail server
    assert config.timezone.key == "Africa/Lome"


@pytest.mark.corpus
def test_bundled_togo_watchlists_find_the_seed_article() -> None:
    seed = require_corpus("seed", "togo-russie.txt")
    config = load_config(REPO_ROOT / "feeds.yaml", environ={})
    article = ArticleText(
        url=None,
        title="Le Togo valide un accord de coopération militaire avec la Russie",
        text=seed.read_text(encoding="utf-8"),
        source=TextSource.PAGE,
        language="fr",
    )
    matcher = Matcher(config.watchlists)

    from_rfi = {hit.watchlist for hit in matcher.match(article, feed_name="RFI Afrique")}
    from_bbc_english = {
        hit.watchlist for hit in matcher.match(article, feed_name="BBC News Africa")
    }

    assert {"Togo — coopération militaire", "Togo — Russie"} <= from_rfi
    assert "Togo — coopération militaire" in from_bbc_english
    assert "Togo — Russie" not in from_bbc_english  # scoped to French-language feeds


def test_parse_config_uses_the_path_for_relative_paths_and_messages(tmp_path: Path) -> None:
    where = tmp_path / "conf" / "feeds.yaml"
    config = parse_config(MINIMAL, path=where, environ={})
    assert config.database == tmp_path / "conf" / "monitor.db"

    with pytest.raises(ConfigError) as raised:
        parse_config("feeds: 3\n", path=Path("examples/feeds.yaml"), environ={})
    problems = raised.value.problems
    assert all(problem.startswith("examples/feeds.yaml:") for problem in problems)
    assert any(
        problem.startswith("examples/feeds.yaml:1:8: expected a list") for problem in problems
    )


def test_messages_use_the_path_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, with_minimal("timezone: Mars/Olympus\n"))
    monkeypatch.chdir(tmp_path)

    with pytest.raises(ConfigError) as raised:
        load_config(Path("feeds.yaml"), environ={})

    assert raised.value.problems[0].startswith("feeds.yaml:9:11: ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "15", "15 minutes", "m", "30m1h", "1.5h", "-5m", "15M"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="use a number and a unit"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("15MiB", 15 * 1024**2), ("512KiB", 512 * 1024), ("2MB", 2_000_000), ("65536", 65536)],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


# --------------------------------------------------------------------------- YAML level


def test_yaml_syntax_error_reports_the_parser_position(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, "feeds:\n  - url: [https://example.org\nwatchlists: []\n")
    assert problem.startswith(f"{tmp_path / 'feeds.yaml'}:3:11: YAML syntax error: ")


def test_tab_indentation_is_explained(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, "feeds:\n\t- url: https://example.org/rss\n")
    assert ":2:1: " in problem
    assert "indent with spaces, not tabs" in problem


def test_unquoted_colon_in_value_is_explained(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, "digest:\n  subject: Veille: Togo\n")
    assert located(problem) == (2, 18)
    assert 'a value containing ": " must be quoted' in problem


def test_duplicate_keys_are_refused_at_each_repetition(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        with_minimal("timezone: UTC\ntimezone: Africa/Lome\ndatabase: a.db\ndatabase: b.db\n"),
    )
    assert [located(problem) for problem in problems] == [(10, 1), (12, 1)]
    assert 'duplicate key "timezone" (first written at line 9)' in problems[0]


def test_anchors_and_aliases_are_refused_before_expansion(tmp_path: Path) -> None:
    # A billion-laughs style document: refused from the event stream, never built.
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    problems = problems_of(tmp_path, "\n".join(levels) + "\n")

    assert "anchor &a0 is not supported" in problems[0]
    assert any("alias *a0 is not supported" in problem for problem in problems)
    assert len(problems) == 51  # 89 problems: the first 50, then how many more
    assert problems[-1] == f"{tmp_path / 'feeds.yaml'}: 39 more problems not shown; fix these first"


def test_yaml_tags_are_refused(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, with_minimal("database: !!python/object:os.system x\n"))
    assert ":9:11: YAML tags" in problem


def test_second_document_is_refused(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, MINIMAL + "---\nfeeds: []\n")
    assert ":9:1: a second YAML document" in problem


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, "feeds: " + "[" * 40 + "]" * 40 + "\n")
    assert "nested more than" in problem


@pytest.mark.parametrize("text", ["", "\n", "# nothing but a comment\n", "---\n"])
def test_empty_file_is_invalid_not_an_empty_config(tmp_path: Path, text: str) -> None:
    problem = only_problem(tmp_path, text)
    assert problem.endswith("(see the bundled feeds.yaml)")
    assert ":1:1: the file has no settings" in problem


def test_top_level_list_is_refused(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, "- url: https://example.org/rss\n")
    assert ":1:1: expected settings such as feeds:" in problem


def test_non_utf8_byte_is_located(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_bytes(b"feeds:\n  - url: https://example.org/caf\xe9\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert raised.value.problems == [
        f"{path}:2:33: byte 0xe9 is not valid UTF-8: save the file as UTF-8"
    ]


def test_oversized_file_is_refused_without_parsing(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_bytes(b"#" * (MAX_CONFIG_BYTES + 1))
    with pytest.raises(ConfigError, match=f"larger than {human_size(MAX_CONFIG_BYTES)}"):
        load_config(path, environ={})


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the configuration"):
        load_config(tmp_path / "absent.yaml", environ={})


# --------------------------------------------------------------------------- schema


def test_unknown_key_suggests_the_closest(tmp_path: Path) -> None:
    problem = only_problem(
        tmp_path,
        """\
        feeds:
          - url: https://example.org/rss
            intervall: 30m
        watchlists:
          - name: Togo
            all: [Togo]
        digest:
          from: veille@example.org
          to: [analyste@example.org]
        """,
    )
    assert problem.endswith(
        ':3:5: unknown key "intervall" (did you mean "interval"?): '
        "allowed here: url, name, tags, interval, language, type"
    )


def test_unknown_top_level_key(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, with_minimal("watchlist: []\n"))
    assert ':9:1: unknown key "watchlist" (did you mean "watchlists"?)' in problem


def test_missing_required_sections(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, "timezone: UTC\n")
    assert [problem.split(": ", 1)[1] for problem in problems] == [
        'missing "feeds": list the feeds to poll, each as - url: https://...',
        'missing "watchlists": add at least one watchlist (see the bundled feeds.yaml)',
        'missing "digest": add a digest: section with from: and to: (see the bundled feeds.yaml)',
    ]


def test_missing_url_points_at_the_feed(tmp_path: Path) -> None:
    problem = only_problem(
        tmp_path,
        MINIMAL.replace("feeds:\n", "feeds:\n  - name: No URL\n    interval: 30m\n"),
    )
    assert problem.endswith(
        ':2:5: missing "url" in feeds[1]: every feed needs one, e.g. url: https://example.org/rss'
    )


@pytest.mark.parametrize(
    ("snippet", "position", "message"),
    [
        (
            "all: [Togo, 2024]",
            "5:17",
            'expected text, got the number 2024: put it in quotes, e.g. "2024"',
        ),
        ("all: [Togo, true]", "5:17", 'expected text, got true: put it in quotes, e.g. "true"'),
        ("all: [Togo, 2024-05-01]", "5:17", "got the date 2024-05-01: put it in quotes"),
        ("all: Togo", "5:10", "expected a list, e.g. [one, two]"),
        ("all: [Togo, [a, b]]", "5:17", "expected text, got a list"),
    ],
)
def test_wrong_types_are_refused(tmp_path: Path, snippet: str, position: str, message: str) -> None:
    problem = only_problem(tmp_path, MINIMAL.replace("all: [Togo]", snippet))
    assert f":{position}: " in problem
    assert message in problem


def test_port_must_be_a_number_not_text(tmp_path: Path) -> None:
    problem = only_problem(
        tmp_path, with_minimal("  smtp:\n    host: smtp.example.org\n    port: '587'\n")
    )
    assert problem.endswith(':11:11: expected a whole number, got "587"')


def test_empty_value_is_named(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, MINIMAL.replace("  - name: Togo", "  - name:"))
    assert problem.endswith(":4:5: watchlists[1].name is empty: give text, or remove the key")


def test_empty_and_pointless_watchlists(tmp_path: Path) -> None:
    watchlists = (
        "watchlists:\n"
        "  - name: Nothing\n"
        "  - name: Only exclusions\n"
        "    none: [football]\n"
        "  - name: Empty list\n"
        "    any: []\n"
    )
    problems = problems_of(
        tmp_path, MINIMAL.replace("watchlists:\n  - name: Togo\n    all: [Togo]\n", watchlists)
    )
    assert [problem.split(": ", 1)[1] for problem in problems] == [
        'watchlist "Nothing" has nothing to look for: add query: or all:/any: terms',
        'watchlist "Only exclusions" has nothing to look for: add query: or all:/any: terms '
        "(none: only excludes)",
        "watchlists[3].any is empty: add terms or remove the key",
    ]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.org/rss", "a feed URL must start with https:// or http://"),
        ("example.org/rss", "a feed URL must start with https:// or http://"),
        ("https:///rss", "no host name"),
        ("https://exa mple.org/rss", "it contains spaces"),
        ("https://user:pw@example.org/rss", "user:password@ in a feed URL is not supported"),
        ("https://example.org:99999/rss", "the port must be a number from 1 to 65535"),
    ],
)
def test_bad_feed_urls(tmp_path: Path, url: str, message: str) -> None:
    problem = only_problem(tmp_path, MINIMAL.replace("https://example.org/rss", url))
    assert ":2:10: bad URL" in problem
    assert message in problem


def test_bad_durations(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        with_minimal("poll:\n  interval: 15 minutes\n  timeout: 90\n"),
    )
    assert problems[0].endswith(
        ':10:13: bad duration "15 minutes": use a number and a unit, e.g. 90s, 15m, 2h, 1d, 1h30m'
    )
    assert problems[1].endswith(
        ":11:12: bad duration the number 90: use a number and a unit, e.g. 90s, 15m, 2h, 1d, 1h30m"
    )


def test_interval_bounds(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        MINIMAL.replace(
            "rss\n",
            "rss\n    interval: 30s\n  - url: https://b.example.org/\n    interval: 8d\n",
            1,
        ),
    )
    assert problems[0].endswith(":3:15: 30s is out of range: use between 1m and 7d")
    assert problems[1].endswith(":5:15: 8d is out of range: use between 1m and 7d")


def test_poll_limits_are_consistent(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, with_minimal("poll:\n  concurrency: 2\n  per_host: 4\n"))
    assert problem.endswith(":11:13: per_host (4) cannot exceed concurrency (2)")


def test_poll_concurrency_goes_up_to_128(tmp_path: Path) -> None:
    configured = load_config(write(tmp_path, with_minimal("poll:\n  concurrency: 128\n")))
    assert configured.poll.concurrency == 128
    problem = only_problem(tmp_path, with_minimal("poll:\n  concurrency: 129\n"))
    assert problem.endswith(":10:16: poll.concurrency must be at most 128, got the number 129")


def test_poll_workers_is_a_count_or_left_to_the_cores(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, MINIMAL)).poll.workers is None
    configured = load_config(write(tmp_path, with_minimal("poll:\n  workers: 2\n")))
    assert configured.poll.workers == 2
    problem = only_problem(tmp_path, with_minimal("poll:\n  workers: 0\n"))
    assert problem.endswith(":10:12: poll.workers must be at least 1, got the number 0")


def test_bad_size(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, with_minimal("poll:\n  max_bytes: 15 megs\n"))
    assert problems[0].endswith(
        ':10:14: bad size "15 megs": use a number of bytes or a unit, e.g. 15MiB, 512KiB, 2MB'
    )


def test_bad_timezone_suggests_a_name(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, with_minimal("timezone: Africa/Lomé\n"))
    assert problem.endswith(':9:11: unknown time zone "Africa/Lomé": did you mean "Africa/Lome"?')


@pytest.mark.parametrize("value", ['"7:00"', '"24:00"', '"07:60"', "7h", "0700"])
def test_bad_digest_time(tmp_path: Path, value: str) -> None:
    problem = only_problem(tmp_path, MINIMAL.replace("digest:\n", f"digest:\n  at: {value}\n"))
    assert ":7:7: bad time " in problem
    assert 'use 24-hour HH:MM in quotes, e.g. at: "07:00"' in problem


def test_unquoted_time_is_text_in_yaml_1_2(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, MINIMAL.replace("digest:\n", "digest:\n  at: 07:15\n")), environ={}
    )
    assert config.digest.at == time(7, 15)


@pytest.mark.parametrize(
    ("snippet", "position"),
    [
        ("from: veille", "7:9"),
        ("from: veille@", "7:9"),
        ("from: veille@example", "7:9"),
    ],
)
def test_bad_sender(tmp_path: Path, snippet: str, position: str) -> None:
    problem = only_problem(tmp_path, MINIMAL.replace("from: veille@example.org", snippet))
    assert f":{position}: " in problem
    assert "is not an email address" in problem


def test_recipients_must_be_a_non_empty_list_of_addresses(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        MINIMAL.replace("to: [analyste@example.org]", "to: [analyste@example.org, nobody]"),
    )
    assert problems[0].endswith(
        ':8:30: "nobody" is not an email address: write it as name@example.org '
        'or "Name <name@example.org>"'
    )
    problem = only_problem(tmp_path, MINIMAL.replace("to: [analyste@example.org]", "to: []"))
    assert problem.endswith(
        ":8:7: digest.to is empty: give at least one recipient, e.g. to: [analyste@example.org]"
    )


def test_header_injection_in_subject_is_refused(tmp_path: Path) -> None:
    problem = only_problem(
        tmp_path,
        MINIMAL.replace("digest:\n", 'digest:\n  subject: "Veille\\r\\nBcc: x@evil.org"\n'),
    )
    assert ":7:12: control characters" in problem


def test_smtp_password_needs_encryption_and_a_username(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        with_minimal(
            "  smtp:\n    host: smtp.example.org\n    security: none\n"
            "    username: u\n    password: p\n"
        ),
    )
    assert problems == [
        f"{tmp_path / 'feeds.yaml'}:11:15: refusing to send a password without encryption: "
        "use security: starttls or ssl (or drop username/password for an unauthenticated local relay)"
    ]
    problem = only_problem(
        tmp_path, with_minimal("  smtp:\n    host: smtp.example.org\n    password: p\n")
    )
    assert problem.endswith(
        ":9:3: smtp: give both username and password, or neither (username is missing)"
    )


def test_unknown_security_mode(tmp_path: Path) -> None:
    problem = only_problem(
        tmp_path, with_minimal("  smtp:\n    host: smtp.example.org\n    security: tls\n")
    )
    assert problem.endswith(
        ":11:15: \"tls\" is not allowed: use one of 'starttls', 'ssl' or 'none'"
    )


# --------------------------------------------------------------------------- environment


def test_missing_environment_variable_is_named(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, VALID, environ={"SMTP_USER": "veille"})
    assert problems == [
        f"{tmp_path / 'feeds.yaml'}:38:15: environment variable SMTP_PASSWORD is not set: "
        "export SMTP_PASSWORD before starting monitor, or write ${SMTP_PASSWORD:-default}"
    ]


def test_environment_defaults_and_escapes(tmp_path: Path) -> None:
    text = with_minimal(
        "  subject: ${SUBJECT:-Veille du jour} $${literal}\n"
        "  smtp:\n    host: ${SMTP_HOST:-smtp.example.org}\n"
    )
    config = load_config(write(tmp_path, text), environ={"SMTP_HOST": ""})
    assert config.digest.subject == "Veille du jour ${literal}"
    assert config.digest.smtp is not None
    assert config.digest.smtp.host == "smtp.example.org"


def test_substitution_keeps_line_numbers_and_hides_values(tmp_path: Path) -> None:
    text = with_minimal("  smtp:\n    host: ${SMTP_HOST}\n")
    problem = only_problem(tmp_path, text, environ={"SMTP_HOST": "leaked secret!"})
    assert problem.endswith(
        ':10:11: bad host "${SMTP_HOST}": write only the host name, e.g. smtp.example.org'
    )
    assert "leaked" not in problem


def test_values_from_the_environment_are_never_shown(tmp_path: Path) -> None:
    text = with_minimal("  smtp:\n    host: smtp.example.org\n    port: ${SMTP_PORT}\n")
    problem = only_problem(tmp_path, text, environ={"SMTP_PORT": "hunter2"})
    assert problem.endswith(':11:11: expected a whole number, got "${SMTP_PORT}"')
    assert "hunter2" not in problem


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("${SMTP USER}", 'bad reference "${SMTP USER}"'),
        ("${SMTP_USER", '"${" without a closing "}"'),
    ],
)
def test_malformed_references(tmp_path: Path, reference: str, message: str) -> None:
    problem = only_problem(
        tmp_path,
        with_minimal(
            f"  smtp:\n    host: smtp.example.org\n    username: '{reference}'\n    password: p\n"
        ),
    )
    assert ":11:15: " in problem
    assert message in problem


# --------------------------------------------------------------------------- cross-references


def test_duplicate_watchlist_names(tmp_path: Path) -> None:
    problem = only_problem(
        tmp_path, MINIMAL.replace("digest:", "  - name: togo\n    any: [Lomé]\ndigest:")
    )
    assert problem.endswith(
        ':6:11: the watchlist name "togo" is already used at line 4: '
        "names must be unique (hits are filed under them)"
    )


def test_duplicate_feed_urls_and_names(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        MINIMAL.replace(
            "  - url: https://example.org/rss\n",
            "  - url: https://example.org/rss\n    name: A\n"
            "  - url: HTTPS://Example.org/rss\n    name: A\n",
        ),
    )
    assert problems[0].endswith(
        ":4:10: this feed URL is already listed at line 2: remove one of them"
    )
    assert problems[1].endswith(
        ':5:11: another feed is already named "A" (line 3): '
        "watchlists refer to feeds by name, so names must be unique"
    )


def test_scope_must_name_a_configured_feed(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        MINIMAL.replace("rss\n", "rss\n    name: RFI Afrique\n", 1).replace(
            "all: [Togo]", "all: [Togo]\n    feeds: [rfi afrique, Le Monde]"
        ),
    )
    assert len(problems) == 2
    assert problems[0].endswith(
        ':7:13: no feed is named "rfi afrique" (did you mean "RFI Afrique"?): '
        "a watchlist's feeds: must use names given with name: under feeds: "
        "(a feed known only by its own title cannot be named here)"
    )
    assert ':7:26: no feed is named "Le Monde": ' in problems[1]


def test_query_and_lists_together_are_refused(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, MINIMAL.replace("all: [Togo]", "all: [Togo]\n    query: Togo"))
    assert problem.endswith(":6:12: give either query: or all:/any:/none:, not both")


# --------------------------------------------------------------------------- queries and sets


def query_problem(tmp_path: Path, query_line: str) -> str:
    return only_problem(tmp_path, MINIMAL.replace("all: [Togo]", query_line))


def test_bad_query_column_in_plain_scalar(tmp_path: Path) -> None:
    # "    query: Togo AND (militaire" -> the "(" is at column 21 of line 5.
    problem = query_problem(tmp_path, "query: Togo AND (militaire")
    assert ":5:21: bad query: " in problem


def test_bad_query_column_in_single_quoted_scalar(tmp_path: Path) -> None:
    # The stray ")" is character 21 of the query; the quote opens at column 12.
    problem = query_problem(tmp_path, "query: 'Togo AND défense)'")
    assert ":5:29: bad query: unbalanced parenthesis" in problem


def test_bad_query_column_counts_quote_escapes(tmp_path: Path) -> None:
    # '' is one quote in the value but two characters in the file.
    problem = query_problem(tmp_path, "query: 'l''accord AND défense)'")
    assert ":5:34: bad query: unbalanced parenthesis" in problem
    problem = query_problem(tmp_path, 'query: "\\u00e9tat AND d\\xe9fense)"')
    assert ":5:37: bad query: unbalanced parenthesis" in problem


def test_bad_query_column_in_block_scalar(tmp_path: Path) -> None:
    problem = query_problem(
        tmp_path, "query: |\n      Togo AND\n      (militaire OR défense))\n      AND Lomé"
    )
    assert ":7:29: bad query: unbalanced parenthesis" in problem


def test_bad_query_on_a_folded_continuation_line(tmp_path: Path) -> None:
    problem = query_problem(tmp_path, "query: Togo AND\n      (militaire OR défense))")
    assert ":6:29: bad query: unbalanced parenthesis" in problem


def test_unknown_set_in_query(tmp_path: Path) -> None:
    problem = query_problem(tmp_path, "query: Togo AND @russie")
    assert problem.endswith(":5:21: bad query: unknown set @russie (known sets: none defined)")


def test_unknown_set_in_a_list_points_at_the_item(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, MINIMAL.replace("all: [Togo]", "all: [Togo, '@russie']"))
    assert problem.endswith(":5:17: unknown set @russie (known sets: none defined)")


def test_bad_list_term_points_at_the_item(tmp_path: Path) -> None:
    problem = only_problem(
        tmp_path, MINIMAL.replace("all: [Togo]", "all: [Togo]\n    any: [a, 'mi*litaire']")
    )
    assert problem.endswith(":6:14: the wildcard '*' is only allowed at the end of a word")


def test_sets_are_checked_even_when_unused(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        with_minimal(
            "sets:\n  vide: []\n  \"deux mots\": [x]\n  membres: [Russie, 'a*b', '@vide']\n"
        ),
    )
    assert [problem.split(": ", 1)[1] for problem in problems] == [
        "set vide is empty: give it at least one term, or remove it",
        'bad set name "deux mots": use letters, digits, _ and - without spaces, '
        "then refer to it as @name in queries and lists",
        "the wildcard '*' is only allowed at the end of a word",
    ]
    assert [located(problem) for problem in problems] == [(10, 9), (11, 3), (12, 21)]


def test_bad_set_member_is_reported_once_not_at_every_use(tmp_path: Path) -> None:
    problem = only_problem(
        tmp_path,
        with_minimal("sets:\n  russie: [Russie, 'Mos*cou']\n").replace(
            "all: [Togo]", "query: Togo AND @russie"
        ),
    )
    assert problem.endswith(":10:20: the wildcard '*' is only allowed at the end of a word")


def test_broken_set_is_not_also_reported_as_unknown(tmp_path: Path) -> None:
    problem = only_problem(
        tmp_path,
        with_minimal("sets:\n  russie: []\n").replace("all: [Togo]", "query: Togo AND @russie"),
    )
    assert problem.endswith(":10:11: set russie is empty: give it at least one term, or remove it")


# --------------------------------------------------------------------------- all together


def test_every_problem_is_reported_in_line_order(tmp_path: Path) -> None:
    text = """\
    timezone: Europe/Pariss
    poll:
      interval: 15 minutes
    feeds:
      - url: ftp://example.org/rss
        name: A
      - url: https://example.org/rss
        naem: B
    watchlists:
      - name: Togo
        query: 'Togo AND (militaire'
        feeds: [B]
      - name: Togo
        all: []
    digest:
      at: "7:00"
      from: veille@example.org
      to: [analyste@example.org]
      smtp:
        host: smtp.example.org
        username: ${SMTP_USER}
        password: ${MISSING_SECRET}
    """
    problems = problems_of(tmp_path, text, environ={"SMTP_USER": "u"})
    located = [problem.split(": ", 1)[0].rsplit(":", 2)[1:] for problem in problems]
    assert located == [
        ["1", "11"],  # time zone
        ["3", "13"],  # duration
        ["5", "10"],  # URL scheme
        ["8", "5"],  # unknown key
        ["11", "22"],  # query: "(" never closed
        ["12", "13"],  # unknown feed scope
        ["13", "11"],  # duplicate watchlist name
        ["14", "10"],  # empty list
        ["16", "7"],  # time
        ["22", "15"],  # missing environment variable
    ]
    assert all(problem.startswith(str(tmp_path / "feeds.yaml") + ":") for problem in problems)
    assert "MISSING_SECRET" in problems[-1]


def test_watchlist_language_scope_is_loaded_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    text = """\
feeds:
  - url: https://example.org/rss
watchlists:
  - name: Togo
    query: Togo
    languages: [fr, EN-gb]
  - name: Bad
    query: Togo
    languages: [français]
digest:
  from: a@example.org
  to: [b@example.org]
"""
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert any(
        ":9:17:" in problem and "language" in problem for problem in raised.value.problems
    ), raised.value.problems
    path.write_text(text.replace("[français]", "[fr]"), encoding="utf-8")
    config = load_config(path, environ={})
    assert config.watchlists[0].languages == ("fr", "en")


# --------------------------------------------------------------------------- sitemaps


def test_feed_type_and_max_sitemap_urls_are_loaded(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "rss\n", "rss\n  - url: https://news.example.org/sitemap-news.xml\n    type: sitemap\n", 1
    )
    config = load_config(write(tmp_path, text + "poll:\n  max_sitemap_urls: 50\n"))
    assert [feed.kind for feed in config.feeds] == ["feed", "sitemap"]
    assert config.poll.max_sitemap_urls == 50
    assert load_config(write(tmp_path, MINIMAL)).poll.max_sitemap_urls == 200


def test_bad_feed_type_and_max_sitemap_urls_are_located(tmp_path: Path) -> None:
    text = MINIMAL.replace("rss\n", "rss\n    type: rss\n", 1)
    problems = problems_of(tmp_path, text + "poll:\n  max_sitemap_urls: 0\n")
    assert problems[0].endswith(":3:11: \"rss\" is not allowed: use one of 'feed' or 'sitemap'")
    assert problems[1].endswith(
        ":11:21: poll.max_sitemap_urls must be at least 1, got the number 0"
    )
    too_many = only_problem(tmp_path, with_minimal("poll:\n  max_sitemap_urls: 10001\n"))
    assert too_many.endswith(
        ":10:21: poll.max_sitemap_urls must be at most 10000, got the number 10001"
    )


# --------------------------------------------------------------------------- feed deadline


def test_feed_deadline_is_loaded_with_a_default_of_five_minutes(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, MINIMAL)).poll.feed_deadline == timedelta(minutes=5)
    config = load_config(write(tmp_path, with_minimal("poll:\n  feed_deadline: 90s\n")))
    assert config.poll.feed_deadline == timedelta(seconds=90)


def test_a_bad_feed_deadline_is_located(tmp_path: Path) -> None:
    shorter = only_problem(tmp_path, with_minimal("poll:\n  timeout: 2m\n  feed_deadline: 90s\n"))
    assert shorter.endswith(
        ":11:18: feed_deadline (1m30s) cannot be shorter than "
        "timeout (2m): the feed itself must fit in it"
    ), shorter
    unitless = only_problem(tmp_path, with_minimal("poll:\n  feed_deadline: 300\n"))
    assert unitless.endswith(
        ":10:18: bad duration the number 300: use a number and a unit, e.g. 90s, 15m, 2h, 1d, 1h30m"
    ), unitless
    too_long = only_problem(tmp_path, with_minimal("poll:\n  feed_deadline: 3h\n"))
    assert too_long.endswith(":10:18: 3h is out of range: use between 10s and 2h"), too_long
