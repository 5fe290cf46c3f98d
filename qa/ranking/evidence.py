"""Term evidence: how much of a question a passage contains, in the passage's own language.

Keyword search compares a question's terms with a passage's terms as they are written, which
says nothing when the two are in different scripts (an English question about a Chinese
passage matches only its numbers and Latin acronyms, and those few matches look like strong
evidence). Here each question term also carries its translations (qa.vectors.dictionary), and a
passage is judged by the terms that can show up in its script at all:

- same script as the question: the weighted share of all the question's terms it contains;
- other script: the weighted share of the question's *translatable* terms (words the dictionary
  knows, numbers, Latin names and acronyms) that it contains as written or as a translation.

Terms are weighted by their rarity among the passages being compared that share a script (a term
every candidate contains says nothing about which one answers). The result, ``coverage`` in [0, 1], means the
same thing in both directions and in any collection; fusion, confidence and highlights use it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from qa.documents.text import writing_script
from qa.ranking.answer_type import Quantity, asked_office, asked_quantity, asked_type
from qa.ranking.names import Name, question_names
from qa.vectors.dictionary import Dictionary, english_stems
from qa.vectors.lexical import CHINESE_FUNCTION_WORDS, fold, query_terms, query_words

_CJK_RUN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")
_LATIN_WORD = re.compile(r"[a-z]+")
_NUMBER = re.compile(r"\d+(?:\.\d+)*")


@dataclass(frozen=True)
class QuestionTerms:
    """A question's content terms, each with the forms it may take in a passage of either script."""

    script: str
    terms: tuple[str, ...]
    same_script: Mapping[str, frozenset[str]]  # the term as written (and its English stem)
    other_script: Mapping[str, frozenset[str]]  # translations, or the term itself where it is script-neutral
    words: tuple[str, ...] = ()  # the whole content words among the terms (``query_words``), for sentences
    asks: str | None = None  # the kind of answer asked for (qa.ranking.answer_type), if one is recognised
    quantity: Quantity | None = None  # the kind of quantity asked for (qa.ranking.answer_type), if recognised
    names: tuple[Name, ...] = ()  # what the quantity is asked of (qa.ranking.names); only when one is asked
    office: str | None = None  # the office whose holder a Chinese question asks for (qa.ranking.answer_type)


def question_terms(question: str, dictionary: Dictionary | None) -> QuestionTerms:
    """The question's terms (``query_terms``) and their forms in both scripts.

    Numbers and Latin words may appear as they are in a Chinese passage (2015, NFL, BSkyB), so they
    keep their own form on the other side too; a Chinese question's character bigrams only count in
    its own script (only whole dictionary words are translated).
    """
    terms = tuple(query_terms(question))
    latin = [term for term in terms if _LATIN_WORD.fullmatch(term)]
    stems = dict(zip(latin, english_stems(latin)))
    same: dict[str, frozenset[str]] = {}
    other: dict[str, frozenset[str]] = {}
    for term in terms:
        if term in stems:
            same[term] = frozenset({term, stems[term]})
            translations = dictionary.chinese(stems[term]) if dictionary else frozenset()
            other[term] = same[term] | translations
        elif _CJK_RUN.fullmatch(term):
            same[term] = frozenset({term})
            translations = dictionary.english(term) if dictionary and term not in CHINESE_FUNCTION_WORDS else None
            if translations:
                other[term] = translations
        else:  # numbers and other script-neutral tokens
            same[term] = other[term] = frozenset({term})
    words = tuple(word for word in query_words(question) if word in same)
    quantity = asked_quantity(question)
    names = question_names(question, dictionary) if quantity else ()
    script, asks, office = writing_script(question), asked_type(question), asked_office(question)
    return QuestionTerms(script, terms, same, other, words, asks, quantity, names, office)


@dataclass(frozen=True)
class PassageForms:
    """What a passage offers to match against: its script, its characters, character bigrams, words and stems."""

    script: str
    forms: frozenset[str]
    text: str  # folded, for Chinese words longer than two characters

    def contains_any(self, forms: frozenset[str]) -> bool:
        exact, longer = _split_forms(forms)
        return not exact.isdisjoint(self.forms) or any(form in self.text for form in longer)


@lru_cache(maxsize=4096)
def _split_forms(forms: frozenset[str]) -> tuple[frozenset[str], tuple[str, ...]]:
    """A term's forms, and those of them longer than two characters (looked for inside the text too:
    a passage's forms hold its characters and bigrams, not its longer words)."""
    return forms, tuple(form for form in forms if len(form) > 2)


@lru_cache(maxsize=20_000)
def passage_forms(text: str) -> PassageForms:
    """A passage's forms, computed without a word segmenter (a Chinese word of the question is found
    as the characters, bigram or substring it is written with); cached, as the same passages come
    back question after question."""
    folded = fold(text)
    forms = set(_LATIN_WORD.findall(folded))
    forms.update(english_stems(forms))
    forms.update(_NUMBER.findall(folded))
    for run in _CJK_RUN.findall(folded):
        forms.update(run)
        forms.update(run[index : index + 2] for index in range(len(run) - 1))
    return PassageForms(writing_script(text), frozenset(forms), folded)


def term_evidence(question: QuestionTerms, passages: Mapping[int, PassageForms]) -> dict[int, float]:
    """``coverage`` in [0, 1] of each passage (see the module docstring); 0 where nothing can match."""
    coverage: dict[int, float] = {}
    for script in {forms.script for forms in passages.values()}:
        candidates = {term: forms for term, forms in (
            question.same_script if script == question.script else question.other_script
        ).items()}
        members = {key: forms for key, forms in passages.items() if forms.script == script}
        found = {term: {key for key, forms in members.items() if forms.contains_any(variants)}
                 for term, variants in candidates.items()}
        weights = {term: math.log(1 + len(members) / (1 + len(keys))) for term, keys in found.items()}
        total = sum(weights.values())
        for key in members:
            share = sum(weight for term, weight in weights.items() if key in found[term])
            coverage[key] = share / total if total else 0.0
    return coverage
