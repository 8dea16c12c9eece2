"""Warnings for watchlists that load but look mistyped: each at its file:line:col, printed
by `check` (errors with `--strict`) and logged by `run` at start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from monitor.cli import main
from monitor.config import lint_config, load_config

HEAD = """feeds:
  - url: https://news.example.org/rss
    name: News
"""
TAIL = """digest:
  from: veille@example.org
  to: [analyste@example.org]
"""


def config_with(tmp_path: Path, watchlists: str, sets: str = "") -> Path:
    path = tmp_path / "feeds.yaml"
    path.write_text(HEAD + sets + "watchlists:\n" + watchlists + TAIL, encoding="utf-8")
    load_config(path)  # warnings are for files that load
    return path


def warnings_of(tmp_path: Path, query: str) -> list[str]:
    """The warnings for a one-watchlist file whose query is on line 7, from column 7."""
    path = config_with(tmp_path, f"  - name: W\n    query: >-\n      {query}\n")
    prefix = f"{path}:"
    return [warning.removeprefix(prefix) for warning in lint_config(path)]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            "Togo NEAR5 armée",
            ['7:12: warning: "NEAR5" is a word to look for, not an operator: write NEAR/5'],
        ),
        ("Togo near/10 armée", ['7:12: warning: "near/10" is a word to look for']),
        (
            "Togo and Bénin",
            [
                '7:12: warning: "and" between two terms is a word to look for, not an operator: write AND'
            ],
        ),
        ("Togo or Bénin", ['7:12: warning: "or" between two terms']),
        ("Togo not Bénin", ['7:12: warning: "not" between two terms']),
        ("“coopération militaire” Togo", ["7:7: warning: “ does not make a phrase"]),
        (
            "«accord de défense Togo",
            [
                "7:7: warning: « does not make a phrase",
                "7:7: warning: unbalanced quotes: 1 opening and 0 closing typographic quotes",
            ],
        ),
        (
            "'coopération militaire' Togo",
            ['7:7: warning: the single quote in "\'coopération" makes no phrase'],
        ),
        ("Togo OR le", ['7:15: warning: "le" alone is a stopword']),
        ("Togo AND the", ['7:16: warning: "the" alone is a stopword']),
        ("Togo OR l'*", ['7:15: warning: "l\'*" is a prefix of one letter']),
        ('Togo OR "-"', ['7:15: warning: "-" can never match: it holds no letter or digit']),
        ("Mali and", ['7:12: warning: "and" alone is a stopword']),
    ],
)
def test_each_lint_points_at_its_character(tmp_path: Path, query: str, expected: list[str]) -> None:
    found = warnings_of(tmp_path, query)
    assert len(found) >= len(expected), found
    for start in expected:
        assert any(warning.startswith(start) for warning in found), (start, found)


@pytest.mark.parametrize(
    "query",
    [
        "Togo AND Bénin",
        '"coup d\'État" NEAR/5 Mali',
        "Togo NOT football",
        '"le Togo" OR l\'armée',
        "sanction* OR embargo",
        "students' union OR Togo",
        "(Togo OR Bénin) AND NOT (football OR basket)",
        'title:Togo text:"accord de défense"',
    ],
)
def test_ordinary_queries_raise_no_warning(tmp_path: Path, query: str) -> None:
    assert warnings_of(tmp_path, query) == []


def test_a_lowercase_and_is_one_warning_not_also_a_stopword(tmp_path: Path) -> None:
    found = warnings_of(tmp_path, "Togo and Bénin")
    assert len(found) == 1


def test_lists_and_sets_are_linted_at_their_items(tmp_path: Path) -> None:
    path = config_with(
        tmp_path,
        '  - name: W\n    any: [Togo, le, "“accord”"]\n    none: ["&"]\n',
        sets="sets:\n  pays: [Togo, de]\n",
    )
    found = [warning.removeprefix(f"{path}:") for warning in lint_config(path)]
    assert found == [
        '5:16: warning: "de" alone is a stopword: it is in nearly every article; make it '
        'part of a phrase ("...") or remove it',
        '8:17: warning: "le" alone is a stopword: it is in nearly every article; make it '
        'part of a phrase ("...") or remove it',
        "8:21: warning: “ does not make a phrase: the words are looked for one by one, "
        'anywhere; write a phrase between straight double quotes, "like this"',
        '9:12: warning: "&" can never match: it holds no letter or digit',
    ]


def test_a_position_inside_a_block_scalar_query(tmp_path: Path) -> None:
    path = config_with(tmp_path, "  - name: W\n    query: >\n      Togo\n      and Bénin\n")
    (warning,) = lint_config(path)
    assert warning.startswith(f'{path}:8:7: warning: "and"')


def test_check_prints_warnings_and_strict_makes_them_errors(tmp_path: Path) -> None:
    path = config_with(tmp_path, "  - name: W\n    query: Togo NEAR5 armée\n")
    lenient = CliRunner().invoke(main, ["-c", str(path), "check"])
    assert lenient.exit_code == 0
    assert "OK" in lenient.output and "1 warning(s)" in lenient.output
    assert "NEAR5" in lenient.output
    strict = CliRunner().invoke(main, ["-c", str(path), "check", "--strict"])
    assert strict.exit_code == 1
    assert "errors with --strict" in strict.output
    clean = config_with(tmp_path, "  - name: W\n    query: Togo NEAR/5 armée\n")
    assert CliRunner().invoke(main, ["-c", str(clean), "check", "--strict"]).exit_code == 0


def test_run_logs_the_warnings_when_it_starts(tmp_path: Path) -> None:
    path = config_with(tmp_path, "  - name: W\n    query: Togo and Bénin\n")
    # A database path that is a folder: the daemon stops right after the warnings.
    (tmp_path / "db").mkdir()
    path.write_text("database: db\n" + path.read_text(encoding="utf-8"), encoding="utf-8")
    finished = subprocess.run(
        [sys.executable, "-m", "monitor", "-c", str(path), "run"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 1
    assert f'{path}:7:17: warning: "and" between two terms' in finished.stderr


def test_check_as_a_program_says_all_it_says_in_process_before_it_ends(tmp_path: Path) -> None:
    # As the program, `monitor check` ends without freeing the configuration object by
    # object: its output must be flushed first, and its exit status kept.
    warned = config_with(tmp_path, "  - name: W\n    query: Togo and Bénin\n")
    for arguments, status in ((["check"], 0), (["check", "--strict"], 1)):
        program = subprocess.run(
            [sys.executable, "-m", "monitor", "-c", str(warned), *arguments],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "COLUMNS": "200"},
        )
        in_process = CliRunner().invoke(main, ["-c", str(warned), *arguments])
        assert program.returncode == in_process.exit_code == status
        assert f'{warned}:6:17: warning: "and" between two terms' in program.stderr
        assert program.stdout.strip() == in_process.stdout.strip()
        for line in in_process.output.splitlines():
            assert line in program.stdout + program.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("feeds: [", encoding="utf-8")
    program = subprocess.run(
        [sys.executable, "-m", "monitor", "-c", str(broken), "check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert program.returncode == 1
    assert "problem(s); nothing was run." in program.stderr
