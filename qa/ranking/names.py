"""The names a question is about, and whether a passage names them too.

A question asking for a quantity asks it of something named: "上海的常住人口是多少？" is not answered by
a passage stating the population of Beijing's central districts, nor "How many people live in Chengdu?"
by one about a community of 7,266 people that never names Chengdu. Both passages are close to the
question in every other way (its other words, the kind of number, the encoders' similarity), so
confidence (qa.ranking.confidence) lowers a result that leaves out a name the quantity is asked of.

Which words are names:
- in a Chinese question, the places jieba tags (``ns``: 上海, 山西省, 舟山群岛); its person and
  organisation tags also fire on common words (古建筑 is tagged a person's name) and, measured on the
  public sets, cost answers without refusing anything more;
- in an English question, the capitalised words that are not question or function words (Chengdu,
  Shanxi Province, Super Bowl).

How a passage names them:
- in the question's script, as written (a Chinese place also without its 省/市/县/群岛... suffix:
  山西省 is named by 山西, 舟山群岛 by 舟山);
- across scripts, as a translation from the dictionary (qa.vectors.dictionary), or by pinyin: an English
  name that reads as pinyin (Chengdu) is named by Chinese characters that read so (成都), a Chinese
  place by its pinyin in an English passage (山西 → shanxi). Either will do: English words read as
  pinyin by chance (China: chi-na), and CC-CEDICT lacks many place names (成都 has no English entry that
  says "Chengdu" alone). An English name written as it is in Chinese text (NASA, Apollo) is named too.
  A name with no form in the other script cannot be looked for there and is taken as named; so is an
  acronym, whose translations are a lottery (CC-CEDICT's AAA is a battery, not 美国汽车协会).

A passage that names one of the question's names is taken to be about it: the question's other names
may be said in an earlier passage of the same text ("How many people live in the community in
Lianyungang that Li Xiaona works for?" is answered by a passage naming 李肖娜, not 连云港), and a passage's
heading counts as its own words. Its document's title does not: a title says what the whole text, or its
first story, is about, not each passage (the bundled page's is its lead story's, "习近平总书记考察山西…", and
counting it let two questions about Shanxi's figures, which the page does not state, be answered by the
national ones further down).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from qa.documents.text import CJK, writing_script
from qa.vectors.dictionary import Dictionary, english_stems
from qa.vectors.lexical import (
    ENGLISH_STOPWORDS,
    QUESTION_WORDS,
    fold,
    name_terms,
    pinyin_bigrams,
    segmenter,
    split_pinyin,
)

_PLACE_TAG = "ns"
_PLACE_SUFFIX = re.compile(r"(?:特别行政区|自治区|群岛|列岛|半岛|省|市|县|区|镇|乡|村|城)$")
_CAPITALISED = re.compile(r"\b[A-Z][A-Za-z]+\b")
_CHINESE = re.compile(r"[\u3400-\u9fff]+")


@dataclass(frozen=True)
class Name:
    """A name of a question, with the forms a passage may name it by."""

    written: str  # as the question writes it, folded
    same_script: frozenset[str]  # in a passage of the question's script
    other_script: frozenset[str]  # translations into the other script (words)
    pinyin: tuple[str, ...] = ()  # an English name's pinyin syllable pairs (``name_terms`` of a Chinese text)


def question_names(question: str, dictionary: Dictionary | None) -> tuple[Name, ...]:
    """The names a question is about (see the module docstring), in the order it writes them."""
    if writing_script(question) == CJK:
        return _chinese_places(question, dictionary)
    return _english_names(question, dictionary)


def _chinese_places(question: str, dictionary: Dictionary | None) -> tuple[Name, ...]:
    import jieba.posseg
    from pypinyin import lazy_pinyin

    segmenter()  # jieba initialised quietly
    names: dict[str, Name] = {}
    for pair in jieba.posseg.cut(fold(question)):
        place = pair.word
        if pair.flag != _PLACE_TAG or len(place) < 2 or not _CHINESE.fullmatch(place) or place in names:
            continue
        forms = {place}
        short = _PLACE_SUFFIX.sub("", place)
        if len(short) >= 2:
            forms.add(short)
        translations = {"".join(lazy_pinyin(form)) for form in forms}
        for form in forms:
            translations |= dictionary.english(form) if dictionary else frozenset()
        names[place] = Name(place, frozenset(forms), frozenset(translations))
    return tuple(names.values())


def _english_names(question: str, dictionary: Dictionary | None) -> tuple[Name, ...]:
    ignored = {word.lower() for word in QUESTION_WORDS} | ENGLISH_STOPWORDS
    names: dict[str, Name] = {}
    for match in _CAPITALISED.finditer(question):
        lower = match.group().lower()
        if match.start() == 0 or lower in ignored or lower in names:  # the first word is capitalised anyway
            continue
        stem = english_stems([lower])[0]
        # an acronym's translations are a lottery (AAA: 七号电池, "AAA batteries"): with none, it is taken as named
        acronym = match.group().isupper()
        pinyin = () if acronym else tuple(pinyin_bigrams(split_pinyin(lower) or []))
        translations = dictionary.chinese(stem) if dictionary and not acronym else frozenset()
        names[lower] = Name(lower, frozenset({lower, stem}), frozenset(translations), pinyin)
    return tuple(names.values())


def names_any(names: Sequence[Name], text: str, *context: str) -> bool:
    """Whether a passage names one of ``names`` at least (true when there are none; see the module
    docstring for how), in its text or its ``context`` (its heading). One is enough: a passage about
    Li Xiaona's community need not repeat its city."""
    if not names:
        return True
    from qa.ranking.evidence import passage_forms  # evidence imports this module (QuestionTerms.names)

    script = writing_script(text)
    # folded text, words and stems, as term evidence already computed (and cached) them for the passage
    parts = [passage_forms(part) for part in (text, *context) if part]
    for name in names:
        same = writing_script(name.written) == script
        if script == CJK and same:
            found = any(form in part.text for part in parts for form in name.same_script)
        elif script == CJK:
            found = (
                not name.pinyin and not name.other_script
                # NASA, IPCC as written
                or any(re.search(rf"(?<![a-z]){name.written}(?![a-z])", part.text) for part in parts)
                or bool(name.pinyin) and set(name.pinyin) <= frozenset().union(*(_pinyin_pairs(p.text) for p in parts))
                or any(form in part.text for part in parts for form in name.other_script)
            )
        else:
            forms = name.same_script if same else name.other_script
            found = not forms or any(not forms.isdisjoint(part.forms) for part in parts)
        if found:
            return True
    return False


@lru_cache(maxsize=4096)
def _pinyin_pairs(folded: str) -> frozenset[str]:
    """The pinyin of each pair of adjacent Chinese characters of a folded text (``name_terms``)."""
    return frozenset(name_terms(folded))
