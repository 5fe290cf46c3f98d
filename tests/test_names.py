"""The names a question asks a quantity of, and whether a passage names them (qa.ranking.names)."""

import pytest

from qa.ranking.evidence import question_terms
from qa.ranking.names import names_any, question_names
from qa.vectors.dictionary import Dictionary, load_dictionary


@pytest.fixture(scope="module")
def dictionary() -> Dictionary:
    return load_dictionary()


def written(question: str, dictionary: Dictionary | None) -> list[str]:
    return [name.written for name in question_names(question, dictionary)]


def test_the_names_of_a_question(dictionary):
    assert written("上海的常住人口是多少？", dictionary) == ["上海"]
    assert written("山西省2024年的地区生产总值是多少？", dictionary) == ["山西省"]
    # jieba's person tag is left out: it fires on common words (古建筑)
    assert written("三坊七巷一共有多少处明清古建筑？", dictionary) == ["三坊七巷"]
    assert written("社区有多少人？", dictionary) == []
    # English: capitalised words, not the question's first word nor function words
    assert written("How many people live in Chengdu?", dictionary) == ["chengdu"]
    assert written("What was the urbanization rate of Shanxi Province in 2024?", dictionary) == ["shanxi", "province"]
    assert written("How many people work there?", dictionary) == []


@pytest.mark.parametrize(
    ("question", "text", "named"),
    [
        # same script, as written or without the place's suffix
        ("上海的常住人口是多少？", "上海常住人口2487万人。", True),
        ("上海的常住人口是多少？", "北京城六区常住人口比2014年下降15%。", False),
        ("山西省2024年的地区生产总值是多少？", "2024年，山西地区生产总值2.5万亿元。", True),
        ("山西省2024年的地区生产总值是多少？", "2024年，27座城市国内生产总值超过1万亿元。", False),
        ("How many people live in Chengdu?", "About 21 million people live in Chengdu.", True),
        ("How many people live in Chengdu?", "The community has 7,266 residents.", False),
        # across scripts: an English name read as pinyin, or translated by the dictionary
        ("How many people live in Chengdu?", "成都常住人口2140万人。", True),
        ("How many people live in Chengdu?", "社区有7266人，由5个居民小区组成。", False),
        ("How many people live in Kenya?", "肯尼亚人口约5000万。", True),
        # a Chinese place in an English passage: its pinyin, or a translation
        ("山西省的人口是多少？", "Shanxi has a population of 34 million.", True),
        ("香港的人口是多少？", "Hong Kong has a population of 7.5 million.", True),
        ("山西省的人口是多少？", "Sichuan has a population of 83 million.", False),
        # one name is enough: the passage may have said the others before
        ("How many people live in the community in Lianyungang that Li Xiaona works for?", "李肖娜所在的社区有7266人。", True),
        # no names: nothing to look for
        ("社区有多少人？", "社区有7266人。", True),
    ],
)
def test_a_passage_names_the_question_s_names(dictionary, question, text, named):
    assert names_any(question_names(question, dictionary), text) is named


def test_a_passage_s_heading_counts_as_its_words(dictionary):
    names = question_names("香港嬰兒的性別比例大約是？", dictionary)
    text = "2011年，活產男嬰51,286人，女嬰44,165人，性別比例為約1,161。"
    assert not names_any(names, text)
    assert names_any(names, text, "香港的人口結構")


def test_an_acronym_is_looked_for_as_written(dictionary):
    # CC-CEDICT translates AAA as batteries; the passage says 美国汽车协会
    names = question_names("According to the AAA, what percentage of gas stations ran out of gasoline?", dictionary)
    assert [name.written for name in names] == ["aaa"]
    assert names_any(names, "美国汽车协会报告称，20%的美国加油站没有汽油。")
    # an English name written as it is in a Chinese passage
    apollo = question_names("How many astronauts did Apollo 11 carry?", dictionary)
    assert names_any(apollo, "Apollo 11号载有3名宇航员。")
    assert names_any(apollo, "阿波罗11号载有3名宇航员。")
    assert not names_any(apollo, "神舟五号载有1名宇航员。")


def test_names_are_looked_for_only_when_a_quantity_is_asked(dictionary):
    assert question_terms("上海的常住人口是多少？", dictionary).names != ()
    assert question_terms("上海在哪里？", dictionary).names == ()
