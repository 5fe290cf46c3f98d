"""Cutting documents into passages: sizes, sections, titles, stable ids, source spans.

Chinese snippets are copied from the bundled page; one test runs on the whole page file.
"""

from __future__ import annotations

import hashlib
import re
from itertools import pairwise
from pathlib import Path

import pytest

from qa.documents.passages import CONTENT, CREDIT, DEFAULT_MAX_CHARS, DEFAULT_MIN_CHARS, Passage, split_document
from qa.documents.text import clean_text

PAGE = Path(__file__).resolve().parent.parent / "data" / "shanxi-daily-2025-07-page.txt"

LIST_PARAGRAPH = (
    "党的十八大以来,我国不断健全推进新型城镇化体制机制:\n\n"
    "深化户籍制度改革,放开放宽除个别超大城市外的落户限制,2014年以来超1.5亿农业转移人口平稳有序进城落户;\n\n"
    "农业转移人口市民化制度基本建立,城镇基本公共服务覆盖范围扩大,农民工参加城镇职工基本医疗和养老保险的比例提高,"
    "90%以上义务教育阶段随迁子女在流入地公办学校就读或享受政府购买学位服务;\n\n"
    "加快城乡一体化进程,建立11个国家城乡融合发展试验区,城乡一体的基本公共服务提供机制逐步建立,"
    "城乡居民收入差距持续缩小,更好发挥县城连接城市、带动乡村作用,120个县城开展补短板强弱项建设示范。"
)


def texts(passages: list[Passage]) -> list[str]:
    return [passage.text for passage in passages]


# --- sizes ------------------------------------------------------------------------------------


def test_paragraph_that_fits_is_one_passage():
    source = "城市治理是推进国家治理体系和治理 能力现代化的重要内容。从衣食住行、教 育就业、医疗养老,到文化体育、生活环境、 社会秩序,方方面面都体现着城市管理水 平和服务质量。"
    assert texts(split_document(source, "doc")) == [clean_text(source)]


def test_long_paragraph_is_split_at_sentence_ends_into_passages_of_similar_size():
    passages = split_document(LIST_PARAGRAPH, "doc", max_chars=120)
    lengths = [len(text) for text in texts(passages)]
    assert len(passages) == 3 and max(lengths) <= 120
    assert all(text.endswith(("；", "。")) for text in texts(passages))
    assert "".join(texts(passages)) == clean_text(LIST_PARAGRAPH.replace("\n\n", ""))  # nothing lost


def test_sentence_longer_than_max_chars_is_cut_at_commas():
    sentence = (
        "2014年2月,习近平总书记在北京考察工作时强调,要健全城市管理体制,提高城市管理水平,"
        "尤其要加强市政设施运行管理、交通管理、环境管理、应急管理,推进城市管理目标、方法、模式现代化。"
    )
    passages = split_document(sentence, "doc", max_chars=40, min_chars=10)
    assert all(len(text) <= 40 for text in texts(passages))
    assert all(text.endswith(("，", "。", "、")) for text in texts(passages))
    assert "".join(texts(passages)) == clean_text(sentence)


def test_sentence_without_commas_is_cut_hard_as_a_last_resort():
    passages = split_document("深" * 250 + "。", "doc", max_chars=100, min_chars=10)
    assert [len(text) for text in texts(passages)] == [84, 84, 83]


def test_tiny_paragraph_is_merged_into_a_neighbour_of_the_same_section():
    source = (
        "推进城市高质量发展,破解问题是发力方向。\n\n"
        '首都北京,曾因人口稠密、交通拥堵、空气污染,饱受"大城市病"困扰。\n\n'
        "2014年2月,习近平总书记在北京考察工作时强调,要健全城市管理体制,提高城市管理水平。"
    )
    passages = split_document(source, "doc")
    assert all(len(text) >= DEFAULT_MIN_CHARS for text in texts(passages))
    assert texts(passages)[0] == "推进城市高质量发展，破解问题是发力方向。\n首都北京，曾因人口稠密、交通拥堵、空气污染，饱受“大城市病”困扰。"


def test_tiny_paragraph_is_not_merged_across_a_heading():
    source = (
        "推进城市治理创新——\n\n"
        "各地以城市规划为引领,积极探索符合自身特点的发展策略。\n\n"
        '"城市是现代化的重要载体"\n\n'
        "党的二十大报告提出,从现在起,中国共产党的中心任务就是团结带领全国各族人民全面建成社会主义现代化强国。"
    )
    passages = split_document(source, "doc", min_chars=40)
    assert [(p.heading, len(p.text)) for p in passages] == [
        ("推进城市治理创新——", 27),  # alone in its section: unavoidably short
        ("“城市是现代化的重要载体”", 51),
    ]


def test_english_text_is_split_at_sentence_ends_not_in_decimals_or_abbreviations():
    source = (
        "Urbanisation rose from 53.1% to 67% in twelve years. Cities such as Beijing, e.g. its core districts, "
        "capped their population. The share of green space rose to 43.4 percent. Mr. Smith, a planner, "
        "called it a model. Other cities followed."
    )
    passages = split_document(source, "doc", max_chars=100, min_chars=20)
    assert all(len(text) <= 100 for text in texts(passages))
    assert all(text.endswith(".") for text in texts(passages))
    assert " ".join(texts(passages)) == source
    assert not any(text.endswith(("53.", "e.g.", "Mr.")) for text in texts(passages))


# --- sections, title, ids, spans --------------------------------------------------------------

SECTIONED = (
    "\n习近平总书记考察山西重要讲话重要指示激励鼓舞全省党员干部——\n\n"
    "坚持党性党风党纪一起抓 努力营造风清气正政治生态\n\n"
    "全面从严治党永远在路上,党的自我革命永远在路上。必须时刻绷紧自我革命这根弦,在提高认识、增强党性、"
    "规范权力运行、从严监督执纪、履行管党治党责任等方面进一步落实到位,切实把严的氛围营造起来、把正的风气树立起来。\n\n"
    "发扬自我革命精神,进一 步夯实管党治党责任链条\n\n"
    "勇于自我革命,是中国共产党最鲜明的品格和最大的优势,是我们党百年奋斗历史经验的重要内容,必须倍加珍惜、长期坚持,"
    "并在新时代实践中不断丰富和发展。\n"
)


def test_headings_are_metadata_of_the_passages_under_them_not_passages():
    passages = split_document(SECTIONED, "doc")
    assert [p.heading for p in passages] == ["坚持党性党风党纪一起抓努力营造风清气正政治生态", "发扬自我革命精神，进一步夯实管党治党责任链条"]
    assert not any("责任链条" in text and "勇于" not in text for text in texts(passages))
    assert [p.position for p in passages] == [0, 1]


def test_text_before_the_first_heading_has_no_heading():
    passages = split_document("前言没有标题，但是有足够多的文字构成一个完整的段落，可以单独成为一个片段。\n\n标题\n\n正文内容也足够长，完全可以单独成为一个片段，不必与别的合并。", "doc")
    assert [p.heading for p in passages] == [None, "标题"]


def test_title_is_the_first_heading_at_the_top_else_the_document_id():
    assert {p.document_title for p in split_document(SECTIONED, "doc")} == {"习近平总书记考察山西重要讲话重要指示激励鼓舞全省党员干部——"}
    assert {p.document_title for p in split_document("\ufeff" + SECTIONED, "doc")} == {"习近平总书记考察山西重要讲话重要指示激励鼓舞全省党员干部——"}
    assert {p.document_title for p in split_document(SECTIONED, "doc", "我的标题")} == {"我的标题"}
    without_heading = "这是一段没有标题的文字，它足够长，可以成为一个独立的片段，不需要任何合并。"
    assert {p.document_title for p in split_document(without_heading, "notes.txt")} == {"notes.txt"}


def test_ids_are_content_digests_unaffected_by_edits_elsewhere():
    passages = split_document(SECTIONED, "doc")
    digest = hashlib.sha256(passages[0].text.encode("utf-8")).hexdigest()[:12]
    assert passages[0].id == f"doc:{digest}"
    edited = split_document(SECTIONED.replace("勇于自我革命", "敢于自我革命"), "doc")
    assert edited[0].id == passages[0].id and edited[1].id != passages[1].id


def test_repeated_identical_passages_get_numbered_ids():
    paragraph = "全面从严治党永远在路上,党的自我革命永远在路上。必须时刻绷紧自我革命这根弦。"
    passages = split_document(f"{paragraph}\n\n{paragraph}\n\n{paragraph}", "doc", min_chars=10)
    digest = passages[0].id.split(":")[1]
    assert [p.id for p in passages] == [f"doc:{digest}", f"doc:{digest}-2", f"doc:{digest}-3"]


def test_span_covers_exactly_the_source_region_of_a_rejoined_passage():
    source = (
        "\n\n省卫生健康委员会机关党委专职副\n\n"
        "书记陈晋峰表示,必须从全面从严治党精准发力,以政治建设为统领,深入学习贯彻习近平总书记重要讲话重要指示精神。\n\n"
        '"作为基层纪检监察干部,我们将以\n\n'
        '最坚决的行动践行领袖殷殷嘱托。"阳泉市矿区纪委副书记、监委副主任高东表示,将立足主责主业,深化集中整治。\n'
    )
    passages = split_document(source, "doc")
    regions = [source[p.start : p.end] for p in passages]
    assert regions[-1].startswith('"作为基层纪检监察干部,我们将以\n\n最坚决')
    assert regions[-1].endswith("深化集中整治。")
    for passage, region in zip(passages, regions, strict=True):
        assert clean_text(region).startswith(passage.text[:5]) and clean_text(region).endswith(passage.text[-5:])


def test_span_of_a_passage_cut_inside_a_paragraph_is_the_part_it_came_from():
    passages = split_document(LIST_PARAGRAPH, "doc", max_chars=120)
    for passage in passages:
        assert clean_text(LIST_PARAGRAPH[passage.start : passage.end]).replace("\n", "") == passage.text
    assert all(left.end <= right.start for left, right in pairwise(passages))


# --- robustness -----------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["", "   \n\n  ", "\u200b", "\r\n\r\n"])
def test_empty_documents_have_no_passages(source: str):
    assert split_document(source, "doc") == []


@pytest.mark.parametrize(
    "source",
    ["!!!???...", "a", "x" * 10_000, "中 " * 20_000, "a, " * 20_000, "line\r\n" * 1000, "标题\t\x07内容\u200b。"],
)
def test_awkward_documents_give_bounded_passages_that_lose_no_text(source: str):
    passages = split_document(source, "doc")
    assert passages and all(len(text) <= DEFAULT_MAX_CHARS for text in texts(passages))
    assert re.sub(r"\s", "", "".join(texts(passages))) == re.sub(r"\s", "", clean_text(source))


def test_invalid_sizes_are_rejected():
    with pytest.raises(ValueError):
        split_document("文字。", "doc", max_chars=0)
    with pytest.raises(ValueError):
        split_document("文字。", "doc", max_chars=50, min_chars=60)


# --- the bundled page -------------------------------------------------------------------------


def test_bundled_page_passages():
    source = PAGE.read_text(encoding="utf-8")
    passages = split_document(source, "page")
    again = split_document(source, "page")
    section_sizes = {p.heading: sum(q.heading == p.heading for q in passages) for p in passages}

    assert 50 <= len(passages) <= 120
    assert all(len(p.text) <= DEFAULT_MAX_CHARS for p in passages)
    assert all(len(p.text) >= DEFAULT_MIN_CHARS or section_sizes[p.heading] == 1 for p in passages)
    [chen] = [p for p in passages if "陈晋峰" in p.text]
    assert "省卫生健康委员会机关党委专职副书记陈晋峰表示" in chen.text
    assert chen.heading == "坚守“严”的主基调，做全面从严治党的坚定践行者"
    assert all(text.count("习近") == text.count("习近平") for text in texts(passages))
    headings = {p.heading for p in passages} | {passages[0].document_title}
    assert not set(texts(passages)) & headings
    assert passages[0].document_title == "习近平总书记考察山西重要讲话重要指示激励鼓舞全省党员干部——"
    assert len({p.id for p in passages}) == len(passages)
    assert [p.id for p in again] == [p.id for p in passages]
    assert all(0 <= p.start < p.end <= len(source) for p in passages)
    assert all(left.end <= right.start for left, right in pairwise(passages))
    assert [p.position for p in passages] == list(range(len(passages)))
    assert not any("由，推进城镇化是解决" in text or "巴脉升方" in text for text in texts(passages))


# --- kinds ------------------------------------------------------------------------------------


def test_the_pages_by_line_is_its_own_credit_passage_and_everything_else_content():
    passages = split_document(PAGE.read_text(encoding="utf-8"), "page")
    credits = [passage for passage in passages if passage.kind == CREDIT]
    assert [passage.text[:7] for passage in credits] == ["山西日报记者："]
    assert all(passage.kind == CONTENT for passage in passages if passage not in credits)


def test_a_short_credit_is_not_merged_into_the_content_beside_it():
    source = (
        "太原市今年启动老旧小区改造三年行动，计划改造小区四百余个，同步加装电梯、增设停车位和充电桩。\n\n"
        "（记者 王五）\n\n"
        "市住建局负责人表示，改造坚持先民生后提升，优先解决排水管网老化、屋顶漏雨等问题。\n"
    )
    passages = split_document(source, "doc")
    assert [(passage.kind, passage.text) for passage in passages][1] == (CREDIT, "（记者王五）")
    assert [passage.kind for passage in passages] == [CONTENT, CREDIT, CONTENT]
