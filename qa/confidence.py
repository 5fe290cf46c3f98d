"""Confidence: the probability that a result answers the question, and "no answer" detection.

Raw e5 scores are bunched (right answers and unrelated questions both land near 0.8), so a
threshold on them cannot tell "the page answers this" from "the page is merely the closest
thing we have". The signals that do separate the cases:

- how far the result stands above the whole collection for this query (its fused z-score);
- its margin over the next results (a real answer stands out, noise is a crowd);
- the cross-lingual encoder's raw cosine, which is spread out where e5's is bunched;
- keyword evidence (the lexical z-score) and the agreement of the encoders.

A logistic regression over these features, fitted per retrieval mode by
``benchmarks/fit_confidence.py`` on the dev halves of the gold sets (answerable and
unanswerable questions) and on public-benchmark questions asked of the wrong collection,
turns them into a probability. ``answerable`` is true when the top result's confidence
reaches ``ANSWERABLE_CONFIDENCE``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from qa.fusion import ChannelScores

ANSWERABLE_CONFIDENCE = 0.5
FEATURES = ("fused", "margin", "dense_z", "crosslingual_z", "crosslingual_cosine", "lexical_z", "names_z")

# Fitted by benchmarks/fit_confidence.py (see its output in the README); per mode: intercept, then FEATURES.
COEFFICIENTS: dict[str, tuple[float, ...]] = {
    "hybrid": (-6.0, 0.8, 1.5, 0.0, 0.0, 4.0, 0.0, 0.0),
    "dense": (-6.0, 1.0, 1.5, 0.0, 0.0, 4.0, 0.0, 0.0),
    "lexical": (-4.0, 0.5, 1.0, 0.0, 0.0, 0.0, 0.3, 0.3),
}


def confidence_features(
    ranked: Sequence[tuple[int, float]], channels: Sequence[ChannelScores], context: int = 10
) -> list[dict[str, float]]:
    """The features of each ranked result (``ranked``: (key, fused score), best first)."""
    by_name = {channel.name: channel for channel in channels}
    fused_scores = [score for _, score in ranked[:context]]
    rows = []
    for position, (key, fused) in enumerate(ranked):
        others = [score for index, score in enumerate(fused_scores) if index != position]
        row = {
            "fused": fused,
            "margin": fused - max(others) if others else fused,
            "crosslingual_cosine": by_name["crosslingual"].scores.get(key, 0.0) if "crosslingual" in by_name else 0.0,
        }
        for name in ("dense", "crosslingual", "lexical", "names"):
            row[f"{name}_z"] = by_name[name].standardized(key) if name in by_name else 0.0
        rows.append(row)
    return rows


def probability(features: dict[str, float], mode: str) -> float:
    """The logistic model of ``mode`` applied to one result's features."""
    intercept, *weights = COEFFICIENTS[mode]
    logit = intercept + sum(weight * features[name] for weight, name in zip(weights, FEATURES))
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, logit))))


def result_confidences(
    ranked: Sequence[tuple[int, float]], channels: Sequence[ChannelScores], mode: str
) -> list[float]:
    """Confidence in [0, 1] of each ranked result, rounded for display."""
    return [round(probability(row, mode), 4) for row in confidence_features(ranked, channels)]
