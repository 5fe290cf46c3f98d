"""Lexical terms: CJK characters and bigrams, words, numbers, script folding."""

from qa.lexical import lexical_terms, match_expression, query_terms


def test_chinese_becomes_characters_and_bigrams():
    assert lexical_terms("城市治理") == ["城", "市", "治", "理", "城市", "市治", "治理"]


def test_latin_words_are_lower_cased_and_decimals_kept_whole():
    assert lexical_terms("Urbanization rose to 67% from 53.1%") == ["urbanization", "rose", "to", "67", "from", "53.1"]


def test_traditional_and_full_width_fold_to_the_same_terms_as_simplified():
    assert lexical_terms("臺灣城鎮化") == lexical_terms("台湾城镇化")
    assert lexical_terms("ＡＢＣ１２３") == lexical_terms("abc123")


def test_question_words_and_stopwords_are_not_searched():
    terms = query_terms("习近平在哪里考察？")
    assert "哪" not in terms and "哪里" not in terms and "考察" in terms
    assert query_terms("What is the capital of France?") == ["capital", "france"]


def test_match_expression_quotes_every_term():
    assert match_expression(['a"b', "城市"]) == '"a""b" OR "城市"'
    assert match_expression([]) == ""
