"""Confidence: the probability that a result answers the question, and "no answer" detection.

Raw e5 scores are bunched (right answers and unrelated questions both land near 0.8), so a
threshold on them cannot tell "the page answers this" from "the page is merely the closest
thing we have". The signals that do separate the cases,
measured on the gold sets (median for answerable vs unanswerable questions about the page):

- the cross-lingual encoder's raw cosine, spread out where e5's is bunched (0.43 vs 0.14);
- the share of the question's terms (weighted by rarity) that the passage contains;
- a romanised name of the question found in the passage;
- the result's margin over the other top results under each encoder, in standard
  deviations (a real answer stands out, noise is a crowd: 3.5 vs 0.5).

Scores that depend on the collection's size and make-up (BM25, fused z-sums) are left out:
a model fitted on them did not transfer from the public sets to the newspaper page.

A logistic regression over these features, fitted per retrieval mode by
``benchmarks/fit_confidence.py`` on the dev halves of the gold sets (answerable and
unanswerable questions) and on public-benchmark questions asked of the wrong collection,
turns them into a probability. ``answerable`` is true when one of the first
``ANSWERABLE_DEPTH`` results reaches ``ANSWERABLE_CONFIDENCE``.

None of those features can tell a passage about the right thing from one that says what was asked:
"高君宇故居纪念馆每年接待多少游客？" found the memorial hall's passage at 0.82, and it states no number
of visitors. Where a question asks for a quantity of a recognised kind (people, money, a length, an
area, a percentage, a count: qa.ranking.answer_type.Quantity), a result keeps ``UNSTATED_FACTOR``
of its probability unless one of its sentences states one and holds a whole word of the question, and the
passage names one of the names the quantity is asked of, where the question names any (qa.ranking.names:
"上海的常住人口是多少？" is not answered by the population of Beijing's central districts). Likewise a
Chinese question asking who holds an office (qa.ranking.answer_type.asked_office: "和顺县县长是谁？") is not
answered by a passage that never names that office ("和顺县委书记许利伟").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from qa.index.passage_index import ChannelScores

# "answerable" when one of the first ANSWERABLE_DEPTH results reaches this confidence, per mode; chosen
# on the gold set's dev split as the highest threshold that keeps at least 0.95 of the Chinese and
# 0.85 of the English answerable questions flagged answerable, with one English question to spare in
# hybrid mode (its dev group is 15 questions: 0.35 met 0.85 by exactly one, and the test split fell to
# 0.80); benchmarks/fit_confidence.py prints the rates at each threshold
ANSWERABLE_CONFIDENCE: dict[str, float] = {"hybrid": 0.3, "dense": 0.25, "lexical": 0.25}
ANSWERABLE_DEPTH = 3
# The share of its confidence a result keeps when it does not state what the question asks for (a quantity, an
# office's holder). Measured for quantities
# with every question of the five sets (README, "Confidence"): 0.25 refused 7 more of the page's 72 unanswerable
# questions and flagged 2 of 2,000 + 2,000 + 720 + 717 answerable public ones fewer; 0.5 refused none more (the
# near-domain questions' passages stand at 0.7-1.0).
UNSTATED_FACTOR = 0.25
FEATURES = (
    "crosslingual_cosine",
    "dense_cosine",
    "coverage",
    "name_match",
    "dense_margin",
    "crosslingual_margin",
    "fused_margin",
)

# Fitted by benchmarks/fit_confidence.py (see its output in the README); per mode: intercept, then FEATURES.
COEFFICIENTS: dict[str, tuple[float, ...]] = {
    "hybrid": (-8.5981, 6.3826, 5.4394, 4.8365, 0.2504, 0.7017, 0.1484, 0.0024),
    "dense": (-7.9381, 6.0813, 4.7534, 5.0363, 0.0000, 0.8506, 0.2329, -0.1661),
    "lexical": (-3.9013, 0.0000, 0.0000, 8.5026, 0.3400, 0.0000, 0.0000, 0.2112),
}


def confidence_features(
    ranked: Sequence[tuple[int, float]],
    channels: Sequence[ChannelScores],
    coverage: Mapping[int, float],
    context: int = 10,
) -> list[dict[str, float]]:
    """The features of each ranked result (``ranked``: (key, fused score), best first).

    Every feature means the same thing in any collection (raw cosines, the share of the
    question's terms present, margins in standard deviations of one encoder), so a model
    fitted on some collections transfers to a user's documents.
    """
    by_name = {channel.name: channel for channel in channels}
    keys = [key for key, _ in ranked[:context]]
    fused = dict(ranked[:context])

    def margin(name: str, key: int) -> float:
        if name not in by_name:
            return 0.0
        channel = by_name[name]
        others = [channel.standardized(other) for other in keys if other != key]
        return channel.standardized(key) - max(others) if others else 0.0

    def raw(name: str, key: int) -> float:
        return by_name[name].scores.get(key, 0.0) if name in by_name else 0.0

    def fused_margin(key: int, score: float) -> float:
        others = [other for other_key, other in fused.items() if other_key != key]
        return score - max(others) if others else 0.0

    rows = []
    for key, score in ranked:
        rows.append(
            {
                "crosslingual_cosine": raw("crosslingual", key),
                "dense_cosine": raw("dense", key),
                "coverage": coverage.get(key, 0.0),
                "name_match": float(raw("names", key) > 0),
                "dense_margin": margin("dense", key),
                "crosslingual_margin": margin("crosslingual", key),
                "fused_margin": fused_margin(key, score),
            }
        )
    return rows


def probability(features: Mapping[str, float], mode: str) -> float:
    """The logistic model of ``mode`` applied to one result's features."""
    intercept, *weights = COEFFICIENTS[mode]
    logit = intercept + sum(weight * features[name] for weight, name in zip(weights, FEATURES))
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, logit))))


def result_confidences(
    ranked: Sequence[tuple[int, float]],
    channels: Sequence[ChannelScores],
    coverage: Mapping[int, float],
    mode: str,
) -> list[float]:
    """Confidence in [0, 1] of each ranked result, rounded for display."""
    return [round(probability(row, mode), 4) for row in confidence_features(ranked, channels, coverage)]


def unstated_lowered(confidences: Sequence[float], stated: Sequence[bool]) -> list[float]:
    """Confidences with those of results that do not state what was asked (``stated`` False: no quantity of the
    asked kind, of what was asked; not the office whose holder is asked for) lowered to ``UNSTATED_FACTOR`` of
    themselves."""
    return [
        confidence if states else round(confidence * UNSTATED_FACTOR, 4)
        for confidence, states in zip(confidences, stated)
    ]


def non_increasing(confidences: Sequence[float]) -> list[float]:
    """Confidences in ranking order, each capped at the one above it.

    Results are ordered by the fused ranking, which puts the right passage first more often than
    ordering by confidence does (measured by benchmarks/fit_confidence.py: see README); a result
    ranked below another is then never shown as more likely to answer than it.
    """
    capped: list[float] = []
    for confidence in confidences:
        capped.append(min(confidence, capped[-1]) if capped else confidence)
    return capped
