"""Fusing retrieval channels into one ranking: pure functions over candidate scores.

A channel is one way of scoring passages: ``dense`` (the sentence-transformers model),
``crosslingual`` (USE-m), ``lexical`` (BM25 over words and character bigrams) and
``names`` (BM25 over the pinyin of names, for Latin-script questions).

Raw scores are not comparable across channels (cosines bunched near 0.8, BM25 unbounded),
so each is standardised against the whole collection: how many standard deviations a
passage stands above the average passage *for this query*. A channel with no evidence
for a query gives every passage about the same score, hence z-scores near zero for all and
no say in the ranking; that is what naive reciprocal-rank fusion lacks.

Two stages, because what a keyword match is worth depends on the question and the passage:

1. ``fuse``: the weighted sum of z-scores over every candidate, with the keyword channels'
   z-scores capped. A keyword channel that matched one rare token in one passage (a year, an
   acronym, a Latin word inside Chinese text) gives that passage a z-score near the square root
   of the collection's size (17 among 300 passages), which outvoted both encoders and cost
   English questions about Chinese text 7 points of Recall@1. Capped, a keyword match can
   confirm what the encoders found but not overrule them on its own.
2. ``rerank``: the best ``RERANKED`` of the first stage are scored again with what only their
   text can tell (``PassageEvidence``): the share of the question's terms each contains in its
   own script, through a bilingual dictionary when the question is in another script
   (qa.ranking.evidence), and a prior against credits (by-lines, photo credits) that name the
   people and places a question asks about without saying anything about them: their standing
   above the collection's average is halved.

Weights were chosen on the benchmarks (see README, "Answer quality").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from qa.index.passage_index import ChannelScores

CHANNEL_WEIGHTS: dict[str, float] = {"dense": 1.0, "crosslingual": 0.5, "lexical": 0.4, "names": 0.3}
KEYWORD_CHANNELS = ("lexical", "names")
# The most standard deviations a keyword channel may claim for a passage (the encoders' best
# passage typically stands 3-6 above the collection).
KEYWORD_Z_CAP = 3.0
# Weight of term evidence (coverage in [0, 1]), in the same standard-deviation units.
COVERAGE_WEIGHT = 4.0
# A credit keeps this share of its standing above the collection's average: a by-line that an
# encoder finds "similar" to a question about the people it lists drops below the content that
# answers it, while a question about the by-line itself still finds it first.
CREDIT_FACTOR = 0.5
# How many first-stage results are scored again with their text's evidence.
RERANKED = 30
MODE_CHANNELS: dict[str, tuple[str, ...]] = {
    "hybrid": ("dense", "crosslingual", "lexical", "names"),
    "dense": ("dense", "crosslingual"),
    "lexical": ("lexical", "names"),
}
MODES = tuple(MODE_CHANNELS)


def channel_contribution(channel: ChannelScores, key: int, weights: Mapping[str, float] = CHANNEL_WEIGHTS) -> float:
    """What one channel adds to a passage's fused score: its weighted z-score, capped for keyword channels."""
    score = channel.standardized(key)
    if channel.name in KEYWORD_CHANNELS:
        score = min(score, KEYWORD_Z_CAP)
    return weights.get(channel.name, 1.0) * score


def fuse(
    channels: Sequence[ChannelScores], weights: Mapping[str, float] = CHANNEL_WEIGHTS
) -> list[tuple[int, float]]:
    """(key, fused score) for every candidate of any channel, best first; ties broken by key."""
    candidates = {key for channel in channels for key in channel.scores}
    fused = {key: sum(channel_contribution(channel, key, weights) for channel in channels) for key in candidates}
    return _best_first(fused.items())


@dataclass(frozen=True)
class PassageEvidence:
    """What a passage's own text says about a question (see qa.ranking.evidence)."""

    coverage: float  # share of the question's terms it contains, in its own script, in [0, 1]
    credit: bool = False  # a by-line, photo or editor credit, or a dateline


def rerank(
    ranked: Sequence[tuple[int, float]],
    evidence: Mapping[int, PassageEvidence],
    coverage_weight: float = COVERAGE_WEIGHT,
) -> list[tuple[int, float]]:
    """The first-stage ranking with each passage in ``evidence`` scored again, best first.

    Passages without evidence keep their score; only the first stage's best are expected to have
    some, and the coverage bonus never lowers a score, so the others stay below them unless a
    credit drops among them.
    """
    rescored = []
    for key, score in ranked:
        found = evidence.get(key)
        if found is not None:
            score += coverage_weight * found.coverage
            if found.credit:
                score = min(score, score * CREDIT_FACTOR)
        rescored.append((key, score))
    return _best_first(rescored)


def _best_first(scored: Iterable[tuple[int, float]]) -> list[tuple[int, float]]:
    return sorted(scored, key=lambda item: (-item[1], item[0]))
