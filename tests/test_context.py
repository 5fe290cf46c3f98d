"""Prompt context for chatbots (qa.ranking.context): markers, citations, neighbours, and the length cap."""

from __future__ import annotations

import re

import pytest

from qa.documents.passages import Passage
from qa.ranking.context import build_context, fit
from qa.ranking.highlights import Highlight, sentence_spans

MARKER = re.compile(r"\[(\d+)\]")


def passage(document: str, position: int, text: str) -> Passage:
    return Passage(
        id=f"{document}:{position:012d}", document_id=document, document_title=document.title(), heading=None,
        text=text, start=position * 1000, end=position * 1000 + len(text), position=position,
    )


def mark(text: str, sentence: int) -> Highlight:
    """The ``sentence``-th sentence of ``text`` as the answering highlight."""
    start, end = sentence_spans(text)[sentence]
    return Highlight(text[start:end], start, end, 1.0)


# one document of four passages, each of three sentences
SENTENCES = [
    [f"第{p}段第{s}句讲的是平遥古城第{p * 3 + s}号街巷的修缮情况和游客人数。" for s in range(3)] for p in range(4)
]
GUIDE = [passage("guide", p, "".join(SENTENCES[p])) for p in range(4)]
OTHER = passage("other", 0, "太原市今年启动老旧小区改造三年行动。计划改造小区四百余个。同步加装电梯。")


def neighbours_in(passages: list[Passage]):
    by_place = {(p.document_id, p.position): p for p in passages}
    return lambda current, step: by_place.get((current.document_id, current.position + step))


def test_every_marker_in_the_text_has_its_citation_numbered_in_order():
    context = build_context([(GUIDE[1], mark(GUIDE[1].text, 1)), (OTHER, None)], neighbours_in(GUIDE), 2000, True)

    markers = [int(number) for number in MARKER.findall(context.text)]
    assert markers == [citation.marker for citation in context.citations] == list(range(1, len(markers) + 1))
    assert [citation.passage.id for citation in context.citations] == [GUIDE[1].id, OTHER.id]
    assert context.text.startswith("[1] " + GUIDE[1].text)


def test_answer_in_the_first_sentence_brings_the_passage_before_it_in_reading_order():
    context = build_context([(GUIDE[2], mark(GUIDE[2].text, 0))], neighbours_in(GUIDE), 2000, True)

    assert [citation.passage.id for citation in context.citations] == [GUIDE[1].id, GUIDE[2].id]
    assert context.text.index(GUIDE[1].text) < context.text.index(GUIDE[2].text)


def test_answer_in_the_last_sentence_brings_the_passage_after_it():
    context = build_context([(GUIDE[1], mark(GUIDE[1].text, 2))], neighbours_in(GUIDE), 2000, True)

    assert [citation.passage.id for citation in context.citations] == [GUIDE[1].id, GUIDE[2].id]


def test_answer_in_the_middle_adds_no_neighbour():
    context = build_context([(GUIDE[1], mark(GUIDE[1].text, 1))], neighbours_in(GUIDE), 2000, True)

    assert [citation.passage.id for citation in context.citations] == [GUIDE[1].id]


def test_a_passage_appears_once_even_when_it_is_both_a_hit_and_a_neighbour():
    evidence = [(GUIDE[2], mark(GUIDE[2].text, 0)), (GUIDE[1], mark(GUIDE[1].text, 1))]

    context = build_context(evidence, neighbours_in(GUIDE), 2000, True)

    ids = [citation.passage.id for citation in context.citations]
    assert sorted(ids) == sorted(set(ids)) == sorted([GUIDE[1].id, GUIDE[2].id])
    assert context.text.count(GUIDE[1].text) == 1


def test_strongest_evidence_comes_first():
    context = build_context([(OTHER, None), (GUIDE[1], mark(GUIDE[1].text, 1))], neighbours_in(GUIDE), 2000, True)

    assert context.citations[0].passage.id == OTHER.id


@pytest.mark.parametrize("max_chars", [200, 201, 233, 250, 300, 377, 500, 640, 1000, 2000])
def test_context_never_exceeds_max_chars_and_cuts_at_sentence_ends(max_chars):
    evidence = [(p, mark(p.text, i % 3)) for i, p in enumerate(reversed(GUIDE))] + [(OTHER, None)]

    context = build_context(evidence, neighbours_in(GUIDE + [OTHER]), max_chars, True)

    assert 0 < len(context.text) <= max_chars
    all_sentences = {s for p in SENTENCES for s in p} | set(re.findall(r"[^。]+。", OTHER.text))
    for piece in re.split(r"\n\n", context.text):
        body = MARKER.sub("", piece, count=1).strip()
        assert all(sentence in all_sentences for sentence in re.findall(r"[^。]+。", body)), body
        assert body.endswith("。"), body


def test_the_answering_sentence_is_kept_when_the_passage_must_be_cut():
    answer = mark(GUIDE[1].text, 2)

    context = build_context([(GUIDE[1], answer)], lambda p, s: None, 200, True)

    assert answer.text in context.text
    assert len(context.text) <= 200


def test_bracketed_numbers_inside_a_passage_are_not_mistaken_for_markers():
    cited = passage("paper", 0, "该研究[3]表明古城保护需要长期投入。另见文献[12]的统计。")

    context = build_context([(cited, None)], lambda p, s: None, 2000, True)

    assert MARKER.findall(context.text) == ["1"]
    assert "［3］" in context.text and "［12］" in context.text


def test_an_over_long_sentence_is_cut_at_a_clause_with_an_ellipsis():
    sentence = "，".join(f"第{i}条街巷修缮完成" for i in range(60)) + "。"

    piece = fit(sentence, 120)

    assert len(piece) <= 120 and piece.endswith("…")
    assert piece[:-1].endswith("完成") or piece[:-1].endswith("，")


def test_no_evidence_is_an_empty_context():
    context = build_context([], lambda p, s: None, 2000, False)

    assert context.text == "" and context.citations == [] and context.answerable is False
