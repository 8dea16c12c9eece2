"""Labelled evaluation of the watchlist matcher over real French news.

The data lives in ``tests/data/evaluation`` (see its README.md):

* ``watchlists.yaml``: watchlists an analyst of West and Central Africa would write, each with
  the topic it is meant to catch;
* ``judgements.csv``: whether a BBC Afrique article (MasakhaNEWS, test and train splits) or a
  French page of the corpus is about a watchlist's topic (``main``), mentions it in passing
  (``passing``) or does not concern it (``unrelated``), decided by reading it, with the reason;
* ``seed_variants/``: the seed article (read from the corpus) and variants of it written for
  this evaluation (plurals, no accents, capitals, elisions, distant terms, a "Lire aussi" box),
  with ``expected.yaml``.

Every judged (article, watchlist) pair is run through one `Matcher`. The digest lists a
watchlist's hits in two parts: the main list (hits not ``in_passing``), by relevance, then the
passing mentions. Per watchlist and overall the test computes, counting ``main`` as relevant:

* main-list precision: the share of main-list hits judged ``main``;
* main-list recall: the share of ``main`` pairs in the main list;
* recall anywhere: the share of ``main`` pairs hit at all (in the main list or in passing);
* MAP: mean over watchlists of the average precision of its hits ranked by relevance,
  beside the mean a random order gets.

The figures are printed (``pytest -s``), added to the terminal summary and held above floors.
The outcomes the matching rules promise (``must`` in expected.yaml) are asserted one by one.
"""

from __future__ import annotations

import csv
import gzip
import random
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from monitor.extract import extract_article
from monitor.matching import Matcher
from monitor.models import ArticleText, HitResult, TextSource, Watchlist
from monitor.query import Node, from_lists, parse_query
from tests.corpus import require_corpus

DATA_DIR = Path(__file__).resolve().parent / "data" / "evaluation"
WATCHLISTS_FILE = DATA_DIR / "watchlists.yaml"
JUDGEMENTS_FILE = DATA_DIR / "judgements.csv"  # judged before relevance existed; its design set
HELDOUT_FILE = DATA_DIR / "judgements_heldout.csv"  # judged apart, never used to design it
VARIANTS_DIR = DATA_DIR / "seed_variants"
EXPECTED_FILE = VARIANTS_DIR / "expected.yaml"

CORPUS_TEXT_PREFIX = "corpus:"  # expected.yaml: a text read from the shared corpus
MASAKHANEWS_DIR = ("articles", "masakhanews-fra")
LANGUAGE = "fr"
JUDGEMENT_COLUMNS = ("file", "article", "watchlist", "label", "reason")
LABELS = ("main", "passing", "unrelated")
MASAKHANEWS_TEST = "masakhanews_fra_test.tsv.gz"  # articles identified by url
MASAKHANEWS_TRAIN = "masakhanews_fra_train_50shot.tsv.gz"  # by headline (no url column)
PAGE_SUFFIX = ".html.gz"  # a page of ../shared/corpus/articles, identified by its path

MIN_WATCHLISTS = 10
MIN_CORPUS_JUDGEMENTS = 150

# Floors = the figures measured when this evaluation was last extended, minus a margin (small
# judged sets move by several points per article). When relevance improves, copy the new
# figures from the printed table; lower a baseline only with a reason in the commit message.
OVERALL_BASELINE = {
    "main-list precision": 0.90,
    "main-list recall": 0.80,
    "recall anywhere": 0.92,
    "MAP": 0.97,
}
OVERALL_MARGIN = 0.03
# Per watchlist: recall anywhere (the share of its `main` pairs hit at all).
WATCHLIST_RECALL_BASELINES: dict[str, float] = {
    "Sahel — terrorisme et insécurité": 0.95,
    "Coups d'État et transitions militaires": 0.71,
    "CEDEAO": 1.00,
    "Russie en Afrique — Wagner": 1.00,
    "Élections en Afrique": 0.78,
    "Covid-19 en Afrique": 1.00,
    "Paludisme, Ebola et fièvres hémorragiques": 0.50,
    "Inflation et coût de la vie": 0.88,
    "Franc CFA et monnaie unique": 1.00,
    "Football africain — CAN et CAF": 0.92,
    "Cybercriminalité et piratage": 1.00,
    "Présence militaire française au Sahel": 1.00,
    "Togo — Russie": 1.00,
    "Togo — coopération militaire": 1.00,
    "Togo — accord avec la Russie (proximité)": 0.86,
}
WATCHLIST_MARGIN = 0.10
RANDOM_ORDERS = 200  # shuffles averaged for the MAP of a random order


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
    label: str  # one of LABELS
    reason: str
    where: str
    heldout: bool = False


def load_judgements(
    paths: Sequence[Path] = (JUDGEMENTS_FILE, HELDOUT_FILE),
) -> tuple[Judgement, ...]:
    judgements: list[Judgement] = []
    seen: dict[tuple[str, str, str], str] = {}
    for path in paths:
        judgements += _read_judgements(path, seen, heldout=path == HELDOUT_FILE)
    return tuple(judgements)


def _read_judgements(
    path: Path, seen: dict[tuple[str, str, str], str], *, heldout: bool
) -> list[Judgement]:
    judgements: list[Judgement] = []
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
            if row["label"] not in LABELS:
                raise EvaluationDataError(
                    f"{where}: `label` must be one of {', '.join(LABELS)}, got {row['label']!r}"
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
                    row["label"],
                    row["reason"],
                    where,
                    heldout,
                )
            )
    return judgements


@dataclass(frozen=True)
class Expectation:
    text: str  # as written in expected.yaml: a file of seed_variants/ or corpus:<path>
    watchlist: str
    label: str | None  # None: not counted in the figures
    must_hit: bool | None  # None: no promise, not asserted
    why: str
    where: str


@dataclass(frozen=True)
class ControlWatchlist:
    name: str
    like: str
    add_none: tuple[str, ...]
    where: str


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
                raise EvaluationDataError(f"{outcome_where}: expected {{label: ..., must: ...}}")
            unknown = set(outcome) - {"label", "must", "why"}
            if unknown:
                raise EvaluationDataError(f"{outcome_where}: unknown keys {sorted(unknown)}")
            label = outcome.get("label")
            must = outcome.get("must")
            if label is not None and label not in LABELS:
                raise EvaluationDataError(
                    f"{outcome_where}: `label` must be one of {', '.join(LABELS)}"
                )
            if must is not None and must not in _MUST:
                raise EvaluationDataError(f"{outcome_where}: `must` must be `hit` or `no hit`")
            if label is None and must is None:
                raise EvaluationDataError(f"{outcome_where}: give `label`, `must` or both")
            expectations.append(
                Expectation(
                    entry["text"],
                    str(watchlist),
                    None if label is None else str(label),
                    None if must is None else _MUST[must],
                    " ".join(str(outcome.get("why", "")).split()),
                    outcome_where,
                )
            )
    return tuple(controls), tuple(expectations)


# --------------------------------------------------------------------------- articles


def read_masakhanews(path: Path, key: str = "url") -> dict[str, tuple[str, str]]:
    """`key` column (url or headline) -> (headline, text) of one MasakhaNEWS TSV (gzip,
    tab-separated, with a header)."""
    with gzip.open(path, "rt", encoding="utf-8", newline="") as stream:
        reader = csv.DictReader(stream, delimiter="\t")
        if not {"headline", "text", key} <= set(reader.fieldnames or ()):
            raise EvaluationDataError(
                f"{path}: no headline/text/{key} columns (header: {reader.fieldnames})"
            )
        return {row[key]: (row["headline"], row["text"]) for row in reader}


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


def judged_articles(judgements: Sequence[Judgement]) -> dict[tuple[str, str], ArticleText]:
    """(file, article) -> the text monitor would match, for every judged article."""
    found: dict[tuple[str, str], ArticleText] = {}
    for file in sorted({judgement.file for judgement in judgements}):
        wanted = [j for j in judgements if j.file == file]
        if file.endswith(PAGE_SUFFIX):
            page = gzip.decompress(require_corpus("articles", *file.split("/")).read_bytes())
            extracted = extract_article(page, url=None)
            found[(file, "page")] = article(None, extracted.title, extracted.text)
            continue
        if file not in (MASAKHANEWS_TEST, MASAKHANEWS_TRAIN):
            raise EvaluationDataError(f"{wanted[0].where}: unknown source file {file}")
        by = "url" if file == MASAKHANEWS_TEST else "headline"
        rows = read_masakhanews(require_corpus(*MASAKHANEWS_DIR, file), key=by)
        for judgement in wanted:
            if judgement.article not in rows:
                raise EvaluationDataError(
                    f"{judgement.where}: no article with {by} {judgement.article!r} in {file}"
                )
            headline, body = rows[judgement.article]
            url = judgement.article if by == "url" else None
            found[(file, judgement.article)] = article(url, headline, body)
    return found


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class LabelledPair:
    """One judged (text, watchlist) pair and what the matcher did with it."""

    text: str  # article url, headline or page path, or the seed text reference
    watchlist: str
    label: str
    hit: HitResult | None
    reason: str
    heldout: bool = False

    @property
    def main(self) -> bool:
        return self.label == "main"

    @property
    def in_main_list(self) -> bool:
        return self.hit is not None and not self.hit.in_passing


def average_precision(ranked: Sequence[bool]) -> float | None:
    """Average precision of a ranked list of relevant (True) and other items; None when
    nothing in it is relevant."""
    found = 0
    total = 0.0
    for rank, relevant in enumerate(ranked, start=1):
        if relevant:
            found += 1
            total += found / rank
    return total / found if found else None


@dataclass(frozen=True)
class Score:
    watchlist: str
    judged: int
    main: int  # pairs labelled main
    hits: int
    main_list: int  # hits not in passing
    main_in_main_list: int
    main_hit: int  # main pairs hit, in the main list or in passing
    average_precision: float | None  # hits ranked by relevance
    random_average_precision: float | None  # the same hits in random orders

    @property
    def precision(self) -> float | None:
        return self.main_in_main_list / self.main_list if self.main_list else None

    @property
    def recall(self) -> float | None:
        return self.main_in_main_list / self.main if self.main else None

    @property
    def recall_anywhere(self) -> float | None:
        return self.main_hit / self.main if self.main else None


def score(watchlist: str, pairs: Sequence[LabelledPair], seed: int = 0) -> Score:
    hits = [pair for pair in pairs if pair.hit is not None]
    ranked = [
        pair.main
        for pair in sorted(hits, key=lambda pair: -pair.hit.relevance if pair.hit else 0.0)
    ]
    shuffler = random.Random(seed)
    shuffled: list[float] = []
    for _ in range(RANDOM_ORDERS if any(ranked) else 0):
        order = ranked[:]
        shuffler.shuffle(order)
        shuffled.append(average_precision(order) or 0.0)
    return Score(
        watchlist,
        judged=len(pairs),
        main=sum(pair.main for pair in pairs),
        hits=len(hits),
        main_list=sum(pair.in_main_list for pair in pairs),
        main_in_main_list=sum(pair.in_main_list and pair.main for pair in pairs),
        main_hit=sum(pair.main for pair in hits),
        average_precision=average_precision(ranked),
        random_average_precision=statistics.mean(shuffled) if shuffled else None,
    )


@dataclass(frozen=True)
class Evaluation:
    watchlists: tuple[str, ...]  # file order
    pairs: tuple[LabelledPair, ...]  # corpus judgements and seed texts with a `label`
    corpus_judgements: int
    expectations: tuple[Expectation, ...]
    hits: Mapping[str, frozenset[str]]  # text (its key) -> watchlists that hit

    def scores(self) -> list[Score]:
        return [
            score(name, [pair for pair in self.pairs if pair.watchlist == name])
            for name in self.watchlists
        ]

    def overall(self) -> Score:
        return score("overall (all judged pairs)", self.pairs)

    def design_and_heldout(self) -> tuple[Score, Score]:
        return (
            score(
                "design set (judgements.csv, seed texts)", [p for p in self.pairs if not p.heldout]
            ),
            score("held-out set (judgements_heldout.csv)", [p for p in self.pairs if p.heldout]),
        )

    def mean_average_precision(self) -> tuple[float, float]:
        """MAP over the watchlists whose hits include a `main` pair, and a random order's."""
        rows = [row for row in self.scores() if row.average_precision is not None]
        return (
            statistics.mean(row.average_precision or 0.0 for row in rows),
            statistics.mean(row.random_average_precision or 0.0 for row in rows),
        )

    def figures(self) -> dict[str, float]:
        overall = self.overall()
        return {
            "main-list precision": overall.precision or 0.0,
            "main-list recall": overall.recall or 0.0,
            "recall anywhere": overall.recall_anywhere or 0.0,
            "MAP": self.mean_average_precision()[0],
        }


def run_evaluation() -> Evaluation:
    watchlist_file = load_watchlists()
    controls, expectations = load_expectations()
    judgements = load_judgements()
    names = [spec.name for spec in watchlist_file.specs]

    watchlists = [
        Watchlist(name=spec.name, query=spec.query, language=LANGUAGE, topic=spec.topic)
        for spec in watchlist_file.specs
    ]
    for control in controls:
        if control.like not in watchlist_file.raw:
            raise EvaluationDataError(f"{control.where}: no watchlist {control.like!r} to copy")
        query = _watchlist_query(
            watchlist_file.raw[control.like], watchlist_file.sets, control.where, control.add_none
        )
        topic = next(spec.topic for spec in watchlist_file.specs if spec.name == control.like)
        watchlists.append(Watchlist(name=control.name, query=query, language=LANGUAGE, topic=topic))
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
    hits: dict[str, dict[str, HitResult]] = {}

    def match(key: str, text: ArticleText) -> None:
        hits[key] = {hit.watchlist: hit for hit in matcher.match(text)}

    for (file, reference), text in judged_articles(judgements).items():
        match(f"{file}:{reference}", text)
    for expectation in expectations:
        if expectation.text not in hits:
            title, body = read_text_file(expectation.text, expectation.where)
            match(expectation.text, article(None, title, body))

    pairs = [
        LabelledPair(
            j.article,
            j.watchlist,
            j.label,
            hits[f"{j.file}:{j.article}"].get(j.watchlist),
            j.reason,
            j.heldout,
        )
        for j in judgements
    ]
    pairs += [
        LabelledPair(e.text, e.watchlist, e.label, hits[e.text].get(e.watchlist), e.why)
        for e in expectations
        if e.label is not None and e.watchlist in names
    ]
    hit_names = {key: frozenset(found) for key, found in hits.items()}
    return Evaluation(tuple(names), tuple(pairs), len(judgements), expectations, hit_names)


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def report(evaluation: Evaluation, *, disagreements: bool = True) -> list[str]:
    """The figures per watchlist, then (optionally) the pairs the main list gets wrong."""
    rows = [*evaluation.scores(), *evaluation.design_and_heldout(), evaluation.overall()]
    width = max(len(row.watchlist) for row in rows)
    header = (
        f"{'watchlist':<{width}}  judged  main  hits  list  main-list P  main-list R  "
        f"R anywhere    AP  random"
    )
    lines = [
        f"Watchlist evaluation: {evaluation.corpus_judgements} corpus judgements "
        f"+ {len(evaluation.pairs) - evaluation.corpus_judgements} seed-text pairs "
        "(main list = hits not in passing; relevant = labelled main)",
        header,
        "-" * len(header),
    ]
    for row in rows:
        if row is rows[-3]:
            lines.append("-" * len(header))
        lines.append(
            f"{row.watchlist:<{width}}  {row.judged:>6}  {row.main:>4}  {row.hits:>4}  "
            f"{row.main_list:>4}  {_percent(row.precision):>11}  {_percent(row.recall):>11}  "
            f"{_percent(row.recall_anywhere):>10}  {_ratio(row.average_precision):>4}  "
            f"{_ratio(row.random_average_precision):>6}"
        )
    mean_ap, random_ap = evaluation.mean_average_precision()
    lines.append(f"MAP over watchlists: {mean_ap:.2f} (random order: {random_ap:.2f})")
    wrong = [
        pair for pair in evaluation.pairs if pair.hit is not None and pair.in_main_list != pair.main
    ]
    missed = [pair for pair in evaluation.pairs if pair.hit is None and pair.main]
    if (wrong or missed) and not disagreements:
        lines.append(
            f"{len(wrong)} hits on the wrong side of the main list, {len(missed)} main pairs "
            f"missed: run `pytest -s tests/{Path(__file__).name}` to list them"
        )
    elif wrong or missed:
        lines.append("")
        lines.append(
            "Disagreements (MAIN-LIST: in the main list but not labelled main; PASSING: "
            "labelled main but listed in passing; MISSED: labelled main, no hit):"
        )
        for pair in sorted(wrong, key=lambda pair: (pair.watchlist, pair.text)):
            assert pair.hit is not None
            kind = "MAIN-LIST" if pair.in_main_list else "PASSING"
            lines.append(
                f"  {kind} {pair.watchlist} | {pair.text} | {pair.label} | "
                f"{pair.hit.relevance:.2f} {pair.hit.evidence} | {pair.reason}"
            )
        for pair in sorted(missed, key=lambda pair: (pair.watchlist, pair.text)):
            lines.append(f"  MISSED {pair.watchlist} | {pair.text} | {pair.reason}")
    return lines


class _SummaryPlugin:
    """Adds the evaluation table to pytest's terminal summary."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        terminalreporter.write_sep("=", "watchlist evaluation")
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
    """The evaluation has the size the issue asks for, and every watchlist is judged with
    articles about its topic and articles that are not."""
    specs = load_watchlists().specs
    judgements = load_judgements()
    _, expectations = load_expectations()
    assert len(specs) >= MIN_WATCHLISTS
    assert len(judgements) >= MIN_CORPUS_JUDGEMENTS
    labels: dict[str, set[bool]] = {spec.name: set() for spec in specs}
    for judgement in judgements:
        labels.setdefault(judgement.watchlist, set()).add(judgement.label == "main")
    for expectation in expectations:
        if expectation.label is not None and expectation.watchlist in labels:
            labels[expectation.watchlist].add(expectation.label == "main")
    one_sided = {name: sorted(found) for name, found in labels.items() if found != {True, False}}
    assert not one_sided, f"watchlists without both main and other judgements: {one_sided}"
    unknown = sorted({j.watchlist for j in judgements} - {spec.name for spec in specs})
    assert not unknown, f"judgements for undefined watchlists {unknown}"


def test_every_watchlist_has_a_baseline() -> None:
    names = [spec.name for spec in load_watchlists().specs]
    assert sorted(WATCHLIST_RECALL_BASELINES) == sorted(names), (
        "WATCHLIST_RECALL_BASELINES must list exactly the watchlists of watchlists.yaml: "
        "run `pytest -s tests/test_evaluation.py` and copy the figures of a new watchlist"
    )


def test_average_precision() -> None:
    assert average_precision([True, True, False]) == 1.0
    assert average_precision([False, True]) == 0.5
    assert average_precision([True, False, True]) == (1 + 2 / 3) / 2
    assert average_precision([False, False]) is None


@pytest.mark.corpus
def test_overall_figures_stay_above_floors(evaluation: Evaluation) -> None:
    measured = evaluation.figures()
    below = [
        f"{metric} {measured[metric]:.2f} < floor {baseline - OVERALL_MARGIN:.2f}"
        for metric, baseline in OVERALL_BASELINE.items()
        if measured[metric] < baseline - OVERALL_MARGIN
    ]
    assert not below, "\n".join([*below, *report(evaluation)])


@pytest.mark.corpus
def test_ranking_beats_a_random_order(evaluation: Evaluation) -> None:
    mean_ap, random_ap = evaluation.mean_average_precision()
    assert mean_ap > random_ap + 0.05, "\n".join(report(evaluation))


@pytest.mark.corpus
def test_each_watchlist_keeps_its_recall(evaluation: Evaluation) -> None:
    below = []
    for row in evaluation.scores():
        baseline = WATCHLIST_RECALL_BASELINES[row.watchlist]
        if (row.recall_anywhere or 0.0) < baseline - WATCHLIST_MARGIN:
            below.append(
                f"{row.watchlist}: recall anywhere {_percent(row.recall_anywhere)} < floor "
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
