"""Fusion, highlights and confidence: pure functions on hand-made scores."""

import numpy as np
import pytest

from qa.index.passage_index import ChannelScores, moments_from_top
from qa.ranking.confidence import (
    FEATURES,
    UNSTATED_FACTOR,
    confidence_features,
    non_increasing,
    probability,
    unstated_lowered,
)
from qa.ranking.evidence import question_terms
from qa.ranking.fusion import (
    ANSWERING_PART_MARGIN,
    CREDIT_FACTOR,
    PassageEvidence,
    answering_part,
    evidence_score,
    focus,
    fuse,
    rerank,
)
from qa.ranking.highlights import highlight_passages, part_scores, score_sentences, sentence_spans


def test_a_channel_without_evidence_has_no_say_in_the_fused_ranking():
    dense = ChannelScores("dense", {1: 0.90, 2: 0.80, 3: 0.70}, mean=0.70, std=0.05)
    # an English question under BM25 over Chinese text: one passage matched a number, noise
    silent = ChannelScores("lexical", {3: 0.0, 1: 0.0, 2: 0.0}, mean=0.0, std=0.0)
    assert [key for key, _ in fuse([dense, silent])] == [1, 2, 3]


def test_agreeing_evidence_lifts_a_passage_over_a_slightly_better_dense_score():
    dense = ChannelScores("dense", {1: 0.86, 2: 0.85}, mean=0.75, std=0.05)
    lexical = ChannelScores("lexical", {2: 30.0, 1: 1.0}, mean=1.0, std=3.0)
    assert [key for key, _ in fuse([dense, lexical])][0] == 2


def test_fused_score_is_the_weighted_sum_of_z_scores():
    dense = ChannelScores("dense", {7: 0.9}, mean=0.7, std=0.1)
    lexical = ChannelScores("lexical", {7: 12.0}, mean=2.0, std=5.0)
    [(key, score)] = fuse([dense, lexical], weights={"dense": 1.0, "lexical": 0.5})
    assert key == 7 and score == pytest.approx(2.0 + 0.5 * 2.0)


def test_a_lone_keyword_match_in_a_passage_of_the_other_script_cannot_outvote_the_encoders():
    # an English question over Chinese passages: passage 2 shares only the year "2015" with it
    dense = ChannelScores("dense", {1: 0.88, 2: 0.80, 3: 0.79}, mean=0.75, std=0.03)
    lexical = ChannelScores("lexical", {2: 9.0}, mean=0.03, std=0.5)  # z = 18: one match among 300 passages
    first = fuse([dense, lexical])
    assert first[0][0] == 2  # the plain sum of z-scores is fooled
    evidence = {key: PassageEvidence(coverage, same_script=False) for key, coverage in ((1, 0.4), (2, 0.1), (3, 0.0))}
    assert rerank(first, [dense, lexical], evidence)[0][0] == 1


def test_bm25_counts_in_full_for_a_passage_that_holds_most_of_the_question():
    dense = ChannelScores("dense", {1: 0.86, 2: 0.85}, mean=0.75, std=0.05)
    lexical = ChannelScores("lexical", {2: 30.0, 1: 1.0}, mean=1.0, std=3.0)
    evidence = {1: PassageEvidence(0.3, same_script=True), 2: PassageEvidence(0.8, same_script=True)}
    weak = {1: PassageEvidence(0.3, same_script=True), 2: PassageEvidence(0.1, same_script=True)}
    assert evidence_score(2, [dense, lexical], evidence[2]) - evidence_score(2, [dense, lexical], weak[2]) > 3.0
    assert rerank(fuse([dense, lexical]), [dense, lexical], evidence)[0][0] == 2


def test_a_credit_keeps_part_of_its_standing():
    dense = ChannelScores("dense", {1: 0.95, 2: 0.90}, mean=0.75, std=0.05)  # z 4 (a by-line) and 3
    evidence = {1: PassageEvidence(0.0, True, credit=True), 2: PassageEvidence(0.0, True)}
    ranked = rerank(fuse([dense]), [dense], evidence, coverage_weight=0.0)
    assert ranked == [(2, pytest.approx(3.0)), (1, pytest.approx(4.0 * CREDIT_FACTOR))]


def test_focus_puts_the_passage_that_says_it_in_one_sentence_first_and_keeps_the_rest():
    # the same subject in two parts of one article: the first names it everywhere, the second answers
    question = question_terms("麦银汉鱼的体型有什么特点？", None)
    names_it = score_sentences("麦银汉鱼为银汉鱼科的一种。麦银汉鱼分布于澳洲。麦银汉鱼是淡水鱼。", question)
    answers = score_sentences("麦银汉鱼的体型延长而细，体长可达10厘米。", question)
    assert answers.best > names_it.best
    ranked = [(1, 10.0), (2, 9.5), (3, 4.0)]
    refocused = focus(ranked, {1: names_it.best, 2: answers.best})
    assert [key for key, _ in refocused] == [2, 1, 3]
    assert [score for _, score in refocused] == sorted((score for _, score in refocused), reverse=True)
    # a large lead is not overturned by sentence evidence alone
    assert [key for key, _ in focus([(1, 20.0), (2, 9.5)], {1: names_it.best, 2: answers.best})] == [1, 2]
    # only the focused results move
    assert focus(ranked, {}) == ranked


def test_the_part_of_the_first_results_section_that_says_the_asked_thing_takes_its_place():
    # one paragraph cut in two: the first part introduces the studio, the second says what it is good at
    question = question_terms("萤火虫工作室的专长是什么？", None)
    parts = [
        "萤火虫工作室是一家总部设在英国伦敦的电子游戏开发商。1999年8月，西蒙·布雷德伯里等人成立萤火虫工作室，一起开发了很多游戏。",
        "我们要提供一个丰富多彩的游戏环境。我们的专长是在游戏中开发战略，而我们今后要继续发展。",
    ]
    best = part_scores(parts, question, "萤火虫工作室")
    assert best[1] >= best[0] + ANSWERING_PART_MARGIN
    ranked = [(7, 9.0), (3, 6.0), (8, 5.0)]
    # the second part (key 8) takes the first place and score; the rest keep their order
    assert answering_part(ranked, [7, 8], best) == [(8, 9.0), (7, 9.0), (3, 6.0)]
    # a part the ranking did not list joins it at the top
    assert answering_part(ranked, [7, 42], best) == [(42, 9.0), (7, 9.0), (3, 6.0), (8, 5.0)]


@pytest.mark.parametrize(
    ("best", "moved"),
    [((0.5, 0.65), False), ((0.5, 0.7), True), ((0.9, 0.9), False)],  # below the margin; at it; a tie
)
def test_another_part_comes_first_only_by_the_margin(best, moved):
    ranked = [(1, 3.0), (2, 2.0)]
    assert (answering_part(ranked, [1, 2], best)[0][0] == 2) is moved
    # ties go to the earlier part, but never past the first result by less than the margin
    assert answering_part([(2, 3.0), (1, 2.0)], [1, 2], (0.9, 0.9)) == [(2, 3.0), (1, 2.0)]


def test_parts_are_scored_as_one_passage_and_a_sentence_belongs_to_the_part_it_starts_in():
    question = question_terms("广三铁路是哪一年启用的？", None)
    assert list(part_scores(["广三铁路是广东的一条铁路。广三铁路于19", "03年通车。"], question)) == [
        pytest.approx(score_sentences("广三铁路是广东的一条铁路。广三铁路于1903年通车。", question).scores.max()),
        0.0,
    ]


def test_moments_from_top_treat_unlisted_passages_as_zero():
    mean, std = moments_from_top([3.0, 1.0], collection_size=4)
    values = np.array([3.0, 1.0, 0.0, 0.0])
    assert (mean, std) == pytest.approx((values.mean(), values.std()))
    assert moments_from_top([], 10) == (0.0, 0.0)


def test_sentence_spans_trim_whitespace_and_cover_the_sentences():
    text = "第一句话。 第二句话！\n第三句"
    spans = sentence_spans(text)
    assert [text[start:end] for start, end in spans] == ["第一句话。", "第二句话！", "第三句"]


def test_highlight_is_the_sentence_holding_the_question_terms():
    text = "社区是城市治理体系的基本单元。李肖娜所在的社区有7266人。总书记同她交流。"
    question = question_terms("社区有多少人？", None)
    [marks] = highlight_passages([score_sentences(text, question)], question, None, None)
    assert marks[0].text == "李肖娜所在的社区有7266人。"
    assert text[marks[0].start : marks[0].end] == marks[0].text


def test_highlight_uses_the_encoder_when_words_do_not_match():
    text = "甲句。乙句。"
    vectors = {"甲句。": np.array([1.0, 0.0]), "乙句。": np.array([0.0, 1.0])}
    question = question_terms("english", None)
    [marks] = highlight_passages(
        [score_sentences(text, question)],
        question,
        np.array([0.0, 1.0]),
        lambda sentences: np.stack([vectors[s] for s in sentences]),
    )
    assert marks[0].text == "乙句。"


def test_confidence_features_are_collection_independent_and_probability_is_monotonic():
    dense = ChannelScores("dense", {1: 0.88, 2: 0.80, 3: 0.79}, mean=0.75, std=0.03)
    crosslingual = ChannelScores("crosslingual", {1: 0.55, 2: 0.20, 3: 0.18}, mean=0.1, std=0.08)
    rows = confidence_features([(1, 9.0), (2, 3.0), (3, 2.5)], [dense, crosslingual], {1: 0.8, 2: 0.1})
    assert set(rows[0]) == set(FEATURES)
    assert rows[0]["crosslingual_cosine"] == pytest.approx(0.55) and rows[2]["coverage"] == 0.0
    assert rows[0]["dense_margin"] > 0 > rows[1]["dense_margin"]
    weaker = dict(rows[0], crosslingual_cosine=0.1)
    for mode in ("hybrid", "dense"):
        assert 0.0 <= probability(weaker, mode) < probability(rows[0], mode) <= 1.0


def test_a_result_that_states_no_asked_quantity_keeps_a_share_of_its_confidence():
    lowered = unstated_lowered([0.8, 0.6, 0.4], [False, True, True])
    assert lowered == [round(0.8 * UNSTATED_FACTOR, 4), 0.6, 0.4]
    # shown in ranking order, the results below are capped at it: the first result decides "answerable"
    assert non_increasing(lowered) == [0.2, 0.2, 0.2]
    assert unstated_lowered([0.8], [True]) == [0.8]
