"""feeds.yaml at scale: tens of thousands of feeds and watchlists load, and the fast
YAML reader (libyaml's events) gives exactly the tree and positions of the strict one
(ruamel.yaml), or steps aside so that the strict one words the refusal."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from monitor.config import MAX_CONFIG_BYTES, lint_config, load_config, parse_config
from monitor.config.lint import _list_item_warnings, _list_item_warnings_in_full
from monitor.config.yaml_tree import _Problems, _read_yaml_fast, _read_yaml_strict
from monitor.errors import ConfigError
from tests.corpus import REPO_ROOT
from tests.test_config import VALID

# Watchlists as users generate them from entity lists: names, spellings, a few queries.
_FIRST = ["Koffi", "Ama", "Faure", "Aïcha", "Jean-Marie", "Kwame"]
_LAST = ["Agbodjan", "Gnassingbé", "Traoré", "Dogbé", "Ouédraogo"]


def _name(index: int) -> str:
    return f"{_FIRST[index % len(_FIRST)]} {_LAST[index % len(_LAST)]} {index}"


def _scaled_config(watchlists: int, feeds: int) -> str:
    lines = ["timezone: Africa/Lome", "feeds:"]
    for index in range(feeds):
        lines.append(f"  - url: https://news{index % 97}.example.org/rss/{index}.xml")
        lines.append(f"    name: Source {index}")
        if index % 3 == 0:
            lines.append("    tags: [afrique]")
    lines.append("watchlists:")
    for index in range(watchlists):
        full = _name(index)
        lines.append(f'  - name: "{full}"')
        if index % 5 == 0:
            lines.append(f"    query: '\"{full}\" NEAR/10 (ministre OR Lomé) NOT sport'")
        else:
            lines.append(f'    any: ["{full}", "{_LAST[index % len(_LAST)]} {index}"]')
        if index % 1000 == 1:
            lines.append("    tags: [afrique]")
        if index % 1000 == 2:
            lines.append(f"    feeds: [Source {index % feeds}]")
    lines += ["digest:", "  from: veille@example.org", "  to: [analyste@example.org]"]
    return "\n".join(lines) + "\n"


def test_twenty_thousand_watchlists_load(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_text(_scaled_config(20_000, 300), encoding="utf-8")
    config = load_config(path)
    assert len(config.watchlists) == 20_000
    assert config.watchlists[-1].name == _name(19_999) == "Ama Ouédraogo 19999"
    assert config.watchlists[0].name == "Koffi Agbodjan 0"
    tagged = config.watchlists[1]
    assert tagged.feeds == tuple(f"Source {index}" for index in range(0, 300, 3))
    assert config.watchlists[2].feeds == ("Source 2",)
    assert config.watchlists[3].feeds == ()


def test_twenty_thousand_feeds_load(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_text(_scaled_config(50, 20_000), encoding="utf-8")
    config = load_config(path)
    assert len(config.feeds) == 20_000
    assert config.feeds[-1].url == "https://news17.example.org/rss/19999.xml"
    assert config.feeds[-1].name == "Source 19999"
    # the watchlist scoped by tag reaches every third feed
    assert len(config.watchlists[1].feeds) == 6667


def test_a_mistake_among_twenty_thousand_watchlists_names_its_line(tmp_path: Path) -> None:
    text = _scaled_config(20_000, 20)
    lines = text.splitlines()
    duplicate_at = lines.index(f'  - name: "{_name(19_992)}"')
    lines[duplicate_at] = '  - name: "Koffi Agbodjan 0"'
    path = tmp_path / "feeds.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    first_at = lines.index('  - name: "Koffi Agbodjan 0"')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [
        f'{path}:{duplicate_at + 1}:11: the watchlist name "Koffi Agbodjan 0" is already '
        f"used at line {first_at + 1}: names must be unique (hits are filed under them)"
    ]


def test_the_file_size_limit_is_far_above_a_hundred_thousand_watchlists() -> None:
    assert len(_scaled_config(1000, 20).encode()) * 100 < MAX_CONFIG_BYTES


def _documents() -> list[str]:
    """Every YAML example we ship or test with, and the shapes the format allows."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    examples = re.findall(r"```yaml\n(.*?)```", readme, flags=re.DOTALL)
    return [
        VALID,
        (REPO_ROOT / "feeds.yaml").read_text(encoding="utf-8"),
        _scaled_config(30, 30),
        *examples,
        "a: 1\nb: 0x1F\nc: 1_000\nd: 1.5e3\ne: .inf\nf: -0\ng: +12\nh: 0o17\n",
        "t: true\nT: True\nf: FALSE\nyes: yes\nno: NO\nn: null\nt2: ~\nempty:\n",
        "date: 2024-01-01\nwhen: 2024-01-01 10:00:00\ntime: 07:00\nquoted: '07:00'\n",
        "é: è\n  # comment\nlist:\n- un\n-   deux\n- - nested\n  - 'x'\n- {k: v, 'q': \"w\"}\n",
        "block: |\n  line one\n  line two\nfolded: >-\n  a\n  b\nnext: [1, [2, 3], {}]\n",
        "w:\r\n  - name: Lomé\r\n    any: [ « Togo » , x ]\r\n",
        '"quoted key": 1\n\'single\': "a\\tb \\u00e9"\nplain key with spaces: value: no\n'.replace(
            "value: no", "value"
        ),
        "feeds:\n  -\n    url: https://example.org\n  - url:\n    name: x\n",
        "--- \nroot: 1\n...\n",
        "just text\n",
        "🌍: [a, 🌍 b, {c: 🌍}]\nafter: 'x 🌍'\nthen: \"\\U0001F30D\"\n",
        "- a\n- b\n",
        "x: 'It''s'\ny: \"multi\n  line\"\nz: plain\n  continued\n",
    ]


@pytest.mark.parametrize("text", _documents())
def test_the_fast_reader_reads_what_the_strict_one_reads(text: str) -> None:
    fast = _read_yaml_fast(text)
    strict = _read_yaml_strict(text, _Problems(Path("feeds.yaml")))
    assert strict is not None and fast is not None
    assert fast[0] == strict[0]
    assert type(fast[0]) is type(strict[0])
    assert fast[1].values == strict[1].values
    assert fast[1].keys == strict[1].keys
    assert fast[1].source_lines == strict[1].source_lines


@pytest.mark.parametrize(
    "text",
    [
        "a: &x 1\nb: 2\n",
        "a: 1\nb: *x\n",
        "a: !!str 1\n",
        "a: 1\na: 2\n",
        "a: 1\n---\nb: 2\n",
        "base: {a: 1}\nother:\n  <<: {b: 2}\n",
        "%YAML 1.1\n---\na: yes\n",
        "a: [1, 2\n",
        "a: b: c\n",
        "1: one\n",
        "true: yes\n",
        "? [a]\n: b\n",
        "a: \x07\n",
        "",
        "# only a comment\n",
        "a:\n" + "  - " * 20 + "deep\n",
    ],
)
def test_the_fast_reader_leaves_unusual_files_to_the_strict_one(text: str) -> None:
    assert _read_yaml_fast(text) is None


def test_errors_are_the_strict_readers_messages(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    with pytest.raises(ConfigError) as caught:
        parse_config("feeds: &f\n  - url: https://example.org\n", path=path, environ={})
    assert caught.value.problems == [
        f"{path}:1:8: anchor &f is not supported: write each value out in full"
    ]


def test_the_same_file_twice_is_validated_once(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    environ = {"SMTP_USER": "veille", "SMTP_PASSWORD": "x"}
    first = parse_config(VALID, path=path, environ=environ)
    assert parse_config(VALID, path=path, environ=dict(environ)) is first
    changed = parse_config(VALID, path=path, environ={**environ, "SMTP_PASSWORD": "y"})
    assert changed is not first
    assert changed.digests[0].smtp is not None and changed.digests[0].smtp.password == "y"
    assert parse_config(VALID, path=tmp_path / "other.yaml", environ=environ) is not first


def test_the_lint_after_a_load_reads_the_tree_the_load_read(tmp_path: Path) -> None:
    text = _scaled_config(20, 5).replace("NOT sport", "NOT sport NEAR5 x", 1)
    path = tmp_path / "feeds.yaml"
    path.write_text(text, encoding="utf-8")
    alone = lint_config(path)
    assert len(alone) == 1 and "NEAR5" in alone[0]
    load_config(path)
    assert lint_config(path) == alone  # taken from the load
    assert lint_config(path) == alone  # read again: the hand-over was used once
    path.write_text(text.replace("NEAR5", "NEAR6"), encoding="utf-8")
    load_config(path)
    path.write_text(text, encoding="utf-8")  # changed between the load and the lint
    assert lint_config(path) == alone


@pytest.mark.parametrize(
    "item",
    [
        "Jean Dupont",
        "Dupont12",
        "le",
        "Le",
        "LES",
        "de la",
        "the",
        "and",
        "AND",
        "Togo AND Lomé",
        "x*",
        "Koffi Agb*",
        "L'Union",
        "Jean-Marie",
        "Côte d'Ivoire",
        "Œuvre",
        "ß",
        "«Togo»",
        '"Togo"',
        "=Togo",
        "@set",
        " Togo",
        "Togo  Lomé",
        "12",
        "Ébène Ça",
        "J. Dupont",
        "J.-M. Dupont",
        "A. B.",
        "a.",
        "Le.",
        "U.S. Army",
        "J.. Dupont",
        "Strasse",
        "Straße",
        "these",
        "their",
        "theirs",
        "Mr. l'",
    ],
)
def test_the_lint_of_plain_names_skips_only_what_cannot_warn(item: str) -> None:
    sets = {"set": ["Togo"]}
    assert _list_item_warnings(item, sets) == _list_item_warnings_in_full(item, sets)


_EDITABLE = """\
timezone: Africa/Lome
sets:
  capitales: [Lomé, Accra]
feeds:
  - url: https://news.example.org/rss.xml
    name: Source A
    tags: [afrique]
  - url: https://radio.example.org/rss.xml
    name: Source B
watchlists:
  - name: Ama Traoré
    any: ["Ama Traoré", "A. Traoré", "le"]
  - name: Capitales
    query: '@capitales NEAR5 sommet'
  - name: Afrique
    all: [Togo]
    tags: [afrique]
  - name: Koffi Dogbé
    query: '"Koffi Dogbé" OR (Dogbé AND ministre)'
digest:
  from: veille@example.org
  to: [analyste@example.org]
"""

_EDITS = {
    "one watchlist changed": ('"Koffi Dogbé" OR', '"Koffi Dogbé" OR Kossi OR'),
    "one watchlist added above the others": (
        "watchlists:\n",
        "watchlists:\n  - name: Nouveau\n    any: [Kara, the]\n",
    ),
    "one watchlist removed": ("  - name: Afrique\n    all: [Togo]\n    tags: [afrique]\n", ""),
    "a set changed": ("[Lomé, Accra]", "[Lomé, Accra, Abuja]"),
    "a tag given to another feed": (
        "    name: Source B\n",
        "    name: Source B\n    tags: [afrique]\n",
    ),
    "nothing changed but a comment": ("timezone:", "# edited\ntimezone:"),
}


@pytest.mark.parametrize("edit", sorted(_EDITS))
def test_a_reload_reuses_unchanged_watchlists_and_equals_a_fresh_load(
    edit: str, tmp_path: Path
) -> None:
    from monitor.config import lint, loading

    path = tmp_path / "feeds.yaml"
    old, new = _EDITS[edit]
    edited = _EDITABLE.replace(old, new, 1)
    assert edited != _EDITABLE
    path.write_text(_EDITABLE, encoding="utf-8")
    first = load_config(path, environ={})
    lint_config(path)  # remembers its findings by watchlist
    path.write_text(edited, encoding="utf-8")
    reloaded = load_config(path, environ={})
    warnings = lint_config(path)
    loading._known_watchlists, loading._last_parsed, lint._known_findings = None, None, None
    fresh = load_config(path, environ={})
    assert reloaded == fresh
    assert warnings == lint_config(path)
    assert any("NEAR5" in warning for warning in warnings)
    before = {watchlist.name: watchlist for watchlist in first.watchlists}
    for watchlist in reloaded.watchlists:
        same = before.get(watchlist.name) == watchlist
        reused = before.get(watchlist.name) is watchlist
        # An unchanged definition gives the same object again: the workers keep its
        # compiled form; a changed one (or one a tag changed) a new object. A change of
        # `sets:` validates every watchlist again.
        assert reused == same if edit != "a set changed" else not reused, watchlist.name
    kept = sum(
        any(item is watchlist for item in first.watchlists) for watchlist in reloaded.watchlists
    )
    expected = {"one watchlist changed": 3, "one watchlist added above the others": 4}
    assert kept == expected.get(edit, kept)
