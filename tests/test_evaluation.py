"""Labelled evaluation of the watchlist matcher over real French news.

The data lives in ``tests/data/evaluation`` (see its README.md):

* ``watchlists.yaml``: watchlists an analyst of West and Central Africa would write, each with
  the topic it is meant to catch;
* ``judgements.csv``: whether a MasakhaNEWS (BBC Afrique) article is relevant to a watchlist's
  topic, decided by reading it, with the reason;
* ``seed_variants/``: the seed article (read from the corpus) and variants of it written for
  this evaluation (plurals, no accents, capitals, elisions, distant terms, a "Lire aussi" box),
  with ``expected.yaml``.

Every judged (article, watchlist) pair is run through one `Matcher`; precision, recall and F1
are computed per watchlist and overall, printed (``pytest -s``) and added to the terminal
summary, and held above floors. The outcomes the matching rules promise (``must`` in
expected.yaml) are asserted one by one.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from monitor.matching import Matcher
from monitor.models import ArticleText, TextSource, Watchlist
from monitor.query import Node, from_lists, parse_query
from tests.corpus import require_corpus

DATA_DIR = Path(__file__).resolve().parent / "data" / "evaluation"
WATCHLISTS_FILE = DATA_DIR / "watchlists.yaml"
JUDGEMENTS_FILE = DATA_DIR / "judgements.csv"
VARIANTS_DIR = DATA_DIR / "seed_variants"
EXPECTED_FILE = VARIANTS_DIR / "expected.yaml"

CORPUS_TEXT_PREFIX = "corpus:"  # expected.yaml: a text read from the shared corpus
MASAKHANEWS_DIR = ("articles", "masakhanews-fra")
LANGUAGE = "fr"
JUDGEMENT_COLUMNS = ("file", "article", "watchlist", "relevant", "reason")

MIN_WATCHLISTS = 10
MIN_CORPUS_JUDGEMENTS = 150

# Floors = the figures the matcher reached when this evaluation was written, minus a margin
# (small judged sets move by several points per article). When the matcher improves, copy the
# new figures from the printed table; lower a baseline only with a reason in the commit message.
OVERALL_BASELINE = {"precision": 0.67, "recall": 0.96, "f1": 0.79}
OVERALL_MARGIN = 0.04
# Per watchlist: (precision, recall) measured over its judged pairs.
WATCHLIST_BASELINES: dict[str, tuple[float, float]] = {
    "Sahel — terrorisme et insécurité": (0.88, 1.00),
    "Coups d'État et transitions militaires": (0.57, 0.67),
    "CEDEAO": (0.83, 1.00),
    "Russie en Afrique — Wagner": (0.56, 1.00),
    "Élections en Afrique": (0.58, 1.00),
    "Covid-19 en Afrique": (0.47, 1.00),
    "Paludisme, Ebola et fièvres hémorragiques": (0.67, 1.00),
    "Inflation et coût de la vie": (0.64, 0.88),
    "Franc CFA et monnaie unique": (0.75, 1.00),
    "Football africain — CAN et CAF": (0.73, 1.00),
    "Cybercriminalité et piratage": (0.80, 1.00),
    "Présence militaire française au Sahel": (0.62, 1.00),
    "Togo — Russie": (0.54, 1.00),
    "Togo — coopération militaire": (0.88, 1.00),
    "Togo — accord avec la Russie (proximité)": (0.75, 0.86),
}
WATCHLIST_MARGIN = 0.10


class EvaluationDataError(Exception):
    """A data file of the evaluation is malformed; the message names the file and line."""


# --------------------------------------------------------------------------- data files


def _yaml_load(path: Path) -> Any:
    # Round-trip loading keeps line numbers for the error messages.
    with path.open(encoding="utf-8") as stream:
        return YAML(typ="rt").load(stream)


def _line_of(node: Any, key: object = None) -> str:
    """``:line`` of a YAML mapping (or of one of its keys), or "" when unknown."""
    position = getattr(node, "lc", None)
    if position is None:
        return ""
    if key is not None:
        try:
            return f":{position.key(key)[0] + 1}"
        except (KeyError, TypeError):
            pass
    return f":{position.line + 1}"


def _string_list(path: Path, owner: Any, key: str) -> list[str]:
    items = owner.get(key, [])
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise EvaluationDataError(
            f"{path}{_line_of(owner, key)}: `{key}` must be a list of strings"
        )
    return list(items)


@dataclass(frozen=True)
class WatchlistSpec:
    name: str
    topic: str
    query: Node
    where: str  # file:line, for messages


@dataclass(frozen=True)
class WatchlistFile:
    sets: Mapping[str, Sequence[str]]
    specs: tuple[WatchlistSpec, ...]  # in file order
    raw: Mapping[str, Any]  # name -> the YAML mapping, to derive control watchlists


def load_watchlists(path: Path = WATCHLISTS_FILE) -> WatchlistFile:
    document = _yaml_load(path)
    if not isinstance(document, dict) or not isinstance(document.get("watchlists"), list):
        raise EvaluationDataError(f"{path}: expected a mapping with a `watchlists` list")
    raw_sets = document.get("sets", {})
    if not isinstance(raw_sets, dict):
        raise EvaluationDataError(f"{path}{_line_of(document, 'sets')}: `sets` must be a mapping")
    sets = {str(name): _string_list(path, raw_sets, name) for name in raw_sets}
    specs: list[WatchlistSpec] = []
    raw: dict[str, Any] = {}
    for entry in document["watchlists"]:
        where = f"{path}{_line_of(entry)}"
        if not isinstance(entry, dict):
            raise EvaluationDataError(f"{where}: each watchlist must be a mapping")
        name, topic = entry.get("name"), entry.get("topic")
        if not isinstance(name, str) or not name.strip():
            raise EvaluationDataError(f"{where}: a watchlist needs a `name`")
        if name in raw:
            raise EvaluationDataError(f"{where}: watchlist {name!r} is defined twice")
        if not isinstance(topic, str) or not topic.strip():
            raise EvaluationDataError(
                f"{where}: watchlist {name!r} needs a `topic` (what the judgements are made against)"
            )
        specs.append(WatchlistSpec(name, topic, _watchlist_query(entry, sets, where), where))
        raw[name] = entry
    return WatchlistFile(sets, tuple(specs), raw)


def _watchlist_query(
    entry: Mapping[str, Any],
    sets: Mapping[str, Sequence[str]],
    where: str,
    extra_none: Sequence[str] = (),
) -> Node:
    has_query = "query" in entry
    has_lists = any(key in entry for key in ("all", "any", "none"))
    if has_query == has_lists:
        raise EvaluationDataError(
            f"{where}: watchlist {entry.get('name')!r} needs either `query` or `all`/`any`/`none`"
        )
    try:
        if has_query:
            if extra_none:
                raise EvaluationDataError(f"{where}: `add_none` needs a watchlist in list form")
            return parse_query(str(entry["query"]), sets)
        path = Path(where.rsplit(":", 1)[0])
        return from_lists(
            _string_list(path, entry, "all"),
            _string_list(path, entry, "any"),
            [*_string_list(path, entry, "none"), *extra_none],
            sets,
        )
    except ValueError as error:  # QuerySyntaxError and ListTermError
        raise EvaluationDataError(f"{where}: watchlist {entry.get('name')!r}: {error}") from error


@dataclass(frozen=True)
class Judgement:
    file: str
    article: str
    watchlist: str
    relevant: bool
    reason: str
    where: str


def load_judgements(path: Path = JUDGEMENTS_FILE) -> tuple[Judgement, ...]:
    judgements: list[Judgement] = []
    seen: dict[tuple[str, str, str], str] = {}
    with path.open(encoding="utf-8", newline="") as stream:
        reader = csv.DictReader(stream)
        if tuple(reader.fieldnames or ()) != JUDGEMENT_COLUMNS:
            raise EvaluationDataError(
                f"{path}:1: expected the header {','.join(JUDGEMENT_COLUMNS)}, "
                f"got {','.join(reader.fieldnames or ())}"
            )
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if any(not (row.get(column) or "").strip() for column in JUDGEMENT_COLUMNS):
                raise EvaluationDataError(f"{where}: every column must be filled in")
            if row["relevant"] not in ("yes", "no"):
                raise EvaluationDataError(
                    f"{where}: `relevant` must be yes or no, got {row['relevant']!r}"
                )
            key = (row["file"], row["article"], row["watchlist"])
            if key in seen:
                raise EvaluationDataError(
                    f"{where}: the same pair is already judged at {seen[key]}"
                )
            seen[key] = where
            judgements.append(
                Judgement(
                    row["file"],
                    row["article"],
                    row["watchlist"],
                    row["relevant"] == "yes",
                    row["reason"],
                    where,
                )
            )
    return tuple(judgements)


@dataclass(frozen=True)
class Expectation:
    text: str  # as written in expected.yaml: a file of seed_variants/ or corpus:<path>
    watchlist: str
    relevant: bool | None  # None: not counted in the figures
    must_hit: bool | None  # None: no promise, not asserted
    why: str
    where: str


@dataclass(frozen=True)
class ControlWatchlist:
    name: str
    like: str
    add_none: tuple[str, ...]
    where: str


_YES_NO = {"yes": True, "no": False, True: True, False: False}  # YAML 1.2 reads yes/no as strings
_MUST = {"hit": True, "no hit": False}


def load_expectations(
    path: Path = EXPECTED_FILE,
) -> tuple[tuple[ControlWatchlist, ...], tuple[Expectation, ...]]:
    document = _yaml_load(path)
    if not isinstance(document, dict) or not isinstance(document.get("texts"), list):
        raise EvaluationDataError(f"{path}: expected a mapping with a `texts` list")
    controls: list[ControlWatchlist] = []
    for entry in document.get("control_watchlists", []):
        where = f"{path}{_line_of(entry)}"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise EvaluationDataError(
                f"{where}: a control watchlist needs `name`, `like`, `add_none`"
            )
        controls.append(
            ControlWatchlist(
                entry["name"],
                str(entry.get("like", "")),
                tuple(_string_list(path, entry, "add_none")),
                where,
            )
        )
    expectations: list[Expectation] = []
    for entry in document["texts"]:
        where = f"{path}{_line_of(entry)}"
        if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
            raise EvaluationDataError(f"{where}: each text needs `text` and `expect`")
        expect = entry.get("expect")
        if not isinstance(expect, dict) or not expect:
            raise EvaluationDataError(f"{where}: `expect` must map watchlist names to outcomes")
        for watchlist, outcome in expect.items():
            outcome_where = f"{path}{_line_of(expect, watchlist)}"
            if not isinstance(outcome, dict):
                raise EvaluationDataError(f"{outcome_where}: expected {{relevant: ..., must: ...}}")
            unknown = set(outcome) - {"relevant", "must", "why"}
            if unknown:
                raise EvaluationDataError(f"{outcome_where}: unknown keys {sorted(unknown)}")
            relevant = outcome.get("relevant")
            must = outcome.get("must")
            if relevant is not None and relevant not in _YES_NO:
                raise EvaluationDataError(f"{outcome_where}: `relevant` must be yes or no")
            if must is not None and must not in _MUST:
                raise EvaluationDataError(f"{outcome_where}: `must` must be `hit` or `no hit`")
            if relevant is None and must is None:
                raise EvaluationDataError(f"{outcome_where}: give `relevant`, `must` or both")
            expectations.append(
                Expectation(
                    entry["text"],
                    str(watchlist),
                    None if relevant is None else _YES_NO[relevant],
                    None if must is None else _MUST[must],
                    " ".join(str(outcome.get("why", "")).split()),
                    outcome_where,
                )
            )
    return tuple(controls), tuple(expectations)


# --------------------------------------------------------------------------- articles


def read_masakhanews(path: Path) -> dict[str, tuple[str, str]]:
    """url -> (headline, text) of one MasakhaNEWS TSV (gzip, tab-separated, with a header)."""
    with gzip.open(path, "rt", encoding="utf-8", newline="") as stream:
        reader = csv.DictReader(stream, delimiter="\t")
        if not {"headline", "text", "url"} <= set(reader.fieldnames or ()):
            raise EvaluationDataError(
                f"{path}: no headline/text/url columns (header: {reader.fieldnames}); "
                "judgements can only use files whose articles have a url"
            )
        return {row["url"]: (row["headline"], row["text"]) for row in reader}


def read_text_file(reference: str, where: str) -> tuple[str, str]:
    """(title, text) of a seed text: its first line is the title, the other lines the text."""
    if reference.startswith(CORPUS_TEXT_PREFIX):
        path = require_corpus(*reference.removeprefix(CORPUS_TEXT_PREFIX).split("/"))
    else:
        path = VARIANTS_DIR / reference
        if not path.is_file():
            raise EvaluationDataError(f"{where}: no file {path}")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise EvaluationDataError(f"{where}: {path} is empty")
    return lines[0], "\n".join(lines[1:])


def article(url: str | None, title: str, text: str) -> ArticleText:
    return ArticleText(url=url, title=title, text=text, source=TextSource.FEED, language=LANGUAGE)


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class LabelledPair:
    """One judged (text, watchlist) pair and what the matcher did with it."""

    text: str  # article url, or the seed text reference
    watchlist: str
    relevant: bool
    hit: bool
    reason: str


@dataclass(frozen=True)
class Score:
    watchlist: str
    true_positives: int
    false_positives: int
    false_negatives: int
    true_negatives: int

    @property
    def judged(self) -> int:
        return (
            self.true_positives + self.false_positives + self.false_negatives + self.true_negatives
        )

    @property
    def relevant(self) -> int:
        return self.true_positives + self.false_negatives

    @property
    def precision(self) -> float | None:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else None

    @property
    def recall(self) -> float | None:
        return self.true_positives / self.relevant if self.relevant else None

    @property
    def f1(self) -> float | None:
        precision, recall = self.precision, self.recall
        if precision is None or recall is None or precision + recall == 0:
            return None
        return 2 * precision * recall / (precision + recall)


def score(watchlist: str, pairs: Iterable[LabelledPair]) -> Score:
    counts = {(True, True): 0, (False, True): 0, (True, False): 0, (False, False): 0}
    for pair in pairs:
        counts[(pair.relevant, pair.hit)] += 1
    return Score(
        watchlist,
        true_positives=counts[(True, True)],
        false_positives=counts[(False, True)],
        false_negatives=counts[(True, False)],
        true_negatives=counts[(False, False)],
    )


@dataclass(frozen=True)
class Evaluation:
    watchlists: tuple[str, ...]  # file order
    pairs: tuple[LabelledPair, ...]  # corpus judgements and seed texts with `relevant`
    corpus_judgements: int
    expectations: tuple[Expectation, ...]
    hits: Mapping[str, frozenset[str]]  # text (url or seed reference) -> watchlists that hit

    def scores(self) -> list[Score]:
        return [
            score(name, (pair for pair in self.pairs if pair.watchlist == name))
            for name in self.watchlists
        ]

    def overall(self) -> Score:
        return score("overall (all judged pairs)", self.pairs)


def run_evaluation() -> Evaluation:
    watchlist_file = load_watchlists()
    controls, expectations = load_expectations()
    judgements = load_judgements()
    names = [spec.name for spec in watchlist_file.specs]

    watchlists = [
        Watchlist(name=spec.name, query=spec.query, language=LANGUAGE)
        for spec in watchlist_file.specs
    ]
    for control in controls:
        if control.like not in watchlist_file.raw:
            raise EvaluationDataError(f"{control.where}: no watchlist {control.like!r} to copy")
        query = _watchlist_query(
            watchlist_file.raw[control.like], watchlist_file.sets, control.where, control.add_none
        )
        watchlists.append(Watchlist(name=control.name, query=query, language=LANGUAGE))
    known = {watchlist.name for watchlist in watchlists}
    for judgement in judgements:
        if judgement.watchlist not in names:
            raise EvaluationDataError(f"{judgement.where}: no watchlist {judgement.watchlist!r}")
    for expectation in expectations:
        if expectation.watchlist not in known:
            raise EvaluationDataError(
                f"{expectation.where}: no watchlist {expectation.watchlist!r}"
            )

    matcher = Matcher(watchlists)
    hits: dict[str, frozenset[str]] = {}

    def match(key: str, text: ArticleText) -> None:
        hits[key] = frozenset(hit.watchlist for hit in matcher.match(text))

    files = sorted({judgement.file for judgement in judgements})
    for file in files:
        articles = read_masakhanews(require_corpus(*MASAKHANEWS_DIR, file))
        for judgement in judgements:
            if judgement.file != file or judgement.article in hits:
                continue
            if judgement.article not in articles:
                raise EvaluationDataError(
                    f"{judgement.where}: no article with url {judgement.article} in {file}"
                )
            headline, body = articles[judgement.article]
            match(judgement.article, article(judgement.article, headline, body))
    for expectation in expectations:
        if expectation.text not in hits:
            title, body = read_text_file(expectation.text, expectation.where)
            match(expectation.text, article(None, title, body))

    pairs = [
        LabelledPair(j.article, j.watchlist, j.relevant, j.watchlist in hits[j.article], j.reason)
        for j in judgements
    ]
    pairs += [
        LabelledPair(e.text, e.watchlist, e.relevant, e.watchlist in hits[e.text], e.why)
        for e in expectations
        if e.relevant is not None and e.watchlist in names
    ]
    return Evaluation(tuple(names), tuple(pairs), len(judgements), expectations, hits)


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def report(evaluation: Evaluation, *, disagreements: bool = True) -> list[str]:
    """The precision/recall table, then (optionally) the false positives and misses with reasons."""
    rows = [*evaluation.scores(), evaluation.overall()]
    width = max(len(row.watchlist) for row in rows)
    header = f"{'watchlist':<{width}}  judged  relevant  TP  FP  FN  precision  recall    F1"
    lines = [
        f"Watchlist evaluation: {evaluation.corpus_judgements} corpus judgements "
        f"+ {len(evaluation.pairs) - evaluation.corpus_judgements} seed-text pairs",
        header,
        "-" * len(header),
    ]
    for row in rows:
        if row is rows[-1]:
            lines.append("-" * len(header))
        lines.append(
            f"{row.watchlist:<{width}}  {row.judged:>6}  {row.relevant:>8}  "
            f"{row.true_positives:>2}  {row.false_positives:>2}  {row.false_negatives:>2}  "
            f"{_percent(row.precision):>9}  {_percent(row.recall):>6}  {_percent(row.f1):>4}"
        )
    errors = [pair for pair in evaluation.pairs if pair.relevant != pair.hit]
    if errors and not disagreements:
        lines.append(
            f"{len(errors)} disagreements: run `pytest -s tests/{Path(__file__).name}` to list them"
        )
    elif errors:
        lines.append("")
        lines.append("Disagreements (FP: hit but not relevant; FN: relevant but missed):")
        for pair in sorted(errors, key=lambda pair: (pair.watchlist, pair.hit, pair.text)):
            kind = "FP" if pair.hit else "FN"
            lines.append(f"  {kind} {pair.watchlist} | {pair.text} | {pair.reason}")
    return lines


class _SummaryPlugin:
    """Adds the evaluation table to pytest's terminal summary."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        terminalreporter.write_sep("=", "watchlist matcher evaluation")
        for line in self.lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="module")
def evaluation(request: pytest.FixtureRequest) -> Evaluation:
    result = run_evaluation()
    print("\n" + "\n".join(report(result)))  # shown by `pytest -s`
    plugin_name = "watchlist-evaluation-summary"
    if not request.config.pluginmanager.has_plugin(plugin_name):
        summary = _SummaryPlugin(report(result, disagreements=False))
        request.config.pluginmanager.register(summary, plugin_name)
    return result


# --------------------------------------------------------------------------- tests


def test_data_files_are_complete() -> None:
    """The evaluation has the size the issue asks for, and every watchlist is judged both ways."""
    specs = load_watchlists().specs
    judgements = load_judgements()
    _, expectations = load_expectations()
    assert len(specs) >= MIN_WATCHLISTS
    assert len(judgements) >= MIN_CORPUS_JUDGEMENTS
    labels: dict[str, set[bool]] = {spec.name: set() for spec in specs}
    for judgement in judgements:
        labels.setdefault(judgement.watchlist, set()).add(judgement.relevant)
    for expectation in expectations:
        if expectation.relevant is not None and expectation.watchlist in labels:
            labels[expectation.watchlist].add(expectation.relevant)
    one_sided = {name: sorted(found) for name, found in labels.items() if found != {True, False}}
    assert not one_sided, f"watchlists without both relevant and irrelevant judgements: {one_sided}"
    unknown = sorted({j.watchlist for j in judgements} - {spec.name for spec in specs})
    assert not unknown, f"{JUDGEMENTS_FILE}: judgements for undefined watchlists {unknown}"


def test_every_watchlist_has_a_baseline() -> None:
    names = [spec.name for spec in load_watchlists().specs]
    assert sorted(WATCHLIST_BASELINES) == sorted(names), (
        "WATCHLIST_BASELINES must list exactly the watchlists of watchlists.yaml: "
        "run `pytest -s tests/test_evaluation.py` and copy the figures of a new watchlist"
    )


@pytest.mark.corpus
def test_overall_precision_and_recall_stay_above_floors(evaluation: Evaluation) -> None:
    overall = evaluation.overall()
    measured = {"precision": overall.precision, "recall": overall.recall, "f1": overall.f1}
    below = [
        f"{metric} {_percent(measured[metric])} < floor {baseline - OVERALL_MARGIN:.0%}"
        for metric, baseline in OVERALL_BASELINE.items()
        if (measured[metric] or 0.0) < baseline - OVERALL_MARGIN
    ]
    assert not below, "\n".join([*below, *report(evaluation)])


@pytest.mark.corpus
def test_each_watchlist_stays_above_its_floors(evaluation: Evaluation) -> None:
    below = []
    for row in evaluation.scores():
        precision, recall = WATCHLIST_BASELINES[row.watchlist]
        for metric, value, baseline in (
            ("precision", row.precision, precision),
            ("recall", row.recall, recall),
        ):
            if (value or 0.0) < baseline - WATCHLIST_MARGIN:
                below.append(
                    f"{row.watchlist}: {metric} {_percent(value)} < floor "
                    f"{baseline - WATCHLIST_MARGIN:.0%}"
                )
    assert not below, "\n".join([*below, *report(evaluation)])


@pytest.mark.corpus
def test_seed_article_hits_the_military_cooperation_watchlist(evaluation: Evaluation) -> None:
    seed = f"{CORPUS_TEXT_PREFIX}seed/togo-russie.txt"
    assert "Togo — coopération militaire" in evaluation.hits[seed]
    assert "Togo — coopération militaire (sans Moscou)" not in evaluation.hits[seed]


def _promises() -> list[Any]:
    _, expectations = load_expectations()
    return [
        pytest.param(e, id=f"{e.text} / {e.watchlist}")
        for e in expectations
        if e.must_hit is not None
    ]


@pytest.mark.corpus
@pytest.mark.parametrize("expectation", _promises())
def test_seed_texts_meet_the_matching_rules(
    evaluation: Evaluation, expectation: Expectation
) -> None:
    hit = expectation.watchlist in evaluation.hits[expectation.text]
    wanted = "hit" if expectation.must_hit else "no hit"
    assert hit == expectation.must_hit, (
        f"{expectation.where}: {expectation.text} must give {wanted} for "
        f"{expectation.watchlist!r}" + (f" ({expectation.why})" if expectation.why else "")
    )
