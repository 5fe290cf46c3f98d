"""Answer quality on the hand-written gold set of the bundled page, with the real model.

The whole set goes through the same code as the service (``Library.ask``); the thresholds
sit a little below what `python -m qa.tools.eval evals/bundled-page` measures (see README), so a
real regression fails here while run-to-run noise does not.
"""

from __future__ import annotations

import pytest

from qa.config import PROJECT_ROOT
from qa.documents.passages import CONTENT, CREDIT
from qa.tools.eval import evaluate, load_benchmark, select

GOLD = load_benchmark(PROJECT_ROOT / "evals" / "bundled-page")


@pytest.fixture(scope="module")
def hybrid_results(bundled_library) -> dict:
    return evaluate(bundled_library, GOLD.questions, "hybrid", GOLD.unanswerable)


def test_gold_set_has_at_least_40_questions_a_third_in_english():
    english = select(GOLD.questions, {"language": "en"})
    assert len(GOLD.questions) >= 40 and len(english) >= len(GOLD.questions) / 3


def test_hybrid_finds_the_answering_passage_in_the_top_5_and_mostly_first(hybrid_results):
    print(f"\nhybrid on the gold set: {hybrid_results}")
    assert hybrid_results["recall_at_5"] >= 0.96
    assert hybrid_results["recall_at_1"] >= 0.9
    assert hybrid_results["mrr_at_10"] >= 0.92


def test_english_questions_about_the_chinese_page_are_answered(bundled_library):
    results = evaluate(bundled_library, select(GOLD.questions, {"language": "en"}), "hybrid")
    print(f"\nhybrid, English questions: {results}")
    assert results["recall_at_5"] >= 0.93


def test_hybrid_is_not_worse_than_dense_or_lexical_alone(bundled_library, hybrid_results):
    for mode in ("dense", "lexical"):
        alone = evaluate(bundled_library, GOLD.questions, mode)
        assert hybrid_results["recall_at_1"] >= alone["recall_at_1"] - 0.01, mode


def test_questions_the_page_cannot_answer_are_mostly_flagged(hybrid_results):
    assert hybrid_results["no_answer_recall"] >= 0.85
    assert hybrid_results["answerable_kept"] >= 0.8


def test_the_top_highlight_usually_holds_the_answer(hybrid_results):
    # counted over all questions: the top passage must be right and its first highlight hold the answer
    assert hybrid_results["highlight_accuracy"] >= 0.75


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_a_by_line_is_not_the_answer_to_a_question_about_the_people_it_could_list(bundled_library, mode):
    # the reporters' by-line (山西日报记者：郭宁…) was the top answer to this question in dense mode
    answer = bundled_library.ask("Who runs Heshun County?", top_k=3, mode=mode)
    assert answer[0].passage.kind == CONTENT, answer[0].passage.text


def test_a_question_about_the_reporters_still_finds_the_by_line(bundled_library):
    answer = bundled_library.ask("山西日报记者有哪些？", top_k=1)
    assert answer[0].passage.kind == CREDIT
