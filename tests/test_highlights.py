"""The answering sentence (qa.ranking.highlights) and the kind of answer asked for (qa.ranking.answer_type).

Each case is a shape of passage where the sentence naming the question's subject most often is not
the one that answers (measured on cmrc2018-dev, see README "Answer quality").
"""

import re

import numpy as np
import pytest

from qa.ranking import highlights
from qa.ranking.answer_type import NUMBER, TIME, asked_type, offers
from qa.ranking.evidence import question_terms
from qa.ranking.highlights import highlight_passages, phrases, score_sentences


def first_highlight(question: str, text: str) -> str:
    terms = question_terms(question, None)
    [marks] = highlight_passages([score_sentences(text, terms)], terms, None, None)
    return marks[0].text


def test_a_sentence_quoting_a_latin_name_in_a_chinese_passage_is_read_as_chinese():
    # more Latin letters than Chinese ones: read on its own it was "English", and held none of the question's words
    text = "莱昂德罗·内托是一名巴西人。莱昂德罗·内托（Leandro Netto de Macedo），职业是足球运动员。"
    assert first_highlight("莱昂德罗·内托的职业是什么？", text) == "莱昂德罗·内托（Leandro Netto de Macedo），职业是足球运动员。"


def test_a_name_cut_into_many_words_counts_once():
    # jieba cuts the company's name into five words; counted one by one they outweighed "党委书记" and "董事长"
    text = "作为省属国企，山西云时代技术有限公司始终强化党建引领。公司党委书记、董事长阳军表示，要坚守政治本色。"
    question = "山西雲時代技術有限公司的黨委書記、董事長是誰？"  # traditional characters, folded like the text
    assert first_highlight(question, text) == "公司党委书记、董事长阳军表示，要坚守政治本色。"
    assert phrases(["山西", "云", "时代", "技术", "有限公司", "董事长"], [text]) == ["山西云时代技术有限公司", "董事长"]


def test_a_sentence_opening_with_a_pronoun_or_ben_speaks_of_the_subject(monkeypatch):
    text = "银纹笛鲷，又称紫红笛鲷，俗名红槽，为辐鳍鱼纲鲈形目的其中一个种。本鱼体延长而侧扁，呈长椭圆形。"
    question = "银纹笛鲷的体型是什么形状？"
    assert first_highlight(question, text) == "本鱼体延长而侧扁，呈长椭圆形。"
    monkeypatch.setattr(highlights, "_REFERS_BACK", re.compile("(?!)"))  # without it, the naming sentence wins
    assert first_highlight(question, text) != "本鱼体延长而侧扁，呈长椭圆形。"


@pytest.mark.parametrize(
    ("question", "title", "text", "answer"),
    [
        (
            "《白之春》的主演是谁？",
            "白之春",
            "《白之春》（日文：白い春）是由关西电视台从2009年4月14日开始播出的日本电视剧。由阿部宽与大桥望美主演。",
            "由阿部宽与大桥望美主演。",
        ),
        ("生濑胜久有什么兴趣爱好？", "生濑胜久", "生濑胜久（），日本男演员。出身于兵库县西宫市。兴趣是钓鱼。", "兴趣是钓鱼。"),
    ],
)
def test_every_sentence_speaks_of_the_documents_title(question, title, text, answer):
    # the sentence naming the drama (or the actor) held the question's rarest word; the title says it for all
    terms = question_terms(question, None)
    alone, titled = score_sentences(text, terms), score_sentences(text, terms, title)
    [[without]], [[with_title]] = (highlight_passages([s], terms, None, None, limit=1) for s in (alone, titled))
    assert without.text != answer
    assert with_title.text == answer
    # a quantity or an office must still be stated next to the sentence's own words, not the title's
    assert titled.named.tolist() == alone.named.tolist()


def test_a_word_found_only_in_part_earns_part_of_its_weight():
    text = "麦银汉鱼为银汉鱼目的一种。它的鳞片细小，呈银色。本鱼体延长而细，呈亚圆柱型。"
    assert first_highlight("麦银汉鱼的体型有什么特点？", text) == "本鱼体延长而细，呈亚圆柱型。"


def test_a_question_asking_for_a_year_prefers_the_sentence_that_holds_one():
    text = "广三铁路是广东的一条铁路，连接广州与三水。广三铁路于1903年通车，全长49公里。"
    assert first_highlight("广三铁路是哪一年启用的？", text) == "广三铁路于1903年通车，全长49公里。"


def test_a_question_asking_for_a_quantity_prefers_the_sentence_stating_one_of_its_kind():
    # both sentences hold a number and the question's words; only the second states a number of people
    assert first_highlight("社区有多少居民？", "社区居民在2023年搬进新楼。社区居民共有7266人。") == "社区居民共有7266人。"
    text = "The renovation began in 2019. It cost $12 million."
    assert first_highlight("How much money did the renovation cost?", text) == "It cost $12 million."


def test_the_asked_quantity_must_be_stated_where_the_question_is_spoken_of():
    question = question_terms("上海的常住人口是多少？", None)
    assert score_sentences("上海是超大城市。上海常住人口2487万人。", question).answers_in_one_sentence
    # a number of people in a sentence about something else
    assert not score_sentences("上海是超大城市。社区有7266人。", question).answers_in_one_sentence


def test_a_quotation_and_the_sentence_saying_who_spoke_it_are_one_highlight():
    # the newspaper's way: the quotation, then a short sentence restating the question's words; apart,
    # the restating sentence won and the highlight missed the answer
    text = (
        "澳门，回归之初面积仅20多平方公里，经济结构长期“一业独大”。"
        "“积极主动参与粤港澳大湾区建设，整合优质资源，深化协同发展。”2024年12月，习近平总书记在视察澳门时指明方向。"
    )
    assert first_highlight("2024年底总书记到澳门时，给澳门指了什么发展方向？", text) == (
        "“积极主动参与粤港澳大湾区建设，整合优质资源，深化协同发展。”2024年12月，习近平总书记在视察澳门时指明方向。"
    )
    sentences = lambda text: [text[start:end] for start, end in highlights.sentence_spans(text)]  # noqa: E731
    # only a sentence that is one quotation and nothing else joins, and only a short attribution after it
    assert sentences("他说“要实干”。记者表示赞同。") == ["他说“要实干”。", "记者表示赞同。"]
    assert sentences("“要实干。”会后大家散去。") == ["“要实干。”", "会后大家散去。"]
    long_attribution = "习近平总书记" + "在考察时" * 10 + "指出。"
    assert sentences("“要实干。”" + long_attribution) == ["“要实干。”", long_attribution]
    assert sentences("「要實幹。」他強調。") == ["「要實幹。」他強調。"]


def test_same_language_questions_embed_no_sentences_and_other_scripts_do():
    calls: list[list[str]] = []

    def embed(sentences: list[str]) -> np.ndarray:
        calls.append(sentences)
        return np.tile([1.0, 0.0], (len(sentences), 1))

    def highlight(question: str, text: str) -> None:
        terms = question_terms(question, None)
        highlight_passages([score_sentences(text, terms)], terms, np.array([1.0, 0.0]), embed)

    text = "社区是城市治理体系的基本单元。李肖娜所在的社区有7266人。"
    highlight("社区有多少人？", text)
    assert calls == []
    highlight("How many people live in the community?", text)
    assert calls == [["社区是城市治理体系的基本单元。", "李肖娜所在的社区有7266人。"]]
    # a passage holding none of the question's words falls back on the encoder too
    highlight("社区有多少人？", "甲句。乙句。")
    assert calls[-1] == ["甲句。", "乙句。"]


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("广三铁路在哪年建成？", TIME),
        ("三元桥站是什么时候投入使用的？", TIME),
        ("When was the Hangzhou City Brain first launched?", TIME),
        ("In what year did he die?", TIME),
        ("社区有多少人？", NUMBER),
        ("过海隧道巴士935线现时使用几辆巴士？", NUMBER),
        ("How many people live in the community?", NUMBER),
        ("What role did Xi ask Shenzhen to take on when he set the positioning?", None),  # "when" that asks nothing
        ("When Xi spoke about the 'tale of two cities', which two city pairs did he have in mind?", None),
        ("总书记希望外来人员能够实现哪几点？", None),
        ("王若琳的父亲是谁？", None),
    ],
)
def test_asked_type(question, kind):
    assert asked_type(question) == kind


def test_offers():
    assert offers(TIME, "广三铁路于1903年筑成。") and offers(TIME, "二〇〇五年正式宣布灭绝。")
    assert offers(TIME, "He died in March.") and not offers(TIME, "全长49公里。")
    assert offers(NUMBER, "全长49公里。") and offers(NUMBER, "结果，关岛得七分。") and not offers(NUMBER, "本鱼体延长而细。")
    assert not offers(None, "1903年")


def test_at_most_max_run_words_are_joined_so_a_long_text_stays_cheap():
    # unbounded, a 2,000-character text given to /api/similar took 4 s to highlight 10 passages
    words = [f"w{index}" for index in range(20)]
    assert phrases(words, ["".join(words)]) == ["".join(words[0:8]), "".join(words[8:16]), "".join(words[16:])]
