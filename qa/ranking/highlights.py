"""The answering sentence: which sentences of a passage answer the question, best first.

A sentence is scored by the question's words it holds, in the passage's language: each whole
word (a jieba word of a Chinese question, a word of an English one, or its dictionary
translations when question and passage are in different scripts) counts once, weighted by how
rare it is among the passage's sentences: the sentence that says the question's rare words
("体型", "分布", "校训") answers, more often than the one that names the passage's subject. A
Chinese word that is not there whole earns half its weight in proportion to the characters that
are ("本鱼体延长" for "体型"); a sentence that opens with a pronoun or 本 ("它是无色晶体", "本鱼分布
于") is taken to speak of the subject, the words of the passage's first sentence. A question that
asks for a time or a number (qa.ranking.answer_type) adds a little to the sentences that hold one (for a
quantity of a recognised kind, one of that kind: "7266人" for "多少人", not "2023年"). A quotation
standing as a sentence of its own and the short sentence after it that says who spoke it are one
sentence: the attribution restates the question, the quotation answers it.

A question's words that the passage's document title holds ("白之春" in the article 白之春) are taken
as said by every sentence, as by one that opens with a pronoun: a sentence need not name what the
whole document is about to speak of it, so "由阿部宽与大桥望美主演。" answers "《白之春》的主演是谁？" rather than the
sentence that names the drama (cmrc2018, the sentence picked in the answering passage: 0.884 → 0.906).

The cross-lingual encoder's cosine between the question and each sentence is added where the words
are weak: across scripts (an English question about Chinese text) and where the passage holds none
of the question's words. Within one script it cost accuracy (cmrc2018, the sentence picked in the
answering passage: 0.878 → 0.872 at a weight of 0.05, 0.856 at 1), so same-language questions embed
no sentences at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from qa.documents.text import CJK, is_cjk_letter, split_sentences, writing_script
from qa.ranking.answer_type import offers_folded
from qa.ranking.evidence import QuestionTerms, passage_forms
from qa.vectors.lexical import fold

MAX_HIGHLIGHTS = 3
# Sentences of the first results may also be compared with the question by the encoder (see above);
# below that, words alone decide (encoding every sentence of ten results cost ~0.3 s).
ENCODED_RESULTS = 3
# A Chinese word found only in part earns this share of its weight, times the share of its characters found.
PARTIAL_CREDIT = 0.5
# Added to a sentence holding the kind of answer the question asks for (a time, a number).
ANSWER_TYPE_WEIGHT = 0.15
# At most this many question words are joined into one (a long text given to /api/similar stays cheap).
MAX_RUN = 8
_REFERS_BACK = re.compile(r"\s*(?:它|他|她|牠|其|本)")
# A sentence this short with a verb of saying (and no quotation marks) after a quotation says who spoke it.
ATTRIBUTION_MAX_CHARS = 40
_SPEECH_VERB = re.compile(r"说|指出|强调|表示|指明|要求|介绍|提出|写道|谈到|感慨|回忆|寄语|嘱托|叮嘱|称")
_QUOTE_OPENERS = "“「『"
_QUOTE_CLOSERS = "”」』"


@dataclass(frozen=True)
class Highlight:
    """A sentence of a passage: ``text == passage.text[start:end]``."""

    text: str
    start: int
    end: int
    score: float


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Sentence spans of a passage with surrounding whitespace trimmed; empty sentences dropped; a
    quotation followed by the sentence saying who said it is one sentence (``join_quotations``)."""
    spans = []
    for start, end in split_sentences(text):
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start < end:
            spans.append((start, end))
    return join_quotations(text, spans) or [(0, len(text))]


def is_quotation(sentence: str) -> bool:
    """Whether a sentence is one quotation and nothing else: “积极主动参与粤港澳大湾区建设……。”"""
    sentence = sentence.strip()
    return len(sentence) > 2 and sentence[0] in _QUOTE_OPENERS and sentence[-1] in _QUOTE_CLOSERS


def is_attribution(sentence: str) -> bool:
    """Whether a sentence only says who spoke, and when or where: a short sentence with a verb of
    saying and no quotation marks ("2024年12月，习近平总书记在视察澳门时指明方向。")."""
    sentence = sentence.strip()
    return (
        len(sentence) <= ATTRIBUTION_MAX_CHARS
        and not any(mark in sentence for mark in _QUOTE_OPENERS + _QUOTE_CLOSERS)
        and _SPEECH_VERB.search(fold(sentence)) is not None  # traditional characters folded: 強調 → 强调
    )


def join_quotations(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``spans`` with each quotation that stands as a sentence of its own joined to the attribution
    after it, as Chinese newspapers write them (“……。”2023年参加首都义务植树活动时，习近平总书记对大家说。).

    The attribution repeats the question's words ("总书记给澳门指了什么发展方向？"), the quotation holds
    the answer; apart they outscored it, together they are the statement a reader needs.
    """
    joined: list[tuple[int, int]] = []
    index = 0
    while index < len(spans):
        start, end = spans[index]
        after = spans[index + 1] if index + 1 < len(spans) else None
        if after and is_quotation(text[start:end]) and is_attribution(text[after[0] : after[1]]):
            joined.append((start, after[1]))
            index += 2
        else:
            joined.append((start, end))
            index += 1
    return joined


def phrases(words: Sequence[str], texts: Sequence[str]) -> list[str]:
    """The question's words with runs of them that a text holds written together joined into one
    (jieba cuts "山西云时代技术有限公司" into five words, which would outweigh "董事长" five to one)."""
    joined: list[str] = []
    start = 0
    while start < len(words):
        end = start + 1
        for longer in range(min(len(words), start + MAX_RUN), start + 1, -1):
            run = "".join(words[start:longer])
            if any(run in text for text in texts):
                end = longer
                break
        joined.append("".join(words[start:end]))
        start = end
    return joined


def _words_found(
    question: QuestionTerms, sentences: Sequence[str], script: str, subject: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """Which of the question's words (rows; runs written together as one) each sentence (columns) holds:
    1, a part of 1 for a Chinese word found in part, nothing for words the sentence's script cannot show;
    and which of those words the ``subject`` holds (one flag per row)."""
    same = script == question.script
    variants_of = dict(question.same_script if same else question.other_script)
    words = [word for word in question.words if word in variants_of]
    if not words or not sentences:
        return np.zeros((0, len(sentences))), np.zeros(0, dtype=bool)
    forms = [passage_forms(sentence) for sentence in sentences]
    if same and script == CJK:
        words = phrases(words, [sentence_forms.text for sentence_forms in forms])
        variants_of.update((word, frozenset({word})) for word in words if word not in variants_of)
    found = np.zeros((len(words), len(sentences)))
    for row, word in enumerate(words):
        variants = variants_of[word]
        in_part = same and script == CJK and len(word) > 1 and all(map(is_cjk_letter, word))
        for column, sentence_forms in enumerate(forms):
            if sentence_forms.contains_any(variants):
                found[row, column] = 1.0
            elif in_part:
                present = sum(character in sentence_forms.forms for character in word)
                found[row, column] = PARTIAL_CREDIT * present / len(word)
    if same and script == CJK:
        first = found[:, 0] >= 1.0  # the words of the first sentence, which a pronoun refers back to
        for column, sentence in enumerate(sentences[1:], start=1):
            if _REFERS_BACK.match(sentence):
                found[first, column] = 1.0
    subject_forms = passage_forms(subject) if subject else None
    understood = np.array(
        [subject_forms is not None and subject_forms.contains_any(variants_of[word]) for word in words], dtype=bool
    )
    return found, understood


def _weighted_share(found: np.ndarray, count: int) -> np.ndarray:
    """Weighted share of the question's words each of ``count`` sentences of one passage holds, in [0, 1],
    from their ``_words_found`` matrix: each word weighted by its rarity among the sentences (see the
    module docstring)."""
    if not len(found):
        return np.zeros(count)
    weights = np.log1p(count / (1.0 + (found >= 1.0).sum(axis=1)))
    return weights @ found / weights.sum()


@dataclass(frozen=True)
class PassageSentences:
    """A passage's sentences and what the question's words make of each, before any encoder."""

    spans: list[tuple[int, int]]
    sentences: list[str]
    script: str  # the passage's (qa.documents.text.writing_script)
    words: np.ndarray  # weighted share of the question's words, one value per sentence
    named: np.ndarray  # True where the sentence holds one of the question's words whole
    offered: np.ndarray  # True where the sentence holds the kind of answer asked for (qa.ranking.answer_type)

    @property
    def scores(self) -> np.ndarray:
        """Each sentence's score: its words plus the answer-type bonus."""
        return self.words + ANSWER_TYPE_WEIGHT * self.offered

    @property
    def best(self) -> float:
        """The score of the passage's best sentence (0 for a passage of no words)."""
        return float(self.scores.max()) if len(self.scores) else 0.0

    @property
    def answers_in_one_sentence(self) -> bool:
        """Whether one sentence holds both a whole word of the question and the kind of answer asked for
        ("上海的常住人口是多少？" is not answered by "社区有7266人" in a passage that names 上海 elsewhere)."""
        return bool((self.offered & self.named).any())


def score_sentences(text: str, question: QuestionTerms, subject: str = "") -> PassageSentences:
    """The sentences of a passage scored by the question's words and the kind of answer it asks for, each
    read in the passage's script (a sentence quoting a Latin name in a Chinese passage is still Chinese).

    ``subject``: what every sentence of the passage speaks of (``qa.library.passage_subject``: its
    document's title); the question's words it holds count as said by every sentence (module docstring).
    """
    spans = sentence_spans(text)
    sentences = [text[start:end] for start, end in spans]
    script = writing_script(text)
    found, understood = _words_found(question, sentences, script, subject)
    # named: the sentence's own words (a quantity must be stated next to one); spoken: with the subject's
    named = (found >= 1.0).any(axis=0) if len(found) else np.zeros(len(sentences), dtype=bool)
    spoken = found.copy()
    spoken[understood] = 1.0
    words = _weighted_share(spoken, len(sentences))
    quantity = question.quantity
    folded = [passage_forms(sentence).text for sentence in sentences]  # cached: _words_found read the same
    offered = [
        quantity.stated_in_folded(text, script) if quantity else offers_folded(question.asks, text) for text in folded
    ]
    return PassageSentences(spans, sentences, script, words, named, np.array(offered, dtype=bool))


def part_scores(texts: Sequence[str], question: QuestionTerms, subject: str = "") -> np.ndarray:
    """Each of consecutive parts' best sentence score when the parts are scored as one passage (a word's
    rarity counted over all their sentences; a sentence that runs across two parts belongs to the first)."""
    joined = "".join(texts)
    scored = score_sentences(joined, question, subject)
    ends = np.cumsum([len(text) for text in texts])
    best = np.zeros(len(texts))
    for (start, _), score in zip(scored.spans, scored.scores):
        part = min(int(np.searchsorted(ends, start, side="right")), len(texts) - 1)
        best[part] = max(best[part], score)
    return best


def highlight_passages(
    passages: Sequence[PassageSentences],
    question: QuestionTerms,
    question_vector: np.ndarray | None,
    embed_sentences: Callable[[list[str]], np.ndarray] | None,
    limit: int = MAX_HIGHLIGHTS,
    encode_all: bool = False,
) -> list[list[Highlight]]:
    """For each passage (``score_sentences``), its best sentences (at most ``limit``), best first.

    The sentences the encoder compares (see the module docstring; all of them with ``encode_all``,
    as for a passage-like text in ``/api/similar``), among the first ``ENCODED_RESULTS`` passages,
    are embedded in one batch.
    """
    compared = [
        index
        for index, passage in enumerate(passages[:ENCODED_RESULTS])
        if encode_all or passage.script != question.script or not passage.words.any()
    ]
    scores = [passage.scores for passage in passages]
    if question_vector is not None and embed_sentences is not None and compared:
        vectors = embed_sentences([sentence for index in compared for sentence in passages[index].sentences])
        similarity = vectors @ np.asarray(question_vector, dtype=np.float32)
        position = 0
        for index in compared:
            count = len(passages[index].sentences)
            scores[index] = scores[index] + similarity[position : position + count]
            position += count
    results: list[list[Highlight]] = []
    for passage, passage_scores in zip(passages, scores):
        scored = [
            Highlight(sentence, start, end, round(float(score), 4))
            for (start, end), sentence, score in zip(passage.spans, passage.sentences, passage_scores)
        ]
        scored.sort(key=lambda highlight: highlight.score, reverse=True)
        results.append(scored[:limit])
    return results
