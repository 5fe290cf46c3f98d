"""Fusing retrieval channels into one ranking: pure functions over candidate scores.

A channel is one way of scoring passages: ``dense`` (the sentence-transformers model),
``crosslingual`` (USE-m), ``lexical`` (BM25 over words and character bigrams) and
``names`` (BM25 over the pinyin of names, for Latin-script questions).

Raw scores are not comparable across channels (cosines bunched near 0.8, BM25 unbounded),
so each is standardised against the whole collection: how many standard deviations a
passage stands above the average passage *for this query*. A channel with no evidence
for a query gives every passage about the same score, hence z-scores near zero for all and
no say in the ranking; that is what naive reciprocal-rank fusion lacks.

Four stages, because what a keyword match is worth depends on the question and the passage, and a
long paragraph is cut into parts:

1. ``fuse``: the weighted sum of z-scores over every candidate.
2. ``rerank``: the best ``RERANKED`` of the first stage are scored again with what only their
   text can tell (``PassageEvidence``, ``evidence_score``): the share of the question's terms each
   contains in its own script, through a bilingual dictionary when the question is in another
   script (qa.ranking.evidence), is added, and decides what the keyword channels may contribute.
   A keyword channel that matched one rare token in one passage (a year, an acronym, a Latin
   word inside Chinese text) gives it a z-score near the square root of the collection's size
   (17 among 300 passages): it outvoted both encoders and cost English questions about Chinese
   text 7 points of Recall@1. In a mixed collection, Chinese passages sharing a common word
   with a Chinese question about an English passage did the same. So BM25 counts in proportion
   to the share of the question a passage holds, and is capped across scripts. Credits (by-lines,
   photo credits), which name the people and places a question asks about without saying
   anything about them, keep half their standing above the collection's average.
3. ``focus``: the first ``FOCUSED`` are ordered again with the score of their best sentence
   (qa.ranking.highlights: the question's words one sentence holds, and the kind of answer asked
   for) added. A passage that says what was asked in one sentence beats one that scatters the
   question's words, or names the subject everywhere and the asked-for thing nowhere: English
   questions about Chinese text gained 1.5 points of Recall@1 (xquad-en2zh-dev), and no set lost.
4. ``answering_part``: a long paragraph is cut into parts, and the part that names the subject often
   comes first while the next one says the asked thing ("萤火虫工作室的专长是什么？" finds the part
   introducing the studio, not "我们的专长是在游戏中开发战略…"). The first result's neighbours in its section (at most
   ``ANSWERING_PART_REACH`` parts away) are read as one passage; the part holding the best sentence
   takes the first place when that sentence beats the first result's best by ``ANSWERING_PART_MARGIN``.
   Only where the question and the first result share a script: across scripts, dictionary
   translations are too weak to choose a part (xquad-zh2en-dev lost a third of its answering first
   passages to it).

Weights were chosen on the benchmarks (see README, "Answer quality").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from qa.index.passage_index import ChannelScores

CHANNEL_WEIGHTS: dict[str, float] = {"dense": 1.0, "crosslingual": 0.5, "lexical": 0.4, "names": 0.3}
KEYWORD_CHANNELS = ("lexical", "names")
# The most standard deviations a keyword match across scripts may claim for a passage (the
# encoders' best passage typically stands 3-6 above the collection): a word or number in a passage
# of the other script is one token of the question.
CROSS_SCRIPT_Z_CAP = 3.0
# The same for the pinyin of a name, which always crosses scripts but is a whole name found: 5 on the
# page's dev split (R@1 0.925 -> 0.95; "Who is the party secretary of Heshun County?" finds 和顺县委书记
# first again), unchanged on xquad-en2zh-dev (8 cost it 0.003).
NAMES_Z_CAP = 5.0
# BM25 counts in full for a passage holding at least this share of the question's terms (by
# rarity), and in proportion below: a passage sharing one common word with the question ranks
# high under BM25 in a big collection, but says little about answering it.
FULL_MATCH_COVERAGE = 0.5
# Weight of term evidence (coverage in [0, 1]), in the same standard-deviation units.
COVERAGE_WEIGHT = 4.0
# A credit keeps this share of its standing above the collection's average: a by-line that an
# encoder finds "similar" to a question about the people it lists drops below the content that
# answers it, while a question about the by-line itself still finds it first.
CREDIT_FACTOR = 0.5
# How many first-stage results are scored again with their text's evidence.
RERANKED = 30
# How many second-stage results are ordered again with their best sentence, and its weight (in the same
# standard-deviation units). Measured on the five sets (README, "Answer quality"): 2.5 gained Recall@1 on
# xquad-en2zh-dev (0.860 -> 0.875) and drcd (0.959 -> 0.961) with no set's Recall@5 lower; 2 gained
# 0.003 more on en2zh but cost one drcd question its top 5, and from 6 up the cross-lingual sets lost.
# The first 10 decide: ordering all 30 again gave the same results at three times the cost.
FOCUSED = 10
SENTENCE_WEIGHT = 2.5
# The fourth stage reads this many parts either side of the first result, and another part must hold a
# sentence scoring this much more (a fifth of the question's weighted words). 0.2 is the smallest margin, in
# steps of 0.05, that moves no part on the bundled page (at 0 and 0.15 it moved the page's right passage away:
# Recall@1 0.975 -> 0.8875, 0.9625); cmrc2018-dev then gains 0.831 -> 0.854 of right first results whose first
# highlight holds the answer (README, "How it works").
ANSWERING_PART_REACH = 2
ANSWERING_PART_MARGIN = 0.2
MODE_CHANNELS: dict[str, tuple[str, ...]] = {
    "hybrid": ("dense", "crosslingual", "lexical", "names"),
    "dense": ("dense", "crosslingual"),
    "lexical": ("lexical", "names"),
}
MODES = tuple(MODE_CHANNELS)


def fuse(
    channels: Sequence[ChannelScores], weights: Mapping[str, float] = CHANNEL_WEIGHTS
) -> list[tuple[int, float]]:
    """First stage: (key, weighted sum of z-scores) for every candidate of any channel, best first."""
    candidates = {key for channel in channels for key in channel.scores}
    fused = {
        key: sum(weights.get(channel.name, 1.0) * channel.standardized(key) for channel in channels)
        for key in candidates
    }
    return _best_first(fused.items())


@dataclass(frozen=True)
class PassageEvidence:
    """What a passage's own text says about a question (see qa.ranking.evidence)."""

    coverage: float  # share of the question's terms it contains, in its own script, in [0, 1]
    same_script: bool  # written in the question's script
    credit: bool = False  # a by-line, photo or editor credit, or a dateline


def evidence_score(
    key: int,
    channels: Sequence[ChannelScores],
    evidence: PassageEvidence,
    weights: Mapping[str, float] = CHANNEL_WEIGHTS,
    coverage_weight: float = COVERAGE_WEIGHT,
) -> float:
    """Second stage: a passage's score with what each channel may contribute decided by its evidence.

    The encoders count as in the first stage. BM25 counts in proportion to the share of the
    question the passage holds (up to ``FULL_MATCH_COVERAGE``) and is capped across scripts; the
    pinyin-name channel is capped (higher); the coverage itself is added; a credit's standing is shrunk.
    With ``coverage_weight`` 0 (the single-family modes: ``dense``, ``lexical``) only the credit
    prior applies: keyword evidence is judged against the encoders only where both are fused.
    """
    score = 0.0
    for channel in channels:
        standing = channel.standardized(key)
        if coverage_weight and channel.name == "names":
            standing = min(standing, NAMES_Z_CAP)
        elif coverage_weight and channel.name == "lexical" and not evidence.same_script:
            standing = min(standing, CROSS_SCRIPT_Z_CAP)
        if coverage_weight and channel.name == "lexical":
            standing *= min(1.0, evidence.coverage / FULL_MATCH_COVERAGE)
        score += weights.get(channel.name, 1.0) * standing
    score += coverage_weight * evidence.coverage
    return min(score, score * CREDIT_FACTOR) if evidence.credit else score


def rerank(
    ranked: Sequence[tuple[int, float]],
    channels: Sequence[ChannelScores],
    evidence: Mapping[int, PassageEvidence],
    weights: Mapping[str, float] = CHANNEL_WEIGHTS,
    coverage_weight: float = COVERAGE_WEIGHT,
) -> list[tuple[int, float]]:
    """The passages of the first-stage ranking that have ``evidence``, scored again, best first,
    then the others in their first-stage order (scores are comparable within each part only)."""
    rescored = [
        (key, evidence_score(key, channels, evidence[key], weights, coverage_weight))
        for key, _ in ranked
        if key in evidence
    ]
    return _best_first(rescored) + [(key, score) for key, score in ranked if key not in evidence]


def focus(
    ranked: Sequence[tuple[int, float]], best_sentence: Mapping[int, float], weight: float = SENTENCE_WEIGHT
) -> list[tuple[int, float]]:
    """Third stage: the results with a ``best_sentence`` score (the first ``FOCUSED`` of the second
    stage) get ``weight`` times it added and are ordered again; the rest follow unchanged (adding
    a score of at least 0 keeps every focused result's score at or above theirs)."""
    focused = [(key, score + weight * best_sentence[key]) for key, score in ranked if key in best_sentence]
    return _best_first(focused) + [(key, score) for key, score in ranked if key not in best_sentence]


def _best_first(scored: Iterable[tuple[int, float]]) -> list[tuple[int, float]]:
    return sorted(scored, key=lambda item: (-item[1], item[0]))


def answering_part(
    ranked: Sequence[tuple[int, float]], parts: Sequence[int], best: Sequence[float],
    margin: float = ANSWERING_PART_MARGIN,
) -> list[tuple[int, float]]:
    """Fourth stage: ``parts`` are the keys of the first result's neighbours in reading order, itself among
    them, and ``best`` their best sentence scores read as one passage (qa.ranking.highlights.part_scores).
    The part holding the best sentence (the earliest on a tie) takes the first place and the first
    result's score when it beats the first result's best by ``margin``; the others keep their order."""
    first_key, first_score = ranked[0]
    mine = list(parts).index(first_key)
    chosen = max(range(len(parts)), key=lambda index: (best[index], -index))
    if chosen == mine or best[chosen] < best[mine] + margin:
        return list(ranked)
    key = parts[chosen]
    return [(key, first_score)] + [(other, score) for other, score in ranked if other != key]
