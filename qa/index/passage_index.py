"""The index boundary: what the service needs from wherever passages, vectors and terms are kept.

``PassageIndex`` is the one door to storage. Its homes: ``qa.index.local.LocalPassageIndex``
(SQLite + FAISS in one folder, for one machine). Everything above it (``qa.library``: splitting,
embedding by content hash, fusion, confidence, highlights) is the same code whatever the home.

A home owns: documents and passages, each encoder's stored vectors, the keyword terms, locking
and revisions (a search never sees half a document), and per-channel scoring — every channel
brings its best candidates, then every candidate is scored exactly by every channel, with the
mean and spread of that channel's scores over the whole collection (what fusion standardises by).

Passages are addressed by integer keys inside a home (FAISS ids, FTS rowids) and by their public
string ids outside.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from qa.documents.passages import Passage

# How many candidates each channel brings before every candidate is scored by every channel.
CANDIDATES_PER_CHANNEL = 100
# Keyword channels score this many matches in one query: the head are candidates, the rest
# completes the other channels' candidates and the collection moments.
LEXICAL_SCORED = 1000
LEXICAL_CHANNELS = ("lexical", "names")


@dataclass(frozen=True)
class Document:
    """A stored document, without its passages."""

    id: str
    title: str
    source: str
    metadata: dict = field(default_factory=dict)
    content_hash: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0
    passages: int = 0


@dataclass(frozen=True)
class StoredPassage:
    """A passage and its integer key inside the index."""

    key: int
    passage: Passage


@dataclass(frozen=True)
class Embedding:
    """A vector and the digest of (model, input text) it was computed from."""

    embedding_key: str
    vector: np.ndarray


@dataclass(frozen=True)
class NewPassage:
    """A passage ready to be written: embedded by every encoder, and split into lexical terms."""

    passage: Passage
    embeddings: dict[str, Embedding]  # encoder name -> its vector
    terms: list[str]
    names: list[str]  # romanised-name terms (qa.vectors.lexical.name_terms)


@dataclass(frozen=True)
class PassageFilter:
    """Restrict a search to some documents and/or to documents whose metadata has given values.

    ``metadata`` compares top-level fields for equality (strings, numbers, booleans, null).
    """

    documents: tuple[str, ...] | None = None
    metadata: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class EncoderSpec:
    """What an index must know of an encoder: its channel name, model, identity and dimension."""

    name: str  # the channel: "dense", "crosslingual"
    model: str  # the model's name, e.g. "multilingual-e5-small"
    identity: str  # changes whenever the model's vectors would change
    dimension: int


@dataclass(frozen=True)
class Query:
    """A question as the channels search it: a vector per encoder channel, its terms, its name terms."""

    vectors: Mapping[str, np.ndarray]
    terms: Sequence[str] = ()
    names: Sequence[str] = ()


@dataclass(frozen=True)
class ChannelScores:
    """One channel's raw score for every candidate (0 where it did not match), and its collection spread."""

    name: str
    scores: Mapping[int, float]
    mean: float
    std: float

    def standardized(self, key: int) -> float:
        """The z-score of a candidate under this channel."""
        return (self.scores.get(key, 0.0) - self.mean) / self.std if self.std > 0 else 0.0


def moments_from_top(top_scores: Iterable[float], collection_size: int) -> tuple[float, float]:
    """Mean and standard deviation over a collection from its best scores, the rest taken as 0.

    Exact for keyword channels when every matching passage is among ``top_scores``, and a
    close estimate otherwise (the unlisted tail scores less than the listed ones).
    """
    scores = list(top_scores)
    if collection_size <= 0 or not scores:
        return 0.0, 0.0
    mean = sum(scores) / collection_size
    variance = sum(score * score for score in scores) / collection_size - mean * mean
    return mean, math.sqrt(variance) if variance > 1e-12 else 0.0


class IndexView(Protocol):
    """One consistent view of an index: what ``score`` saw, ``passages`` and ``vectors`` read too."""

    def score(self, query: Query, channels: Sequence[str], where: PassageFilter | None = None) -> list[ChannelScores]:
        """Candidates of every channel, each scored by every channel, with collection moments.

        A filter applies inside every channel's search, so each still brings its best allowed candidates.
        """
        ...

    def passages(self, keys: Iterable[int]) -> dict[int, StoredPassage]:
        """The passages of these keys (keys no longer present are absent)."""
        ...

    def vectors(self, key: int) -> dict[str, np.ndarray]:
        """Each encoder's stored vector of one passage (KeyError when absent)."""
        ...

    def neighbours(self, document_id: str, first: int, last: int) -> list[StoredPassage]:
        """The passages of one document at positions ``first``..``last`` (both included) in reading order."""
        ...


class PassageIndex(Protocol):
    """Documents, passages, their vectors and terms, and the channels that search them."""

    encoders: Mapping[str, EncoderSpec]
    location: str  # where it lives, for people: a folder, or a server and collection
    read_only: bool  # opened for searching only: every write raises ReadOnlyIndex

    # -- reading --------------------------------------------------------------------------
    def reading(self) -> AbstractContextManager[IndexView]:
        """A consistent view for one search: ``with index.reading() as view: ...``."""
        ...

    def count_passages(self) -> int:
        """Number of searchable passages."""
        ...

    def count_documents(self) -> int:
        """Number of documents."""
        ...

    def document(self, document_id: str) -> Document | None:
        """One document with its passage count, or None."""
        ...

    def documents(self, offset: int = 0, limit: int = 100) -> list[Document]:
        """A page of documents in id order."""
        ...

    def documents_from_source(self, prefix: str) -> list[Document]:
        """Documents whose source starts with ``prefix`` (e.g. ``corpus:``)."""
        ...

    def document_passages(self, document_id: str) -> list[StoredPassage]:
        """A document's passages in reading order."""
        ...

    def passage(self, passage_id: str) -> StoredPassage | None:
        """One passage by its public id."""
        ...

    def iter_passages(self) -> Iterator[StoredPassage]:
        """Every passage (for migrations after a model or term-rule change)."""
        ...

    def term_frequencies(self, terms: Sequence[str]) -> dict[str, int]:
        """How many passages contain each keyword term (absent terms: 0)."""
        ...

    def vectors_for(self, encoder: str, embedding_keys: Iterable[str]) -> dict[str, np.ndarray]:
        """Stored vectors already computed for these embedding keys (same model, same input)."""
        ...

    def embedding_keys(self, encoder: str) -> dict[int, str]:
        """Passage key -> embedding key of one encoder's stored vectors."""
        ...

    def meta(self, key: str) -> str | None:
        """A value the service keeps with the index (e.g. a corpus fingerprint)."""
        ...

    # -- writing --------------------------------------------------------------------------
    def write_document(self, document: Document, text: str, passages: Sequence[NewPassage]) -> Document:
        """Insert or replace a document and all its passages atomically; returns it as stored."""
        ...

    def delete_document(self, document_id: str) -> Document | None:
        """Delete a document and its passages atomically; the document, or None when it did not exist."""
        ...

    def write_embeddings(self, encoder: str, updates: Sequence[tuple[int, Embedding]]) -> None:
        """Replace one encoder's vectors of existing passages (after a model change)."""
        ...

    def update_terms(self, updates: Sequence[tuple[int, list[str], list[str]]]) -> None:
        """Replace the (key, terms, names) of existing passages (after a term-rule change)."""
        ...

    def set_meta(self, key: str, value: str) -> None:
        """Keep a value with the index."""
        ...

    # -- lifecycle ------------------------------------------------------------------------
    def checkpoint(self) -> None:
        """Persist derived state now (the local home writes its vector snapshots)."""
        ...

    def close(self) -> None:
        """Persist what is pending and release the storage."""
        ...
