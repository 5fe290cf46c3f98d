"""Prompt context for a chatbot: ranked passages → one text with numbered markers, and its citations.

The best passages come first, each once, each preceded by its marker ``[1]``, ``[2]``... in the
order they appear. Where the answering sentence is the first (or last) sentence of its passage,
the answer may start (or go on) in the neighbouring passage, so that passage is added beside it,
in reading order. Everything is cut at sentence ends to fit ``max_chars``: the answering sentence
is kept first, then the sentences around it. The text never exceeds ``max_chars`` characters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from qa.documents.passages import Passage
from qa.ranking.highlights import Highlight, sentence_spans

SEPARATOR = "\n\n"
ELLIPSIS = "…"
# Below this many characters a cut passage says too little to be worth a marker.
MIN_PIECE_CHARS = 40
# "[3]" inside a document would read as a marker that has no citation: written with full-width brackets.
MARKER_LIKE = re.compile(r"\[(\d+)\]")
CLAUSE_END = re.compile(r"[，,、；;：:\s]")


@dataclass(frozen=True)
class Citation:
    """The passage behind marker ``[marker]`` of a context."""

    marker: int
    passage: Passage


@dataclass(frozen=True)
class Context:
    """Prompt-ready text and what each of its markers cites."""

    text: str
    citations: list[Citation]
    answerable: bool


Neighbour = Callable[[Passage, int], Passage | None]


def build_context(
    evidence: Sequence[tuple[Passage, Highlight | None]],
    neighbour: Neighbour,
    max_chars: int,
    answerable: bool,
) -> Context:
    """The context for ranked ``(passage, best highlight)`` pairs, best first.

    ``neighbour(passage, step)`` returns the passage ``step`` places away in the same document
    (-1 before, +1 after), or None.
    """
    pieces: list[tuple[Passage, str]] = []  # in the order of the text
    used = 0
    included: set[str] = set()
    for passage, mark in evidence:
        if passage.id in included:
            continue  # already in the context as a neighbour of a stronger passage
        separators = len(SEPARATOR) if pieces else 0
        budget = max_chars - used - separators - marker_width(len(pieces) + 1)
        main = fit(passage.text, budget, focus=(mark.start, mark.end) if mark else None)
        if len(main) < min(MIN_PIECE_CHARS, len(passage.text.strip())) or not main:
            continue
        block = [(passage, main)]
        block_length = separators + marker_width(len(pieces) + 1) + len(main)
        included.add(passage.id)
        for step in edge_steps(passage.text, mark):
            beside = neighbour(passage, step)
            if beside is None or beside.id in included:
                continue
            room = max_chars - used - block_length - len(SEPARATOR) - marker_width(len(pieces) + len(block) + 1)
            text = fit(beside.text, room, keep="end" if step < 0 else "start")
            if len(text) >= min(MIN_PIECE_CHARS, len(beside.text.strip())) and text:
                block.insert(0 if step < 0 else len(block), (beside, text))
                block_length += len(SEPARATOR) + marker_width(len(pieces) + len(block)) + len(text)
                included.add(beside.id)
        pieces.extend(block)
        used += block_length
    text = SEPARATOR.join(f"[{number}] {piece}" for number, (_, piece) in enumerate(pieces, start=1))
    citations = [Citation(number, passage) for number, (passage, _) in enumerate(pieces, start=1)]
    assert len(text) <= max_chars, (len(text), max_chars)
    return Context(text=text, citations=citations, answerable=answerable)


def marker_width(number: int) -> int:
    """Characters taken by ``[number] ``."""
    return len(str(number)) + 3


def edge_steps(text: str, mark: Highlight | None) -> list[int]:
    """-1 when the answering sentence is the passage's first, +1 when its last (both for one sentence)."""
    if mark is None:
        return []
    spans = sentence_spans(text)
    steps = []
    if mark.start <= spans[0][0]:
        steps.append(-1)
    if mark.end >= spans[-1][1]:
        steps.append(1)
    return steps


def fit(text: str, budget: int, focus: tuple[int, int] | None = None, keep: str = "start") -> str:
    """The longest run of whole sentences of ``text`` within ``budget`` characters.

    The run holds ``focus`` (the answering sentence) and grows around it, or starts at the
    beginning (``keep="start"``) or ends at the end (``keep="end"``). When even the first sentence
    is too long it is cut at a clause boundary and ends with an ellipsis.
    """
    text = MARKER_LIKE.sub(r"［\1］", text)
    if budget <= 0:
        return ""
    if len(text.strip()) <= budget:
        return text.strip()
    spans = sentence_spans(text)
    if focus is not None:
        first = last = next((i for i, (start, end) in enumerate(spans) if end > focus[0]), 0)
    elif keep == "end":
        first = last = len(spans) - 1
    else:
        first = last = 0

    def length(a: int, b: int) -> int:
        return spans[b][1] - spans[a][0]

    if length(first, last) > budget:
        return cut_sentence(text[spans[first][0] : spans[first][1]], budget, from_end=keep == "end" and focus is None)
    grown = True
    while grown:
        grown = False
        forward = last + 1 < len(spans) and length(first, last + 1) <= budget and keep != "end"
        backward = first > 0 and length(first - 1, last) <= budget and (keep != "start" or focus is not None)
        if forward:
            last, grown = last + 1, True
        if backward and length(first - 1, last) <= budget:
            first, grown = first - 1, True
    return text[spans[first][0] : spans[last][1]].strip()


def cut_sentence(sentence: str, budget: int, from_end: bool = False) -> str:
    """A piece of one over-long sentence within ``budget``, cut at a clause boundary, marked with an ellipsis."""
    sentence = sentence.strip()
    room = budget - len(ELLIPSIS)
    if room <= 0:
        return ""
    if from_end:
        piece = sentence[-room:]
        boundary = CLAUSE_END.search(piece)
        if boundary and boundary.end() < len(piece) // 2:
            piece = piece[boundary.end() :]
        return ELLIPSIS + piece.strip()
    piece = sentence[:room]
    boundaries = [match.end() for match in CLAUSE_END.finditer(piece)]
    if boundaries and boundaries[-1] > len(piece) // 2:
        piece = piece[: boundaries[-1]]
    return piece.strip() + ELLIPSIS
