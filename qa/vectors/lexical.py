"""Lexical terms: what keyword search (BM25 in SQLite FTS5) indexes and looks up.

Chinese has no spaces, so CJK runs become jieba words plus character bigrams: the words
carry the meaning (measured on cmrc2018-dev: words 0.971 Recall@1, characters + bigrams
0.933), the bigrams catch what the dictionary splits badly (OCR fragments, names). Other
scripts become lower-cased words and numbers. Traditional characters are folded to
simplified first, so a question in either script finds a passage in the other.

A second field, ``names``, holds the pinyin of adjacent Chinese characters (``和顺`` →
``heshun``): English questions write Chinese names and places in pinyin ("Heshun County",
"Li Xiaona"), which neither BM25 over characters nor a small multilingual encoder can match.
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache

from qa.documents.text import to_simplified

# Bump when the terms of a text change: stored terms are then recomputed (no re-embedding).
LEXICAL_VERSION = "jieba+bigrams/t2s/pinyin-bigrams/2"

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af"
# CJK runs, numbers (decimals kept whole), and runs of other letters: "2024年" is "2024" + "年"
_TOKEN = re.compile(rf"[{_CJK}]+|\d+(?:\.\d+)*|[^\W\d_{_CJK}]+", re.UNICODE)
_CJK_RUN = re.compile(rf"[{_CJK}]+")

# Words that carry the question's form, not its content: matching them finds noise.
QUESTION_WORDS = frozenset(
    "什么 什麼 哪里 哪裡 哪些 哪个 哪個 哪一 哪位 谁 誰 多少 几 幾 吗 嗎 呢 如何 怎么 怎麼 怎样 怎樣 为什么 為什麼 是否"
    " 请问 請問".split()
)
ENGLISH_STOPWORDS = frozenset(
    "a an and are as at be been by did do does for from had has have how in is it its many much of on or that the"
    " this to was were what when where which who whom whose why will with".split()
)
# Chinese function words: they carry grammar, and their dictionary senses ("的" → bull's-eye, taxi)
# would translate into noise.
CHINESE_FUNCTION_WORDS = frozenset(
    "的 了 是 在 和 与 及 也 都 就 而 被 把 对 从 向 于 以 为 之 其 这 那 个 着 过 吗 呢 吧 啊 地 得".split()
)


def fold(text: str) -> str:
    """Compatibility-fold (full-width → ASCII), lower-case and convert traditional to simplified."""
    return to_simplified(unicodedata.normalize("NFKC", text).lower())


@lru_cache(maxsize=1)
def segmenter():
    """jieba, its dictionary loaded once (quietly)."""
    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


def lexical_terms(text: str, bigrams: bool = True) -> list[str]:
    """The terms of a text, with repeats (term frequency matters to BM25); ``bigrams=False``: words only."""
    terms: list[str] = []
    for token in _TOKEN.findall(fold(text)):
        if _CJK_RUN.fullmatch(token):
            terms.extend(segmenter().lcut(token))
            if bigrams:
                terms.extend(token[i : i + 2] for i in range(len(token) - 1))
        else:
            terms.append(token)
    return terms


def _without_question_words(question: str) -> str:
    """The question folded, its question words (什么, 哪里, 多少...) blanked out."""
    folded = fold(question)
    for word in sorted(QUESTION_WORDS, key=len, reverse=True):
        folded = folded.replace(fold(word), " ")
    return folded


def query_terms(question: str) -> list[str]:
    """Distinct content terms of a question: question words and English stopwords removed."""
    seen: dict[str, None] = {}
    for term in lexical_terms(_without_question_words(question)):
        if term not in ENGLISH_STOPWORDS:
            seen.setdefault(term, None)
    return list(seen)


def query_words(question: str) -> list[str]:
    """Distinct content words of a question: ``query_terms`` without the character bigrams and without
    Chinese function words (what a sentence must say to answer, one unit per word: a name jieba cuts
    into three bigrams would otherwise count three times)."""
    seen: dict[str, None] = {}
    for word in lexical_terms(_without_question_words(question), bigrams=False):
        if word not in ENGLISH_STOPWORDS and word not in CHINESE_FUNCTION_WORDS:
            seen.setdefault(word, None)
    return list(seen)


def match_expression(terms: list[str], column: str = "terms") -> str:
    """An FTS5 MATCH expression that ORs the terms within one column, each quoted so no term is read as syntax."""
    if not terms:
        return ""
    return f"{column} : (" + " OR ".join('"' + term.replace('"', '""') + '"' for term in terms) + ")"


@lru_cache(maxsize=1)
def _pinyin_syllables() -> frozenset[str]:
    """Every toneless pinyin syllable of two letters or more (single letters match too much English).

    Each character's first reading is what ``lazy_pinyin`` gives for it alone; converting the ~1,500
    distinct readings once takes 0.03 s, where calling ``lazy_pinyin`` on each of the ~41,000 characters
    took 1.2-1.5 s of every start (tests check that both give the same set)."""
    from pypinyin import Style
    from pypinyin.constants import PINYIN_DICT
    from pypinyin.style import convert

    readings = {value.split(",")[0] for value in PINYIN_DICT.values()}
    syllables = {convert(reading, Style.NORMAL, strict=True) for reading in readings}
    syllables = {s for s in syllables if s.isascii() and s.isalpha()}
    return frozenset(s for s in syllables if len(s) > 1 and s not in {"hm", "ng", "hng"})


def pinyin_bigrams(syllables: list[str]) -> list[str]:
    """Each pair of adjacent syllables, joined: [he, shun, xian] → heshun, shunxian."""
    return [first + second for first, second in zip(syllables, syllables[1:])]


def name_terms(text: str) -> list[str]:
    """Pinyin of each pair of adjacent Chinese characters of a passage: ``和顺县`` → heshun, shunxian."""
    from pypinyin import lazy_pinyin

    terms: list[str] = []
    for run in _CJK_RUN.findall(fold(text)):
        terms += pinyin_bigrams([syllable.lower() for syllable in lazy_pinyin(run)])
    return terms


def split_pinyin(word: str) -> list[str] | None:
    """A romanised word as pinyin syllables (fewest syllables wins), or None if it is not pinyin."""
    word = word.lower()
    syllables = _pinyin_syllables()
    best: list[list[str] | None] = [[]] + [None] * len(word)
    for start in range(len(word)):
        if best[start] is None:
            continue
        for end in range(start + 2, min(len(word), start + 6) + 1):
            if word[start:end] in syllables:
                candidate = best[start] + [word[start:end]]
                if best[end] is None or len(candidate) < len(best[end]):
                    best[end] = candidate
    return best[len(word)]


_NAME_RUN = re.compile(r"[A-Z][a-z]+(?:[ \-][A-Z][a-z]+)*")


def query_name_terms(question: str) -> list[str]:
    """Pinyin bigrams of the capitalised (name-like) words of a Latin-script question.

    "Li Xiaona" → lixiao, xiaona; "Heshun County" → heshun (County is not pinyin and breaks the run).
    """
    terms: dict[str, None] = {}
    for run in _NAME_RUN.findall(question):
        syllables: list[str] = []
        for word in re.split(r"[ \-]", run):
            split = split_pinyin(word)
            if split is None:
                terms.update(dict.fromkeys(pinyin_bigrams(syllables)))
                syllables = []
            else:
                syllables += split
        terms.update(dict.fromkeys(pinyin_bigrams(syllables)))
    return list(terms)


def rarity_weights(question_terms: Sequence[str], document_frequency: Callable[[str], int], passages: int) -> dict:
    """Inverse document frequency of each question term over the collection."""
    return {term: math.log(1 + passages / (1 + document_frequency(term))) for term in question_terms}


def term_coverage(question_terms: Sequence[str], text: str, weights: Mapping[str, float]) -> float:
    """Weighted share of the question's terms that occur in a text, in [0, 1]."""
    total = sum(weights.get(term, 1.0) for term in question_terms)
    if not total:
        return 0.0
    present = set(lexical_terms(text))
    return sum(weights.get(term, 1.0) for term in question_terms if term in present) / total
