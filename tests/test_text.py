"""Cleaning OCR'd and user text, sentences, and reading a document as paragraphs and headings.

The Chinese snippets are copied from the bundled page (data/shanxi-daily-2025-07-page.txt), an
OCR'd newspaper page; each test pins one rule on the kind of damage that page really has.
"""

from __future__ import annotations

import time
from itertools import pairwise

import pytest

from qa.documents.text import (
    clean_text,
    clean_text_with_offsets,
    is_credit_line,
    read_blocks,
    read_layout,
    split_sentences,
)

# A paragraph printed in narrow columns: OCR left a space at every column line break. Documents
# that show such lines let the reader measure the column width (about 17 cells here).
COLUMN_PARAGRAPH = (
    "7月7日至8日,习近平总书记亲临 山西考察,对山西工作作出重要讲话重 要指示,并特别强调,必须以永远在路上 "
    "的坚韧和执着推进全面从严治党。我省 广大党员干部一致表示,习近平总书记 的重要讲话重要指示精神为深人推进全 "
    "面从严治党、党风廉政建设和反腐败斗 争指明了前进方向、提供了根本遵循。 要发扬自我革命精神,进一步夯实管党 "
    "治党责任链条,坚持党性党风党纪一起 抓、正风肃纪反腐相贯通,坚决打好反腐 败斗争攻坚战、持久战、总体战,努力营 "
    "造风清气正的政治生态。"
)


def blocks_of(source: str) -> list[tuple[str, bool]]:
    return [(block.text, block.is_heading) for block in read_blocks(source)]


# --- clean_text: whitespace ----------------------------------------------------------------------


def test_spaces_inside_chinese_words_are_removed():
    assert clean_text("习近 平总书记") == "习近平总书记"
    assert clean_text("深人推进全 面从严治党") == "深人推进全面从严治党"
    assert clean_text("7月7日至8日,习近平总书记亲临 山西考察,对山西工作作出重要讲话重 要指示") == (
        "7月7日至8日，习近平总书记亲临山西考察，对山西工作作出重要讲话重要指示"
    )


def test_numbers_stay_attached_to_the_chinese_they_measure():
    assert clean_text("改造提升各类老化管线36 万公里") == "改造提升各类老化管线36万公里"
    assert clean_text("全国共登记不可移动文物76.7 万处") == "全国共登记不可移动文物76.7万处"
    assert clean_text("比率达87.2%; 2013年到2024年") == "比率达87.2%；2013年到2024年"


def test_latin_words_keep_one_space_and_other_whitespace_collapses():
    assert clean_text("Hello,   world!\tIt's  fine.") == "Hello, world! It's fine."
    assert clean_text("使用  Python   编程") == "使用 Python 编程"
    assert clean_text("한국어 문장 입니다") == "한국어 문장 입니다"  # Korean puts spaces between words


def test_line_breaks_are_joined_and_blank_lines_kept():
    assert clean_text("城市治理是推进国家治理体系和治理\n能力现代化的重要内容。") == (
        "城市治理是推进国家治理体系和治理能力现代化的重要内容。"
    )
    assert clean_text("The quick brown fox\njumps over the dog.") == "The quick brown fox jumps over the dog."
    assert clean_text("inter-\nnational trade") == "inter-national trade"
    assert clean_text("第一段。\r\n\r\n第二段。") == "第一段。\n\n第二段。"


# --- clean_text: punctuation ---------------------------------------------------------------------


def test_ascii_punctuation_in_chinese_becomes_full_width():
    assert clean_text('坚守"严"的主基调,做全 面从严治党的坚定践行者') == "坚守“严”的主基调，做全面从严治党的坚定践行者"
    assert clean_text("山西日报记者:郭宁") == "山西日报记者：郭宁"
    assert clean_text("目前城六区常住人口比2014年下降15%;") == "目前城六区常住人口比2014年下降15%；"
    assert clean_text("(上接1版)") == "（上接1版）"
    assert clean_text("城市是否更聪明了?真好!") == "城市是否更聪明了？真好！"


def test_straight_quotes_are_paired_also_when_nested():
    assert clean_text('"租金贵不贵?""不贵,住得很舒服。"') == "“租金贵不贵？”“不贵，住得很舒服。”"
    assert clean_text("\"'双城记'我点的是两组地方,京津双城,成渝双城。\"") == "“‘双城记’我点的是两组地方，京津双城，成渝双城。”"


def test_ellipses_become_the_chinese_six_dot_ellipsis():
    assert clean_text("27座城市国内生产总值超过1万亿元·····创新之城") == "27座城市国内生产总值超过1万亿元……创新之城"
    assert clean_text("城市人均公园绿地面积提高到15.91平方米······") == "城市人均公园绿地面积提高到15.91平方米……"
    assert clean_text("公园加速\"生长\"...") == "公园加速“生长”……"
    assert clean_text("阿卜杜勒·买买提") == "阿卜杜勒·买买提"  # one middle dot separates names


def test_punctuation_in_latin_context_numbers_and_urls_is_left_alone():
    english = "It costs 1,000 yuan at 12:30; really? Yes (maybe)! Wait... \"Fine,\" he said."
    assert clean_text(english) == english
    assert clean_text("从2012年的53.1%提高到2024年的67%") == "从2012年的53.1%提高到2024年的67%"
    assert clean_text("下午3:30开会,共1,500人") == "下午3:30开会，共1,500人"
    assert clean_text("详见https://example.com/a?b=1,c;d,或写信给a.b@example.org。") == (
        "详见https://example.com/a?b=1,c;d，或写信给a.b@example.org。"
    )


def test_full_width_letters_and_digits_fold_to_ascii_but_full_width_punctuation_stays():
    assert clean_text("ＡＢＣ１２３ａｂｃ") == "ABC123abc"
    assert clean_text("第１５版，共３页。") == "第15版，共3页。"


# --- clean_text: robustness ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("", ""),
        ("   \t\n\r\n  ", ""),
        ("!!!???...,,,", "!!!???...,,,"),
        ("习\u200b近\u200d平\ufeff", "习近平"),
        ("a\x00b\x07c\x7fd", "abcd"),
        ("\t缩进\t文字\t", "缩进文字"),
        ("line one\r\nline two\rline three", "line one line two line three"),
        ("\u3000\u3000全角空格\u00a0缩进", "全角空格缩进"),
    ],
)
def test_awkward_input_is_cleaned_safely(raw: str, cleaned: str):
    assert clean_text(raw) == cleaned


SAMPLES = [
    COLUMN_PARAGRAPH,
    '"作为基层纪检监察干部,我们将以',
    "山西日报记者:郭宁 王秀娟 秦洋 王立忠",
    "Dr. Smith paid $1,000 at 12:30 on Jan. 5, e.g. for rent. Then he left... Really? Yes!",
    "Visit 北京 (Beijing) today, OK? 我用微信, and you?",
    "他说:\"I am fine.\"然后走了 'quoted' Xi'an",
    "中文\n\n第二段\n第三行",
    "—— ·· ... … (( )) \"\" ''",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_clean_text_is_idempotent(text: str):
    once = clean_text(text)
    assert clean_text(once) == once


def test_clean_text_is_fast_and_linear_on_long_and_degenerate_lines():
    page_sized = (COLUMN_PARAGRAPH + "\n\n") * 100  # about the size of the bundled page
    best = min(_seconds(clean_text, page_sized) for _ in range(3))
    assert best < 0.05
    for degenerate in ["中" + "," * 100_000, "1." * 50_000, "a" * 100_000, "x@" * 50_000, '"' * 100_000]:
        assert _seconds(clean_text, degenerate) < 2.0


def _seconds(function, argument) -> float:
    started = time.perf_counter()
    function(argument)
    return time.perf_counter() - started


def test_offsets_point_at_the_source_characters():
    source = ' 坚守"严"的主基调,做全 面从严'
    text, offsets = clean_text_with_offsets(source)
    assert len(offsets) == len(text)
    assert [source[offset] for offset in offsets] == list('坚守"严"的主基调,做全面从严')
    text, offsets = clean_text_with_offsets("万亿元·····创新")
    assert text == "万亿元……创新" and offsets[3:5] == [3, 7]


# --- sentences -------------------------------------------------------------------------------


def pieces(text: str) -> list[str]:
    return [text[start:end] for start, end in split_sentences(text)]


def test_chinese_sentences_end_at_full_stops_and_keep_their_closing_quotes():
    text = "“城市不仅要有高度，更要有温度。”习近平总书记深情地说，要践行人民城市理念。"
    assert pieces(text) == ["“城市不仅要有高度，更要有温度。”", "习近平总书记深情地说，要践行人民城市理念。"]


def test_semicolons_question_marks_and_ellipses_end_chinese_sentences():
    text = "目前城六区常住人口比2014年下降15%；城市是否更聪明了？超过1万亿元……创新之城"
    assert pieces(text) == ["目前城六区常住人口比2014年下降15%；", "城市是否更聪明了？", "超过1万亿元……", "创新之城"]


def test_english_sentences_split_at_full_stops_but_not_in_decimals_or_abbreviations():
    text = "The rate rose to 1.5 percent. Prices, e.g. rents, fell. Mr. Smith agreed! Did the U.S. follow? Yes."
    assert pieces(text) == [
        "The rate rose to 1.5 percent. ",
        "Prices, e.g. rents, fell. ",
        "Mr. Smith agreed! ",
        "Did the U.S. follow? ",
        "Yes.",
    ]


def test_a_known_limitation_unlisted_abbreviations_end_a_sentence():
    # "Inc." is not in the short list of abbreviations: a capitalised word after it starts a new
    # sentence. Harmless for passages (a cut there only costs a slightly worse boundary).
    assert pieces("Apple Inc. Announced it.") == ["Apple Inc. ", "Announced it."]


@pytest.mark.parametrize("text", ["", "   ", "abc", "a. b. c.", "。。。", "\n\n\nx", COLUMN_PARAGRAPH, SAMPLES[3]])
def test_sentence_spans_cover_the_text_in_order(text: str):
    spans = split_sentences(text)
    assert "".join(text[start:end] for start, end in spans) == text
    assert all(start < end for start, end in spans)
    assert all(left[1] == right[0] for left, right in pairwise(spans))


# --- read_blocks: broken paragraphs --------------------------------------------------------------


def test_paragraph_cut_at_a_column_break_is_rejoined():
    source = (
        f"{COLUMN_PARAGRAPH}\n\n"
        "省卫生健康委员会机关党委专职副\n\n"
        "书记陈晋峰表示,必须从全面从严治党精准发力,以政治建设为统领,深入学习贯彻习近平总书记重要讲话重要指示精神,"
        '引导党员干部胸怀"国之大者",确保卫健事业始终与党中央部署同频共振;以纪律建设固根基,将严的要求贯穿管党治党全过程,'
        "深化拓展深入贯彻中央八项规定精神学习教育成果,加快推进医药卫生领域廉政建设,为提升服务效能、服务转型发展营造风清气正的政治生态。\n"
    )
    blocks = read_blocks(source)
    assert len(blocks) == 2
    assert blocks[1].text.startswith("省卫生健康委员会机关党委专职副书记陈晋峰表示，必须从全面从严治党精准发力，")
    joined = blocks[1]
    assert source[joined.start : joined.end].startswith("省卫生健康委员会机关党委专职副\n\n书记陈晋峰")
    assert source[joined.start : joined.end].endswith("营造风清气正的政治生态。")


def test_cut_inside_an_open_quote_is_rejoined_and_the_quotes_pair_across_the_cut():
    source = (
        '"作为基层纪检监察干部,我们将以\n\n'
        '最坚决的行动践行领袖殷殷嘱托。"阳泉市矿区纪委副书记、监委副主任高东表示,将立足主责主业,深化集中整治,'
        "一体推进正风肃纪反腐,锲而不舍落实中央八项规定精神,坚持好、巩固好严的基调、严的措施、严的氛围,"
        "以作风建设赋能经济发展。同时用心用情办好民生实事,让群众切实感受到党的温暖和公平正义。"
    )
    [(text, is_heading)] = blocks_of(source)
    assert text.startswith("“作为基层纪检监察干部，我们将以最坚决的行动践行领袖殷殷嘱托。”阳泉市矿区纪委副书记")
    assert not is_heading


def test_long_fragment_ending_mid_word_is_rejoined():
    source = (
        '晋中市人大常委会副主任、和顺县委书记许利伟表示,要牢记领袖嘱托,以"三个从严"管党治党——从严政治建设明方向、'
        '从严压实责任抓落实、从严正风肃纪强担当。把全面从严治党作为"一把手"工程,一体贯通主体责任和监督责任,'
        '一体统筹第一责任人责任和"一岗双责",通\n\n'
        "过县乡村三级责任链条将严的基调、严的措施、严的氛围一贯到底。大力整治群众身边不正之风和腐败问题,"
        '坚决破除形式主义,激励干部担当作为,为中国式现代化"幸福和顺"建设提供坚强保障。'
    )
    [(text, is_heading)] = blocks_of(source)
    assert "“一岗双责”，通过县乡村三级责任链条" in text and not is_heading


def test_a_quote_left_open_by_ocr_does_not_turn_later_quotes_inside_out():
    source = (  # two paragraphs of the page, the second continuing the first in this test
        "李肖娜脱口而出。 听了这几个数字,总书记感触良多: \"社区书记是'小巷总理',管的事特别多, 国家千头万绪的事,"
        "说到底是千家万户的事。社区党组织建好建强了,社区工作就有了主心骨。 在城市考察,习近平总书记经常走进\n\n"
        "果、更清晰的治理思路、更精准的治理体系、更专业的治理队伍、更智慧的治理方式,"
        '城市社区生动阐释着"城市让生活更美好"的真谛。'
    )
    [(text, _)] = blocks_of(source)
    assert "“城市让生活更美好”的真谛" in text


def test_hard_line_breaks_inside_a_paragraph_are_joined():
    # A line of the page, as it would come with its column break as a line break.
    assert blocks_of("城市治理是推进国家治理体系和治理\n能力现代化的重要内容。") == [
        ("城市治理是推进国家治理体系和治理能力现代化的重要内容。", False)
    ]
    assert blocks_of("The results were collected over\ntwo years by the team.") == [
        ("The results were collected over two years by the team.", False)
    ]


def test_english_fragment_continued_in_lower_case_is_rejoined():
    assert blocks_of("The results were collected over\n\ntwo years by the team.") == [
        ("The results were collected over two years by the team.", False)
    ]


def test_one_paragraph_per_line_text_keeps_its_paragraphs():
    assert blocks_of("标题\n第一段的内容。\n第二段的内容。") == [
        ("标题", True),
        ("第一段的内容。", False),
        ("第二段的内容。", False),
    ]


# --- read_blocks: headings -----------------------------------------------------------------------


def test_short_line_without_final_punctuation_before_a_paragraph_is_a_heading():
    source = (
        '坚守"严"的主基调,做全 面从严治党的坚定践行者\n\n'
        "全面从严治党永远在路上,党的自我革命永远在路上。"
    )
    assert blocks_of(source) == [
        ("坚守“严”的主基调，做全面从严治党的坚定践行者", True),
        ("全面从严治党永远在路上，党的自我革命永远在路上。", False),
    ]


def test_heading_wider_than_a_column_line_is_not_mistaken_for_a_cut_line():
    source = (
        f"{COLUMN_PARAGRAPH}\n\n"
        "聚焦作风建设实效,完善常态化长效化制度机制\n\n"
        "党的作风就是党的形象,关系人心向背,决定党和国家事业成败。"
    )
    assert blocks_of(source)[1] == ("聚焦作风建设实效，完善常态化长效化制度机制", True)


def test_line_as_wide_as_a_full_column_line_is_a_cut_not_a_heading():
    source = (
        f"{COLUMN_PARAGRAPH}\n\n"
        "找准在全国大局中的战略定位,跳出\n\n"
        '"一城一地"得失来思考发展路径,是新时代城市工作的重要方法。'
    )
    assert blocks_of(source)[1] == ("找准在全国大局中的战略定位，跳出“一城一地”得失来思考发展路径，是新时代城市工作的重要方法。", False)


def test_lines_ending_in_a_dash_or_quoted_slogans_are_headings():
    source = (
        "推进城市治理创新——\n\n"
        "2018年9月28日,在辽宁考察的习近 平总书记来到抚顺市东华园社区,实地了 解当地采煤沉陷区避险搬迁安置情况。\n\n"
        '"城市管理应该像绣花一样精细"\n\n'
        "天下大事,必作于细。"
    )
    assert blocks_of(source) == [
        ("推进城市治理创新——", True),
        ("2018年9月28日，在辽宁考察的习近平总书记来到抚顺市东华园社区，实地了解当地采煤沉陷区避险搬迁安置情况。", False),
        ("“城市管理应该像绣花一样精细”", True),
        ("天下大事，必作于细。", False),
    ]


def test_quoted_sentence_in_a_paragraph_is_not_a_heading():
    source = (
        '"城市是现代化的重要载体"。习近平总书记深刻阐明城市对以中国式现代化全面推进强国建设、民族复兴伟业的重要意义。\n\n'
        "中国式现代化是人口规模巨大的现代 化,我国14亿多人口整体迈进现代化社会。"
    )
    assert [is_heading for _, is_heading in blocks_of(source)] == [False, False]


def test_title_kicker_and_banner_are_headings_and_the_byline_stays_a_paragraph():
    source = (
        "\n\n习近平总书记考察山西重要讲话重要指示激励鼓舞全省党员干部——\n\n"
        "坚持党性党风党纪一起抓 努力营造风清气正政治生态\n\n"
        f"{COLUMN_PARAGRAPH}\n\n"
        "山西日报记者:郭宁 王秀娟 秦洋 王立忠 姚毅 安晓奕 杨文俊 闫书敏 李志江 郭玉琴 王天晓 裴云锋\n\n"
        "牢记嘱托 感恩奋进 顽强拼搏 真抓实干\n\n"
        "(上接1版)\n\n"
        '北京率先确定人口总量上限、生态控制线、城市开发边界"三条红线",在优化功能的基础上,人口得到合理疏解,'
        "目前城六区常住人口比2014年下降15%;\n"
    )
    assert blocks_of(source) == [
        ("习近平总书记考察山西重要讲话重要指示激励鼓舞全省党员干部——", True),
        ("坚持党性党风党纪一起抓努力营造风清气正政治生态", True),
        (clean_text(COLUMN_PARAGRAPH), False),
        ("山西日报记者：郭宁王秀娟秦洋王立忠姚毅安晓奕杨文俊闫书敏李志江郭玉琴王天晓裴云锋", False),
        ("牢记嘱托感恩奋进顽强拼搏真抓实干", True),
        ("北京率先确定人口总量上限、生态控制线、城市开发边界“三条红线”，在优化功能的基础上，人口得到合理疏解，目前城六区常住人口比2014年下降15%；", False),
    ]
    assert [source[d.start : d.end] for d in read_layout(source).dropped] == ["(上接1版)"]


def test_english_and_markdown_headings():
    source = "# Introduction\nThis is the first paragraph.\n\nMethods\n\nWe measured it.\n\n- a list item\n- another"
    assert blocks_of(source) == [
        ("Introduction", True),
        ("This is the first paragraph.", False),
        ("Methods", True),
        ("We measured it.", False),
        ("- a list item", False),
        ("- another", False),
    ]


# --- read_blocks: garbled lines ---------------------------------------------------------------

# Paragraphs of the page that a garbled line below repeats pieces of.
PAGE_EXCERPT = [
    "中国式现代化是人口规模巨大的现代 化,我国14亿多人口整体迈进现代化社会, 规模超过现有发达国家人口的总和,艰巨 性和复杂性前所未有,发展途径和推进方",
    "式也必然具有自己的特点。 2013年12月,习近平总书记在中央城",
    "走出一条中国特色城市发展道路 由,推进城镇化是解决 一份地图放在手边,叮嘱各地\"自觉打破自 加强基础设施建设,提出开展城市地 国家千头万绪的",
    (
        "镇化工作会议上指出,推进城镇化是解决农业、农村、农民问题的重要途径,是推动区域协调发展的有力支撑,"
        "是扩大内需和促进产业升级的重要抓手,对全面建成小康社会、加快推进社会主义现代化具有重大现实意义和深远历史意义。"
    ),
    (
        "习近平总书记结合改革开放以来我国城镇化实践探索的经验,立足\"人民日益增长的美好生活需要和不平衡不充分的发展之间的矛盾\","
        "明确提出\"走出一条中国特色城市发展道路\"。"
    ),
    (
        "到地方考察时,习近平总书记常会将 一份地图放任手边,叮嘱各地\"自觉打破自家'一亩三分地'的思维定式,"
        "抱成团朝着顶层设计的目标一起做\"。"
    ),
    (
        "加强基础设施建设,提出开展城市地下综合管廊建设试点,加快海绵城市建设; 完善生命通道系统,"
        "部署加强城市防灾避难所建设,增强抵御自然灾害、处置突发事件和危机管理能力……"
    ),
    (
        "李肖娜脱口而出。 听了这几个数字,总书记感触良多: \"社区书记是'小巷总理',管的事特别多, 国家千头万绪的事,"
        "说到底是千家万户的事。社区党组织建好建强了,社区工作就有了主心骨。"
    ),
]


def test_line_read_across_columns_is_dropped_and_the_paragraph_around_it_rejoined():
    source = "\n\n".join(PAGE_EXCERPT)
    layout = read_layout(source)
    texts = [block.text for block in layout.blocks]
    assert not any("由，推进城镇化是解决" in text for text in texts)
    assert "发展途径和推进方式也必然具有自己的特点。2013年12月，习近平总书记在中央城镇化工作会议上指出，推进城镇化是解决" in texts[0]
    assert texts[0].endswith("具有重大现实意义和深远历史意义。")
    assert [source[d.start : d.end] for d in layout.dropped] == [PAGE_EXCERPT[2]]


def test_line_that_looks_garbled_but_repeats_nothing_is_kept():
    source = "\n\n".join(PAGE_EXCERPT[:2] + PAGE_EXCERPT[3:4])
    layout = read_layout(source)
    assert layout.dropped == []
    assert "规模超过现有发达国家人口的总和" in layout.blocks[0].text


def test_short_pieces_re_read_from_a_neighbouring_paragraph_are_dropped():
    source = (
        f"{COLUMN_PARAGRAPH}\n\n"
        '"总的来看,我国经济发展的空间结构 正在发生深刻变化,中心城市和城市群正 在成为承载发展要素的主要空间形式。我 '
        '们必须适应新形势,谋划区域协调发展新 思路。"习近平总书记对城市工作深谋远 虑、把脉开方。\n\n'
        "巴脉升方。 到地方考察时,习近平总书记常会将 一份地图放任手边,叮嘱各地\"自觉打破自家'一亩三分地'的思维定式,"
        "抱成团朝着顶层设计的目标一起做\"。\n\n"
        "书记叮嘱,干好有用的事,少做无用功,需要上下各方面共同努力。 更贴心的服务项目、更优质的服务效 里面清晰的治理用数 面精准的治理体\n\n"
        "果、更清晰的治理思路、更精准的治理体系、更专业的治理队伍、更智慧的治理方式,城市社区生动阐释着\"城市让生活更美好\"的真谛。"
    )
    layout = read_layout(source)
    texts = [block.text for block in layout.blocks]
    assert texts[2].startswith("到地方考察时")
    assert "更优质的服务效果、更清晰的治理思路、更精准的治理体系" in texts[3]
    assert [source[d.start : d.end] for d in layout.dropped] == ["巴脉升方。", "里面清晰的治理用数", "面精准的治理体"]


# --- read_blocks: robustness and spans ------------------------------------------------------------


@pytest.mark.parametrize("source", ["", "   \n\n\t", "\u200b\n\u200b"])
def test_empty_documents_have_no_blocks(source: str):
    assert read_blocks(source) == []


def test_windows_line_ends_tabs_and_odd_characters_are_read_like_plain_text():
    source = "标题\r\n\r\n第一段\t内容,\x07很长。\r\n\r\n\ufeff第二段。"
    assert blocks_of(source) == [("标题", True), ("第一段内容，很长。", False), ("第二段。", False)]


def test_block_spans_are_in_order_and_start_on_the_blocks_first_source_character():
    source = (
        f"  \n{COLUMN_PARAGRAPH}\n\n\"作为基层纪检监察干部,我们将以\n\n"
        '最坚决的行动践行领袖殷殷嘱托。"阳泉市矿区纪委副书记、监委副主任高东表示,将立足主责主业,深化集中整治,'
        "一体推进正风肃纪反腐,锲而不舍落实中央八项规定精神,坚持好、巩固好严的基调、严的措施、严的氛围,"
        "以作风建设赋能经济发展。同时用心用情办好民生实事,让群众切实感受到党的温暖和公平正义。 \n"
    )
    blocks = read_blocks(source)
    assert [source[block.start : block.end][:3] for block in blocks] == ["7月7", '"作为']
    assert all(left.end <= right.start for left, right in pairwise(blocks))
    assert source[blocks[-1].start : blocks[-1].end].endswith("公平正义。")


# --- credits -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "山西日报记者:郭宁 王秀娟 秦洋 王立忠 姚毅 安晓奕 杨文俊 闫书敏 李志江 郭玉琴 王天晓 裴云锋",  # the page's by-line
        "（记者 王五）",
        "本报记者 张三 通讯员 李四",
        "责任编辑：张三 校对：李四",
        "（新华社记者 李贺 摄）",
        "新华社北京7月13日电",
        "By Jane Doe, Staff Writer",
        "Photo: Reuters",
        "Reporting by Jane Doe; editing by John Smith",
    ],
)
def test_by_lines_photo_and_editor_credits_and_datelines_are_credits(line):
    assert is_credit_line(clean_text(line))


@pytest.mark.parametrize(
    "line",
    [
        "晋中市人大常委会副主任、和顺县委书记许利伟表示,要牢记领袖嘱托。",  # names an official: content
        "记者从省住建局获悉,全省将改造老旧小区四百余个。",
        "By the end of 2024, the city had renovated 300 compounds.",
        "Sources say the mayor resigned.",
        "习近平总书记强调:\"城市的核心是\"",
    ],
)
def test_sentences_that_mention_reporters_or_start_with_by_are_content(line):
    assert not is_credit_line(clean_text(line))
