"""What the library gives back: ranked hits, answers and the outcome of adding a document.

Plain dataclasses that the HTTP API and the CLI encode; nothing here knows about storage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qa.documents.passages import Passage
from qa.index.passage_index import Document
from qa.ranking.highlights import Highlight


@dataclass(frozen=True)
class Hit:
    """One ranked passage of a result list.

    ``score`` is the fused ranking score (standard deviations above the collection's average,
    comparable within one list only); ``scores`` the raw score of each channel;
    ``confidence`` the estimated probability that this passage answers the question.
    """

    passage: Passage
    rank: int
    score: float
    scores: dict[str, float] = field(default_factory=dict)
    confidence: float = 0.0
    highlights: tuple[Highlight, ...] = ()


@dataclass(frozen=True)
class Answer:
    """The ranked hits for a question, and whether the collection seems to answer it at all.

    Behaves as the sequence of its hits (``answer[0]``, ``len(answer)``, ``for hit in answer``).
    """

    question: str
    mode: str
    hits: list[Hit]
    answerable: bool

    def __len__(self) -> int:
        return len(self.hits)

    def __iter__(self):
        return iter(self.hits)

    def __getitem__(self, index):
        return self.hits[index]


@dataclass(frozen=True)
class AddResult:
    """What adding a document did."""

    document: Document
    status: str  # "added", "replaced" or "unchanged"
    embedded: int  # passages sent to the model now
    reused: int  # passages whose vectors were already stored
