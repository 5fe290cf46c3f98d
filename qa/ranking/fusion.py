"""Fusing retrieval channels into one ranking: pure functions over candidate scores.

A channel is one way of scoring passages: ``dense`` (the sentence-transformers model),
``crosslingual`` (USE-m), ``lexical`` (BM25 over words and character bigrams) and
``names`` (BM25 over the pinyin of names, for Latin-script questions).

Raw scores are not comparable across channels (cosines bunched near 0.8, BM25 unbounded),
so each is standardised against the whole collection: how many standard deviations a
passage stands above the average passage *for this query*. A channel with no evidence
for a query (an English question under BM25 over Chinese text) gives every passage about
the same score, hence z-scores near zero for all and no say in the ranking; that is
what naive reciprocal-rank fusion lacks (it rewards rank 1 of a channel that matched only
noise). The weighted sum of z-scores is the fused score. Weights were chosen on the dev
halves of the benchmarks (see README, "Answer quality").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from qa.index.passage_index import ChannelScores

CHANNEL_WEIGHTS: dict[str, float] = {"dense": 1.0, "crosslingual": 0.5, "lexical": 0.4, "names": 0.3}
MODE_CHANNELS: dict[str, tuple[str, ...]] = {
    "hybrid": ("dense", "crosslingual", "lexical", "names"),
    "dense": ("dense", "crosslingual"),
    "lexical": ("lexical", "names"),
}
MODES = tuple(MODE_CHANNELS)


def fuse(
    channels: Sequence[ChannelScores], weights: Mapping[str, float] = CHANNEL_WEIGHTS
) -> list[tuple[int, float]]:
    """(key, fused score) for every candidate of any channel, best first; ties broken by key."""
    candidates = {key for channel in channels for key in channel.scores}
    fused = {
        key: sum(weights.get(channel.name, 1.0) * channel.standardized(key) for channel in channels)
        for key in candidates
    }
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))
