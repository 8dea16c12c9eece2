"""Fit the relevance model's weights on the labelled evaluation, and say how well they do.

    MONITOR_CORPUS=../shared/corpus .venv/bin/python scripts/fit_relevance.py

Every judged (article, watchlist) pair of ``tests/data/evaluation`` that is a hit gives the
model's inputs (`monitor.models.RelevanceFeatures`) and a label: wanted in the main list
(``main``) or not (``passing``, ``unrelated``). Two logistic models are fitted, L2-regularised,
with each weight held to the sign that keeps "a paragraph without matches never raises a
score" true: one with the topic's density (watchlists with ``topic:``), one without.

Printed for each model, counting a hit in the main list when its score is at least
`PASSING_BELOW`:

* leave-one-watchlist-out cross-validation: each watchlist's hits scored by a model fitted
  on the other watchlists' (a user's watchlist is one the weights never saw);
* design set → held-out set: fitted on ``judgements.csv`` and the seed texts, scored on
  ``judgements_heldout.csv``;
* the weights fitted on every pair, as the `Model(...)` to put in
  ``monitor/matching/relevance.py``, and the figures of the model in use now.

Main-list recall counts every pair labelled ``main``, hit or missed, as the evaluation does.
numpy comes with datasketch, a dependency of monitor.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.matching.relevance import PASSING_BELOW, WITH_TOPIC, WITHOUT_TOPIC, Model
from monitor.models import RelevanceFeatures
from tests.test_evaluation import LabelledPair, run_evaluation

Matrix = npt.NDArray[np.float64]
L2 = 1.0
STEPS = 4000
RATE = 0.5
# name, sign the weight must keep (+1: >= 0, -1: <= 0), and how to read it from the features
INPUTS: tuple[tuple[str, int, Callable[[RelevanceFeatures], float]], ...] = (
    ("strength", 1, lambda f: f.strength),
    ("together", 1, lambda f: float(f.together)),
    ("in_title", 1, lambda f: float(f.in_title)),
    ("length", -1, lambda f: math.log(max(1, f.sentences))),
    ("topic", 1, lambda f: math.log1p(f.topic_density or 0.0)),
)


@dataclass(frozen=True)
class Fitted:
    inputs: int  # how many of INPUTS
    mean: Matrix
    scale: Matrix
    weights: Matrix  # on standardised inputs, then the intercept

    def score(self, x: Matrix) -> Matrix:
        z = np.hstack([(x - self.mean) / self.scale, np.ones((len(x), 1))]) @ self.weights
        result: Matrix = 1.0 / (1.0 + np.exp(-z))
        return result

    def model(self) -> Model:
        raw = self.weights[:-1] / self.scale
        intercept = float(self.weights[-1] - np.sum(raw * self.mean))
        named = {name: round(float(w), 2) for (name, _, _), w in zip(INPUTS, raw, strict=False)}
        return Model(intercept=round(intercept, 2), **named)


def fit(x: Matrix, y: Matrix, inputs: int) -> Fitted:
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
    weights = np.zeros(z.shape[1])
    signs = np.array([sign for _, sign, _ in INPUTS[:inputs]], dtype=float)
    for _ in range(STEPS):
        predicted = 1.0 / (1.0 + np.exp(-(z @ weights)))
        gradient = z.T @ (predicted - y) / len(y) + L2 * np.r_[weights[:-1], 0.0] / len(y)
        weights -= RATE * gradient
        weights[:-1] = np.where(weights[:-1] * signs < 0, 0.0, weights[:-1])
    return Fitted(inputs, mean, scale, weights)


def figures(scores: Matrix, hits: Sequence[LabelledPair], pairs: Sequence[LabelledPair]) -> str:
    listed = scores >= PASSING_BELOW
    wanted = np.array([pair.main for pair in hits])
    right = int(np.sum(listed & wanted))
    main = sum(pair.main for pair in pairs)
    precision = right / max(1, int(np.sum(listed)))
    return (
        f"main-list precision {precision:.2f}, main-list recall {right / max(1, main):.2f} "
        f"({int(np.sum(listed))} of {len(hits)} hits in the main list)"
    )


MODELS = (("without a topic", 4, WITHOUT_TOPIC), ("with a topic", 5, WITH_TOPIC))


@dataclass(frozen=True)
class Data:
    pairs: Sequence[LabelledPair]  # every judged pair
    hits: Sequence[LabelledPair]  # the pairs that are hits
    features: Sequence[RelevanceFeatures]  # of each hit
    inputs: Matrix  # one row per hit, one column per INPUTS
    wanted: Matrix  # 1.0: labelled main


def evaluation_data() -> Data:
    pairs = list(run_evaluation().pairs)
    hits = [pair for pair in pairs if pair.hit is not None and pair.hit.features is not None]
    features = [pair.hit.features for pair in hits if pair.hit and pair.hit.features]
    return Data(
        pairs,
        hits,
        features,
        np.array([[read(f) for _, _, read in INPUTS] for f in features]),
        np.array([float(pair.main) for pair in hits]),
    )


def fitted_models(data: Data | None = None) -> dict[str, Model]:
    """The models fitted on every hit of the evaluation, by name."""
    data = data or evaluation_data()
    return {
        name: fit(data.inputs[:, :inputs], data.wanted, inputs).model()
        for name, inputs, _ in MODELS
    }


def main() -> None:
    data = evaluation_data()
    pairs, hits, y = data.pairs, data.hits, data.wanted
    watchlists = np.array([pair.watchlist for pair in hits])
    heldout = np.array([pair.heldout for pair in hits])
    fitted = fitted_models(data)
    print(f"{len(pairs)} judged pairs, {len(hits)} hits, {int(y.sum())} of them labelled main")
    for title, inputs, in_use in MODELS:
        x = data.inputs[:, :inputs]
        print(f"\nModel {title} ({', '.join(name for name, _, _ in INPUTS[:inputs])}):")
        crossed = np.zeros(len(y))
        for name in sorted(set(watchlists)):
            others = watchlists != name
            crossed[~others] = fit(x[others], y[others], inputs).score(x[~others])
        print(f"  leave one watchlist out: {figures(crossed, hits, pairs)}")
        design = fit(x[~heldout], y[~heldout], inputs)
        heldout_hits = [pair for pair, flag in zip(hits, heldout, strict=True) if flag]
        heldout_pairs = [pair for pair in pairs if pair.heldout]
        print(
            "  design set -> held-out set: "
            + figures(design.score(x[heldout]), heldout_hits, heldout_pairs)
        )
        print(f"  fitted on every hit: {fitted[title]}")
        now = np.array([in_use.score(f) for f in data.features])
        print(f"  the model in use, on every hit (in-sample): {figures(now, hits, pairs)}")


if __name__ == "__main__":
    main()
