"""Lexical terms: what keyword search (BM25 in SQLite FTS5) indexes and looks up.

Chinese has no spaces, so CJK runs become single characters plus character bigrams
(robust to OCR splits and to words a dictionary does not know); other scripts become
lower-cased words and numbers. Traditional characters are folded to simplified first,
so a question in either script finds a passage in the other.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# Bump when the terms of a text change: stored terms are then recomputed (no re-embedding).
LEXICAL_VERSION = "chars+bigrams/t2s/1"

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af"
_TOKEN = re.compile(rf"[{_CJK}]+|\d+(?:\.\d+)+|[^\W_]+", re.UNICODE)
_CJK_RUN = re.compile(rf"[{_CJK}]+")

# Words that carry the question's form, not its content: matching them finds noise.
QUESTION_WORDS = frozenset(
    "什么 什麼 哪里 哪裡 哪些 哪个 哪個 哪一 哪位 谁 誰 多少 几 幾 吗 嗎 呢 如何 怎么 怎麼 怎样 怎樣 为什么 為什麼 是否"
    " 请问 請問".split()
)
ENGLISH_STOPWORDS = frozenset(
    "a an and are as at be been by did do does for from had has have how in is it its of on or that the this"
    " to was were what when where which who whom whose why will with".split()
)


@lru_cache(maxsize=1)
def _to_simplified():
    import opencc

    return opencc.OpenCC("t2s")


def fold(text: str) -> str:
    """Compatibility-fold (full-width → ASCII), lower-case and convert traditional to simplified."""
    return _to_simplified().convert(unicodedata.normalize("NFKC", text).lower())


def lexical_terms(text: str) -> list[str]:
    """The terms of a text, in order, with repeats (term frequency matters to BM25)."""
    terms: list[str] = []
    for token in _TOKEN.findall(fold(text)):
        if _CJK_RUN.fullmatch(token):
            terms.extend(token)
            terms.extend(token[i : i + 2] for i in range(len(token) - 1))
        else:
            terms.append(token)
    return terms


def query_terms(question: str) -> list[str]:
    """Distinct content terms of a question: question words and English stopwords removed."""
    folded = fold(question)
    for word in sorted(QUESTION_WORDS, key=len, reverse=True):
        folded = folded.replace(fold(word), " ")
    seen: dict[str, None] = {}
    for term in lexical_terms(folded):
        if term not in ENGLISH_STOPWORDS:
            seen.setdefault(term, None)
    return list(seen)


def match_expression(terms: list[str]) -> str:
    """An FTS5 MATCH expression that ORs the terms, each quoted so no term is read as syntax."""
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)
