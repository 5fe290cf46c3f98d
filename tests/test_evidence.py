"""Term evidence across languages: the CC-CEDICT dictionary and the coverage it gives passages."""

from __future__ import annotations

import pytest

from qa.documents.text import CJK, LATIN, writing_script
from qa.ranking.evidence import passage_forms, question_terms, term_evidence
from qa.vectors.dictionary import Dictionary, english_stems, gloss_words, load_dictionary

PANTHERS_ZH = "黑豹队的防守只丢了308分，在联赛中排名第六，同时也以24次拦截领先国家橄榄球联盟（NFL）。"
PANTHERS_EN = "The Panthers defense gave up just 308 points, ranking sixth in the league."
TESLA_ZH = "1900年，特斯拉获得了“电能传输系统”和“电力发射器”专利。"
WEATHER_ZH = "今年七月太原的降雨量比往年多了三成，气象部门发布了暴雨预警。"


@pytest.fixture(scope="module")
def dictionary() -> Dictionary:
    return load_dictionary()


def test_the_shipped_cc_cedict_translates_both_ways(dictionary):
    assert "专利" in dictionary.chinese(english_stems(["patents"])[0])
    assert "特斯拉" in dictionary.chinese("tesla")
    assert "豹" in dictionary.chinese(english_stems(["panthers"])[0])
    assert {"defend", "protect"} <= dictionary.english("防守")


def test_only_short_glosses_are_translations():
    table = Dictionary.from_entries([("例", "/example/(slang) a thing that people in a group often point at/")])
    assert table.english("例") == frozenset({"exampl"})
    assert table.chinese("point") == frozenset()
    assert gloss_words("to defend (against sth)") == ["defend"]


def test_writing_script_follows_most_letters():
    assert writing_script(PANTHERS_ZH) == CJK  # NFL inside does not make it Latin
    assert writing_script(PANTHERS_EN) == LATIN
    assert writing_script("Who is 许利伟?") == LATIN


def test_an_english_question_covers_the_chinese_passage_that_answers_it_through_translations(dictionary):
    question = question_terms("How many points did the Panthers defense give up?", dictionary)
    coverage = term_evidence(question, {1: passage_forms(PANTHERS_ZH), 2: passage_forms(WEATHER_ZH)})
    assert coverage[1] > 0.15 and coverage[2] == 0.0


def test_a_chinese_question_covers_the_english_passage_that_answers_it(dictionary):
    question = question_terms("黑豹队的防守丢了多少分？", dictionary)
    coverage = term_evidence(question, {1: passage_forms(PANTHERS_EN), 2: passage_forms("Tesla filed patents.")})
    assert coverage[1] > 0.15 and coverage[2] == 0.0


def test_without_the_dictionary_only_script_neutral_terms_cross_over():
    question = question_terms("When did Tesla receive the patent in 1900?", None)
    coverage = term_evidence(question, {1: passage_forms(TESLA_ZH), 2: passage_forms(WEATHER_ZH)})
    assert 0.0 < coverage[1] < 0.3 and coverage[2] == 0.0  # only "1900" is found


def test_same_script_passages_are_judged_on_all_the_questions_terms(dictionary):
    question = question_terms("特斯拉哪一年获得了电力发射器专利？", dictionary)
    coverage = term_evidence(question, {1: passage_forms(TESLA_ZH), 2: passage_forms(WEATHER_ZH)})
    assert coverage[1] > 0.6 and coverage[2] < 0.2
