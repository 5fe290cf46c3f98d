"""Lexical terms: CJK characters and bigrams, words, numbers, script folding."""

from qa.vectors.lexical import (
    lexical_terms,
    match_expression,
    name_terms,
    query_name_terms,
    query_terms,
    query_words,
    split_pinyin,
)


def test_chinese_becomes_words_and_character_bigrams():
    assert lexical_terms("城市治理") == ["城市", "治理", "城市", "市治", "治理"]


def test_latin_words_are_lower_cased_and_decimals_kept_whole():
    assert lexical_terms("Urbanization rose to 67% from 53.1%") == ["urbanization", "rose", "to", "67", "from", "53.1"]


def test_traditional_and_full_width_fold_to_the_same_terms_as_simplified():
    assert lexical_terms("臺灣城鎮化") == lexical_terms("台湾城镇化")
    assert lexical_terms("ＡＢＣ１２３") == lexical_terms("abc123")


def test_question_words_and_stopwords_are_not_searched():
    terms = query_terms("习近平在哪里考察？")
    assert "哪" not in terms and "哪里" not in terms and "考察" in terms
    assert query_terms("What is the capital of France?") == ["capital", "france"]


def test_match_expression_quotes_every_term_within_one_column():
    assert match_expression(['a"b', "城市"]) == 'terms : ("a""b" OR "城市")'
    assert match_expression(["heshun"], "names") == 'names : ("heshun")'
    assert match_expression([]) == ""


def test_pinyin_name_terms_link_english_names_to_chinese_text():
    assert "heshun" in name_terms("和顺县委书记许利伟")
    assert query_name_terms("Who is the party secretary of Heshun County?") == ["heshun"]
    assert query_name_terms("Which community does Li Xiaona work in?") == ["lixiao", "xiaona"]
    assert set(query_name_terms("Li Xiaona")) <= set(name_terms("李肖娜脱口而出"))
    assert query_name_terms("what is the weather like today?") == []


def test_split_pinyin_prefers_fewest_syllables_and_rejects_english():
    assert split_pinyin("Chongqing") == ["chong", "qing"]
    assert split_pinyin("xian") == ["xian"]
    assert split_pinyin("County") is None


def test_query_words_are_whole_words_without_bigrams_function_words_or_question_words():
    assert query_words("山西雲時代技術有限公司的黨委書記是誰？") == ["山西", "云", "时代", "技术", "有限公司", "党委书记"]
    assert query_words("How many people live in the community?") == ["people", "live", "community"]


def test_the_pinyin_syllables_are_every_characters_first_reading():
    # the fast derivation (each distinct reading converted once) against lazy_pinyin on every character
    from pypinyin import lazy_pinyin
    from pypinyin.constants import PINYIN_DICT

    from qa.vectors.lexical import _pinyin_syllables

    slow = {s for code in PINYIN_DICT for s in lazy_pinyin(chr(code)) if s.isascii() and s.isalpha()}
    assert _pinyin_syllables() == {s for s in slow if len(s) > 1 and s not in {"hm", "ng", "hng"}}
    assert {"zhong", "shun", "xiao", "lv"} <= _pinyin_syllables()
