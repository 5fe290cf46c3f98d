"""The library: the core object of the service. Documents go in, ranked passages come out.

text → passages (qa.documents) → vectors and terms (qa.vectors) → index (qa.index, a
``PassageIndex``) → results (qa.ranking, this module). Usable from Python, the CLI and the
HTTP API alike; the API and CLI use only the verbs of ``Library``.

The library decides *what* is stored and *how answers are ranked*: it splits documents,
embeds only passages whose (model, text) digest has no stored vector yet, re-embeds after a
model change, fuses the channels' scores, and adds confidence and highlights. Where and how
passages are kept, locked and searched per channel is the index's business.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from qa.documents.budgets import DEFAULT_BUDGETS, Budgets, check_document_chars
from qa.documents.ids import validate_document_id
from qa.documents.passages import CREDIT, Passage, split_document
from qa.documents.text import clean_text, has_visible_text, to_simplified
from qa.errors import EmptyDocument, InvalidInput, NotFound, QAError, ReadOnlyIndex
from qa.index.passage_index import (
    LEXICAL_CHANNELS,
    ChannelScores,
    Document,
    Embedding,
    EncoderSpec,
    NewPassage,
    PassageFilter,
    PassageIndex,
    Query,
    StoredPassage,
)
from qa.index.vector_index import DEFAULT_EXACT_LIMIT
from qa.ranking.answer_type import names_office
from qa.ranking.confidence import (
    ANSWERABLE_CONFIDENCE,
    ANSWERABLE_DEPTH,
    non_increasing,
    result_confidences,
    unstated_lowered,
)
from qa.ranking.context import Context, build_context
from qa.ranking.evidence import PassageForms, QuestionTerms, passage_forms, question_terms, term_evidence
from qa.ranking.fusion import (
    ANSWERING_PART_REACH,
    COVERAGE_WEIGHT,
    FOCUSED,
    MODE_CHANNELS,
    MODES,
    RERANKED,
    PassageEvidence,
    answering_part,
    focus,
    fuse,
    rerank,
)
from qa.ranking.highlights import PassageSentences, highlight_passages, part_scores, score_sentences
from qa.ranking.names import names_any
from qa.results import AddResult, Answer, Hit
from qa.vectors.dictionary import load_dictionary
from qa.vectors.embedder import Embedder, VectorCache
from qa.vectors.lexical import (
    LEXICAL_VERSION,
    lexical_terms,
    name_terms,
    query_name_terms,
    query_terms,
    rarity_weights,
)
from qa.vectors.serving import EncoderStats, ServingEncoder

log = logging.getLogger(__name__)

# Bump when the text given to the model for a passage changes: every passage is then re-embedded.
EMBEDDING_INPUT_VERSION = 2
CONFIDENCE_CONTEXT = 10
# The most results one request may ask for: more is never useful to a reader, and confidence,
# highlights and passage reads grow with it. The API documents this same bound.
MAX_TOP_K = 50
MIGRATION_BATCH = 256


@dataclass(frozen=True)
class Ranking:
    """Intermediate result of a search: fused (key, score) pairs and what produced them.

    ``passages`` and ``coverage`` (qa.ranking.evidence) are known for the ranked keys, ``sentences``
    (qa.ranking.highlights) for those the hybrid mode focused on. ``replaced``: the first result that the
    answering part of its section took the place of (qa.ranking.fusion.answering_part), if any.
    """

    ranked: list[tuple[int, float]]
    channels: list[ChannelScores]
    vectors: dict[str, np.ndarray]
    terms: QuestionTerms
    passages: dict[int, Passage]
    coverage: dict[int, float]
    sentences: dict[int, PassageSentences]
    replaced: int | None = None

    def scored_sentences(self, key: int) -> PassageSentences:
        """The sentences of a ranked passage, scored by the question's words."""
        known = self.sentences.get(key)
        if known is not None:
            return known
        passage = self.passages[key]
        return score_sentences(passage.text, self.terms, passage_subject(passage))


@dataclass(frozen=True)
class NewDocument:
    """A document to add (``Library.add_documents``); see ``Library.add_document`` for the fields."""

    text: str
    document_id: str | None = None
    title: str | None = None
    metadata: dict | None = None
    source: str = "api"


@dataclass(frozen=True)
class _PlannedDocument:
    """A document checked and split, ready to be embedded and written."""

    document: Document
    text: str
    passages: list[Passage]
    replaces: bool


def embedding_input(passage: Passage) -> str:
    """The text the models embed for a passage: in simplified characters.

    Folding both sides to one script lets a simplified question meet a traditional passage
    as if both were written alike (e5 lost 3 points of Recall@1 across scripts on drcd-dev,
    and nothing within one script).
    """
    return to_simplified(passage.text)


def passage_subject(passage: Passage) -> str:
    """What every sentence of a passage speaks of, for choosing its answering sentence: its document's title,
    given or taken from the document's first heading; none when the title is only the document's id."""
    return "" if passage.document_title == passage.document_id else passage.document_title


def passage_terms(passage: Passage) -> tuple[list[str], list[str]]:
    """What keyword search indexes for a passage: (terms, pinyin name terms)."""
    return lexical_terms(passage.text), name_terms(passage.text)


def embedding_key(model_identity: str, text: str) -> str:
    """Digest of (model, input): equal keys mean the stored vector can be reused."""
    return hashlib.sha256(f"{model_identity}\0{EMBEDDING_INPUT_VERSION}\0{text}".encode()).hexdigest()


def content_hash(text: str, title: str | None, metadata: dict, source: str) -> str:
    """Digest of everything that makes a document what it is: equal digests mean nothing to do."""
    # canonical JSON: the same metadata with its fields in another order is the same document
    canonical = json.dumps([text, title, metadata, source], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def default_document_id(text: str, title: str | None = None, metadata: dict | None = None, source: str = "api") -> str:
    """The id ``add_document`` gives a document sent without one: posting the same document twice is harmless."""
    return f"doc-{content_hash(text, title, dict(metadata or {}), source)[:12]}"


def named_encoders(embedder: Embedder | None, crosslingual: Embedder | None = None) -> dict[str, Embedder]:
    """The encoders by channel: ``dense`` (the model) and, when there is one, ``crosslingual``."""
    if embedder is None:
        return {}
    return {"dense": embedder} | ({"crosslingual": crosslingual} if crosslingual is not None else {})


def encoder_specs(encoders: dict[str, Embedder]) -> dict[str, EncoderSpec]:
    """What the index needs to know of each encoder."""
    return {name: EncoderSpec(name, model.name, model.identity, model.dimension) for name, model in encoders.items()}


class Library:
    """Documents, their passages and the index over them.

    ``index`` is a ``PassageIndex`` or the folder of a local one (SQLite + FAISS). ``embedder``
    is the dense model (the configurable sentence-transformers model); ``crosslingual`` an
    optional second multilingual encoder fused with it. Opened without encoders, a library can
    list, read and delete documents but not search or add. ``budgets`` bound what one document
    may cost (its characters and passages are checked here; readers check the rest).
    """

    def __init__(
        self,
        index: PassageIndex | Path | str,
        embedder: Embedder | None = None,
        crosslingual: Embedder | None = None,
        progress: bool = True,
        budgets: Budgets = DEFAULT_BUDGETS,
        exact_search_limit: int = DEFAULT_EXACT_LIMIT,
        read_only: bool = False,
    ) -> None:
        self.budgets = budgets
        # question vectors cached, every encoder call timed (exported by /metrics)
        self.encoders = {
            name: model if isinstance(model, ServingEncoder) else ServingEncoder(name, model)
            for name, model in named_encoders(embedder, crosslingual).items()
        }
        self.embedder = self.encoders.get("dense")
        self.warmed_up = False
        self.progress = progress
        if isinstance(index, str | Path):
            from qa.index.local import LocalPassageIndex

            index = LocalPassageIndex(
                Path(index), encoder_specs(self.encoders), exact_limit=exact_search_limit, read_only=read_only
            )
        self.index: PassageIndex = index
        self._sentence_vectors = {
            name: VectorCache(model.embed_passages_now, model.dimension) for name, model in self.encoders.items()
        }
        for name in self.encoders:
            self._refresh_stored_vectors(name)
        self._refresh_stored_terms()

    # -- migrations ----------------------------------------------------------------------------
    def _refresh_stored_vectors(self, encoder: str) -> None:
        """Embed stored passages whose vectors for this encoder are missing or came from another model.

        Progress is committed batch by batch, so an interrupted refresh resumes where it stopped.
        """
        model = self.encoders[encoder]
        stamp = f"{model.identity}|input {EMBEDDING_INPUT_VERSION}"
        if self.index.meta(f"model_identity:{encoder}") == stamp:
            return
        stored_keys = self.index.embedding_keys(encoder)
        stale = [
            (stored.key, key, embedding_input(stored.passage))
            for stored in self.index.iter_passages()
            if stored_keys.get(stored.key) != (key := embedding_key(model.identity, embedding_input(stored.passage)))
        ]
        if stale and self.index.read_only:
            raise ReadOnlyIndex(
                f"{len(stale)} stored passages need new {encoder} vectors (the model is now {model.name}), which a"
                " read-only index cannot store: open it once writable (without --read-only) to embed them"
            )
        if self.index.read_only:
            return
        if stale:
            log.info("%s encoder is now %s: embedding %d stored passages", encoder, model.name, len(stale))
        with self._progress_bar(len(stale), f"embedding ({encoder})") as bar:
            for start in range(0, len(stale), MIGRATION_BATCH):
                batch = stale[start : start + MIGRATION_BATCH]
                vectors = model.embed_passages([text for _, _, text in batch], progress=bar.update, indexing=True)
                self.index.write_embeddings(
                    encoder, [(key, Embedding(ekey, vector)) for (key, ekey, _), vector in zip(batch, vectors)]
                )
        self.index.set_meta(f"model_identity:{encoder}", stamp)

    def _refresh_stored_terms(self) -> None:
        """Recompute lexical terms when the term rules changed (cheap: no model involved)."""
        if self.index.meta("lexical_version") == LEXICAL_VERSION:
            return
        if self.index.read_only:
            raise ReadOnlyIndex(
                "the index's keyword terms were made by other rules, which a read-only index cannot update:"
                " open it once writable (without --read-only)"
            )
        updates = [(stored.key, *passage_terms(stored.passage)) for stored in self.index.iter_passages()]
        for start in range(0, len(updates), 1000):
            self.index.update_terms(updates[start : start + 1000])
        self.index.set_meta("lexical_version", LEXICAL_VERSION)

    def _progress_bar(self, total: int, description: str) -> tqdm:
        return tqdm(total=total, desc=description, unit="passage", disable=not self.progress or total == 0)

    def _require_encoders(self) -> None:
        if not self.encoders:
            raise InvalidInput("this library was opened without encoders: it can list and delete, not search or add")

    def warm_up(self) -> float:
        """Load what the first questions would otherwise wait for; returns the seconds it took.

        jieba's dictionary, the pinyin table and the bilingual dictionary load lazily (1-2 s each), so do
        jieba's part-of-speech tables (~1 s, for the names a quantity is asked of: qa.ranking.names), and
        each encoder's first call is slow; a server calls this before it accepts requests.
        """
        started = time.perf_counter()
        for question in ("城市管理应该像什么一样精细？", "Who is Li Xiaona?"):
            self._query(question, tuple(self.encoders))
            question_terms(question, load_dictionary())
        question_terms("北京的常住人口是多少？", load_dictionary())
        self.warmed_up = True
        return time.perf_counter() - started

    def encoder_stats(self) -> list[EncoderStats]:
        """Each encoder's call timings and question-cache counts since the library opened."""
        return [encoder.stats() for encoder in self.encoders.values() if isinstance(encoder, ServingEncoder)]

    def checkpoint(self) -> None:
        """Persist the index's derived state now (the local home writes its vector snapshots)."""
        self.index.checkpoint()

    def close(self) -> None:
        """Persist what is pending and release the index."""
        self.index.close()

    # -- documents ---------------------------------------------------------------------------
    def add_document(
        self,
        text: str,
        document_id: str | None = None,
        title: str | None = None,
        metadata: dict | None = None,
        source: str = "api",
        progress: Callable[[int, int], None] | None = None,
    ) -> AddResult:
        """Index a document, or replace the one with the same id; unchanged passages are not re-embedded.

        Args:
            text: the document's full text.
            document_id: its id; by default derived from the text, so posting the same text twice is harmless.
            title: shown with its passages; by default the document's top heading or its id.
            metadata: any JSON object, returned with the document and usable as a search filter.
            source: where it came from (``api``, ``upload:<name>``, ``corpus:<path>``).
            progress: called as ``progress(embedded, total)`` before embedding, after every batch
                (passages of all encoders) and just before writing; an exception it raises stops the
                work, and nothing is written.

        BudgetExceeded when the text has more than ``max_document_chars`` characters or makes more
        than ``max_document_passages`` passages; EmptyDocument when nothing visible is left.
        """
        self._require_encoders()
        plan = self._plan(NewDocument(text, document_id, title, metadata, source))
        if isinstance(plan, AddResult):
            return plan
        new_passages, fresh, embedded_now = self._prepare_passages(plan.passages, progress)
        if progress:  # the last moment to stop: nothing is written yet
            progress(embedded_now, embedded_now)
        return self._write(plan, new_passages, fresh)

    def add_documents(self, documents: Sequence[NewDocument]) -> list[AddResult | QAError]:
        """Index several documents, their new passages embedded together (batches across documents).

        Each document is checked and written on its own, as ``add_document`` does it; one that
        cannot be indexed (bad id, over budget, empty) gets its error in its place of the result,
        and the others go on. ``qa add`` of a folder uses this.
        """
        self._require_encoders()
        planned: list[_PlannedDocument | AddResult | QAError] = []
        for new in documents:
            try:
                planned.append(self._plan(new))
            except QAError as error:
                planned.append(error)
        to_write = [plan for plan in planned if isinstance(plan, _PlannedDocument)]
        prepared, fresh, _ = self._prepare_passages([p for plan in to_write for p in plan.passages])
        results: list[AddResult | QAError] = []
        position = 0
        for plan in planned:
            if not isinstance(plan, _PlannedDocument):
                results.append(plan)
                continue
            count = len(plan.passages)
            results.append(self._write(plan, prepared[position : position + count], fresh[position : position + count]))
            position += count
        return results

    def _plan(self, new: NewDocument) -> _PlannedDocument | AddResult:
        """Check and split a document; an ``AddResult`` when it is stored unchanged already."""
        document_id = self.admit_document(new.text, new.document_id, new.title, new.metadata, new.source)
        metadata = dict(new.metadata or {})
        digest = content_hash(new.text, new.title, metadata, new.source)
        existing = self.index.document(document_id)
        if existing is not None and existing.content_hash == digest:
            return AddResult(existing, "unchanged", embedded=0, reused=existing.passages)
        passages = split_document(new.text, document_id, new.title, max_passages=self.budgets.max_document_passages)
        if not passages:
            raise EmptyDocument(f"document {document_id!r} has no text to index")
        document = Document(
            id=document_id,
            title=passages[0].document_title,
            source=new.source,
            metadata=metadata,
            content_hash=digest,
            passages=len(passages),
        )
        return _PlannedDocument(document, new.text, passages, replaces=existing is not None)

    def _write(self, plan: _PlannedDocument, passages: Sequence[NewPassage], fresh: Sequence[bool]) -> AddResult:
        """Write a planned document; ``fresh`` says which passages the dense model embedded just now."""
        stored = self.index.write_document(plan.document, plan.text, passages)
        # distinct inputs: a passage repeated in the document was embedded once
        embedded = len({new.embeddings["dense"].embedding_key for new, now in zip(passages, fresh) if now})
        status = "replaced" if plan.replaces else "added"
        return AddResult(stored, status, embedded=embedded, reused=len(passages) - embedded)

    def admit_document(
        self,
        text: str,
        document_id: str | None = None,
        title: str | None = None,
        metadata: dict | None = None,
        source: str = "api",
    ) -> str:
        """The checks of ``add_document`` that cost next to nothing, made before a document is queued.

        Returns the id it will be stored under (``default_document_id`` when none is given); raises
        what ``add_document`` would for a bad id, text over ``max_document_chars`` or no visible text.
        """
        if not isinstance(text, str):
            raise InvalidInput("document text must be a string")
        if document_id is None:
            document_id = default_document_id(text, title, metadata, source)
        validate_document_id(document_id)
        check_document_chars(len(text), self.budgets, f"document {document_id!r}")
        if not has_visible_text(text):
            raise EmptyDocument(
                f"document {document_id!r} has no visible text, only blank space or invisible characters "
                "(zero-width spaces, format or control characters)"
            )
        return document_id

    def _prepare_passages(
        self, passages: Sequence[Passage], progress: Callable[[int, int], None] | None = None
    ) -> tuple[list[NewPassage], list[bool], int]:
        """Vectors (reused by embedding key, or computed now) and terms for each passage.

        Returns the passages, for each whether the dense model embedded it now, and how many
        embeddings all encoders computed; ``progress(embedded, total)`` counts the latter.
        """
        inputs = [embedding_input(p) for p in passages]
        keys = {name: [embedding_key(model.identity, text) for text in inputs] for name, model in self.encoders.items()}
        vectors = {name: self.index.vectors_for(name, keys[name]) for name in self.encoders}
        missing = {
            name: {key: text for key, text in zip(keys[name], inputs) if key not in vectors[name]}
            for name in self.encoders
        }
        total = sum(map(len, missing.values()))
        done = 0
        counting = threading.Lock()  # encoders report from their own threads
        if progress:
            progress(done, total)

        def counter(bar: tqdm) -> Callable[[int], None]:
            def advance(count: int) -> None:
                nonlocal done
                with counting:
                    bar.update(count)
                    done += count
                    if progress:
                        progress(done, total)

            return advance

        # the encoders' batches compute at once (in the indexing threads, ``qa.vectors.serving``)
        # while this thread finds the passages' keyword terms
        with ExitStack() as bars:
            pending = {}
            try:
                for name in [name for name in self.encoders if missing[name]]:
                    bar = bars.enter_context(self._progress_bar(len(missing[name]), f"embedding ({name})"))
                    pending[name] = self.encoders[name].start_passages(list(missing[name].values()), counter(bar))
                terms_and_names = list(map(passage_terms, passages))
                for name, computing in pending.items():
                    vectors[name].update(zip(missing[name], computing.result()))  # re-raises a batch's error
            except BaseException:
                for computing in pending.values():
                    computing.cancel()
                raise
        embeddings = {name: [Embedding(key, vectors[name][key]) for key in keys[name]] for name in self.encoders}
        new_passages = [
            NewPassage(
                passage=p,
                embeddings={name: embeddings[name][i] for name in self.encoders},
                terms=terms,
                names=names,
            )
            for i, (p, (terms, names)) in enumerate(zip(passages, terms_and_names))
        ]
        dense = missing.get("dense", {})
        return new_passages, [key in dense for key in keys.get("dense", [])] or [False] * len(passages), total

    def remove_document(self, document_id: str) -> Document:
        """Delete a document; its passages leave every search at once. NotFound when unknown."""
        document = self.index.delete_document(document_id) if isinstance(document_id, str) else None
        if document is None:
            raise NotFound(f"no document with id {document_id!r}")
        return document

    def document(self, document_id: str) -> Document:
        """A document's record; NotFound when unknown."""
        document = self.index.document(document_id) if isinstance(document_id, str) else None
        if document is None:
            raise NotFound(f"no document with id {document_id!r}")
        return document

    def documents(self, offset: int = 0, limit: int = 100) -> list[Document]:
        """A page of documents in id order."""
        return self.index.documents(offset, limit)

    def document_passages(self, document_id: str) -> list[Passage]:
        """A document's passages in reading order; NotFound when unknown."""
        self.document(document_id)
        return [stored.passage for stored in self.index.document_passages(document_id)]

    # -- searching ---------------------------------------------------------------------------
    def count(self) -> int:
        """Number of searchable passages (including those another process added)."""
        return self.index.count_passages()

    def count_documents(self) -> int:
        """Number of documents."""
        return self.index.count_documents()

    def status(self) -> dict[str, object]:
        """What is served: passage and document counts, the dense model, where the index lives."""
        return {
            "passages": self.count(),
            "documents": self.count_documents(),
            "model": self.embedder.name if self.embedder else None,
            "dimension": self.embedder.dimension if self.embedder else None,
            "index": self.index.location,
            "read_only": self.index.read_only,
        }

    def passage(self, passage_id: str) -> Passage:
        """One passage by id; NotFound when unknown."""
        return self._stored_passage(passage_id).passage

    def _stored_passage(self, passage_id: str) -> StoredPassage:
        stored = self.index.passage(passage_id) if isinstance(passage_id, str) else None
        if stored is None:
            raise NotFound(f"no passage with id {passage_id!r}")
        return stored

    def ask(
        self,
        question: str,
        top_k: int = 5,
        mode: str = "hybrid",
        min_confidence: float = 0.0,
        where: PassageFilter | None = None,
    ) -> Answer:
        """The passages that best answer a question, best first, with the answering sentences marked.

        Args:
            question: in any language the models know.
            top_k: how many passages to return at most (1 to ``MAX_TOP_K``).
            mode: ``hybrid`` (all channels fused), ``dense`` (the encoders only) or ``lexical`` (keywords only).
            min_confidence: drop results whose confidence is below this, in [0, 1].
            where: search only some documents (by id and/or metadata values).
        """
        return self.ask_batch([question], top_k, mode, min_confidence, where)[0]

    def ask_batch(
        self,
        questions: Sequence[str],
        top_k: int = 5,
        mode: str = "hybrid",
        min_confidence: float = 0.0,
        where: PassageFilter | None = None,
    ) -> list[Answer]:
        """One ``Answer`` per question, in order (arguments as for ``ask``); the questions are embedded as one batch."""
        questions = [_require_text(question, "question") for question in questions]
        top_k = _require_top_k(top_k)
        if not 0.0 <= min_confidence <= 1.0:
            raise InvalidInput("min_confidence must be between 0 and 1")
        queries = self._queries(questions, self._mode_channels(mode))
        return [
            self._answer(question, query, top_k, mode, min_confidence, where)
            for question, query in zip(questions, queries)
        ]

    def _answer(
        self,
        question: str,
        query: tuple[dict[str, np.ndarray], list[str], list[str]],
        top_k: int,
        mode: str,
        min_confidence: float,
        where: PassageFilter | None,
    ) -> Answer:
        """``ask`` for a question already embedded."""
        depth = max(top_k, CONFIDENCE_CONTEXT)
        ranking = self.rank(question, mode, depth=depth, where=where, query=query)
        found = ranking.passages
        vectors = ranking.vectors
        keys = [key for key, _ in ranking.ranked]
        checked = ranking.terms.quantity is not None
        # scored once: every result's sentences when the asked quantity is checked, else the returned ones'
        sentences = {key: ranking.scored_sentences(key) for key in (keys if checked else keys[:top_k])}
        # confidence looks at the results after the last one returned, to measure margins
        everything = result_confidences(ranking.ranked, ranking.channels, ranking.coverage, mode)
        if ranking.replaced is not None:
            # the answering part stands for the result it replaced, whose coverage holds the subject's name that
            # its own text leaves out: it keeps that result's confidence where its own is lower
            everything[0] = max(everything[0], everything[keys.index(ranking.replaced)])
        if checked:
            names = ranking.terms.names
            everything = unstated_lowered(
                everything,
                [
                    sentences[key].answers_in_one_sentence
                    and names_any(names, found[key].text, found[key].heading or "")
                    for key in keys
                ],
            )
        office = ranking.terms.office
        if office:
            everything = unstated_lowered(
                everything, [names_office(office, found[key].text, found[key].heading or "") for key in keys]
            )
        everything = non_increasing(everything)
        confidences = everything[:top_k]
        ranked = ranking.ranked[:top_k]
        highlights = highlight_passages(
            [sentences[key] for key, _ in ranked],
            ranking.terms,
            vectors.get("crosslingual", vectors.get("dense")),
            self._sentence_encoder(vectors),
        )
        hits = [
            Hit(
                found[key],
                rank=rank,
                score=round(score, 6),
                scores=channel_scores(ranking.channels, key),
                confidence=confidence,
                highlights=tuple(marks),
            )
            for rank, ((key, score), confidence, marks) in enumerate(zip(ranked, confidences, highlights), start=1)
        ]
        answerable = max(everything[:ANSWERABLE_DEPTH], default=0.0) >= ANSWERABLE_CONFIDENCE[mode]
        kept = [hit for hit in hits if hit.confidence >= min_confidence]
        return Answer(question=question, mode=mode, hits=kept, answerable=answerable)


    def context(
        self,
        question: str,
        max_chars: int = 2000,
        top_k: int = 5,
        min_confidence: float = 0.0,
        where: PassageFilter | None = None,
    ) -> Context:
        """Prompt-ready text for a chatbot: the best passages marked [1], [2]..., with citations.

        See ``qa.ranking.context``; the passages are those ``ask`` returns (hybrid mode).
        """
        answer = self.ask(question, top_k, min_confidence=min_confidence, where=where)
        evidence = [(hit.passage, hit.highlights[0] if hit.highlights else None) for hit in answer.hits]
        documents: dict[str, list[Passage]] = {}

        def neighbour(passage: Passage, step: int) -> Passage | None:
            if passage.document_id not in documents:
                stored = self.index.document_passages(passage.document_id)
                documents[passage.document_id] = [item.passage for item in stored]
            in_order = documents[passage.document_id]
            position = passage.position + step
            return in_order[position] if 0 <= position < len(in_order) else None

        return build_context(evidence, neighbour, max_chars, answer.answerable)

    def encoder_named(self, name: str) -> str | None:
        """The role (``dense``, ``crosslingual``) of the encoder with this model name, or None."""
        return next((role for role, model in self.encoders.items() if model.name == name), None)

    def embed(self, texts: Sequence[str], input_type: str = "query", encoder: str = "dense") -> tuple[np.ndarray, int]:
        """(vectors, tokens read) for texts, embedded as questions (``query``) or as passages (``passage``)."""
        self._require_encoders()
        model = self.encoders[encoder]
        vectors = model.embed_queries(texts) if input_type == "query" else model.embed_passages(texts)
        return vectors, sum(model.count_tokens(texts))

    def term_weights(self, terms: Sequence[str]) -> dict[str, float]:
        """Rarity (inverse document frequency) of each term in this collection."""
        frequencies = self.index.term_frequencies(list(terms))
        return rarity_weights(terms, frequencies.__getitem__, max(1, self.count()))

    def rank(
        self,
        question: str,
        mode: str = "hybrid",
        depth: int = CONFIDENCE_CONTEXT,
        where: PassageFilter | None = None,
        query: tuple[dict[str, np.ndarray], list[str], list[str]] | None = None,
    ) -> Ranking:
        """The ``depth`` best passages for a question, best first, with what ranked them.

        Four stages (qa.ranking.fusion): the channels' scores are fused over every candidate, then
        the best ``RERANKED`` are read and scored again with their text's evidence: the share of
        the question's terms they contain in their own language, and a prior against credits; the
        first ``FOCUSED`` of those are ordered again with their best sentence; then the part of the
        first result's section that says the asked thing may take its place (same-script questions).
        The dense and lexical modes keep to their channels (plus the prior against credits; coverage
        only feeds their confidence). Passages that another process deleted after this index last
        caught up are left out. ``query`` is the question already embedded.
        """
        channels = self._mode_channels(mode)
        vectors, terms, names = query if query is not None else self._query(question, channels)
        asked = question_terms(question, load_dictionary())
        with self.index.reading() as view:
            scored = view.score(Query(vectors, terms, names), channels, where)
            first = fuse(scored)[: max(RERANKED, depth)]
            found = {key: stored.passage for key, stored in view.passages(key for key, _ in first).items()}
        forms = {key: passage_forms(passage.text) for key, passage in found.items()}
        coverage = term_evidence(asked, forms)
        evidence = {
            key: PassageEvidence(coverage[key], forms[key].script == asked.script, passage.kind == CREDIT)
            for key, passage in found.items()
        }
        weight = COVERAGE_WEIGHT if mode == "hybrid" else 0.0
        ranked = [item for item in rerank(first, scored, evidence, coverage_weight=weight) if item[0] in found]
        sentences = {}
        replaced = None
        if mode == "hybrid":
            sentences = {
                key: score_sentences(found[key].text, asked, passage_subject(found[key])) for key, _ in ranked[:FOCUSED]
            }
            ranked = focus(ranked, {key: passage.best for key, passage in sentences.items()})
            if ranked and forms[ranked[0][0]].script == asked.script:
                pool = {key for channel in scored for key in channel.scores}
                first = ranked[0][0]
                ranked = self._answering_part(ranked, pool, found, forms, coverage, asked)
                replaced = first if ranked[0][0] != first else None
        return Ranking(ranked[:depth], scored, vectors, asked, found, coverage, sentences, replaced)

    def _answering_part(
        self,
        ranked: list[tuple[int, float]],
        pool: set[int],
        found: dict[int, Passage],
        forms: dict[int, PassageForms],
        coverage: dict[int, float],
        asked: QuestionTerms,
    ) -> list[tuple[int, float]]:
        """The fourth stage (qa.ranking.fusion.answering_part) over the first result's neighbours in its section
        that the channels scored (a part they did not find has no scores for confidence). A part it brings in
        joins ``found`` and ``coverage`` (its sentences are scored when asked for, ``Ranking.scored_sentences``)."""
        first = found[ranked[0][0]]
        with self.index.reading() as view:
            near = view.neighbours(
                first.document_id, first.position - ANSWERING_PART_REACH, first.position + ANSWERING_PART_REACH
            )
        parts = [
            stored
            for stored in near
            if stored.key in pool and stored.passage.heading == first.heading and stored.passage.kind != CREDIT
        ]
        keys = [stored.key for stored in parts]
        if len(parts) < 2 or ranked[0][0] not in keys:
            return ranked
        best = part_scores([stored.passage.text for stored in parts], asked, passage_subject(first))
        reordered = answering_part(ranked, keys, best)
        key = reordered[0][0]
        if key not in found:
            found[key] = parts[keys.index(key)].passage
            coverage[key] = term_evidence(asked, {**forms, key: passage_forms(found[key].text)})[key]
        return reordered

    def _query(self, question: str, channels: Sequence[str]) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
        """What a question is searched with: a vector per encoder channel, its terms, its pinyin name terms."""
        return self._queries([question], channels)[0]

    def _queries(
        self, questions: Sequence[str], channels: Sequence[str]
    ) -> list[tuple[dict[str, np.ndarray], list[str], list[str]]]:
        """``_query`` for many questions, each encoder called once for all of them."""
        cleaned = [clean_text(question) for question in questions]
        batches = {
            name: self.encoders[name].embed_queries([to_simplified(text) for text in cleaned])
            for name in channels
            if name in self.encoders
        }
        return [
            ({name: batch[i] for name, batch in batches.items()}, query_terms(text), query_name_terms(question))
            for i, (question, text) in enumerate(zip(questions, cleaned))
        ]

    def _mode_channels(self, mode: str) -> tuple[str, ...]:
        if mode not in MODE_CHANNELS:
            raise InvalidInput(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self._require_encoders()
        return tuple(name for name in MODE_CHANNELS[mode] if name in self.encoders or name in LEXICAL_CHANNELS)

    def _sentence_encoder(self, vectors: dict[str, np.ndarray]) -> Callable[[list[str]], np.ndarray] | None:
        """Sentences are compared with the question under the cross-lingual encoder when there is one."""
        for name in ("crosslingual", "dense"):
            if name in vectors:
                return self._sentence_vectors[name]
        return None

    def similar(self, text: str, top_k: int = 5, where: PassageFilter | None = None) -> list[Hit]:
        """The passages most similar to a text (compared as passage to passage by the encoders).

        Each hit's ``confidence`` is its similarity to the text in [0, 1] (``similarity``, capped at
        the similarity of the hit above it), and its highlights are its sentences closest to the text.
        """
        text = _require_text(text, "text")
        top_k = _require_top_k(top_k)
        self._require_encoders()
        cleaned = to_simplified(clean_text(text))
        vectors = {name: model.embed_passages_now([cleaned])[0] for name, model in self.encoders.items()}
        return self._similar_hits(text, vectors, top_k, where=where)

    def similar_to_passage(self, passage_id: str, top_k: int = 5) -> list[Hit]:
        """The neighbours of a stored passage, itself excluded (confidence and highlights as in ``similar``)."""
        stored = self._stored_passage(passage_id)
        top_k = _require_top_k(top_k)
        self._require_encoders()
        with self.index.reading() as view:
            try:
                vectors = view.vectors(stored.key)
            except KeyError:  # removed since it was looked up
                raise NotFound(f"no passage with id {passage_id!r}") from None
        return self._similar_hits(stored.passage.text, vectors, top_k, exclude=stored.key)

    def _similar_hits(
        self,
        text: str,
        vectors: dict[str, np.ndarray],
        top_k: int,
        exclude: int | None = None,
        where: PassageFilter | None = None,
    ) -> list[Hit]:
        with self.index.reading() as view:
            scored = view.score(Query(vectors), tuple(vectors), where)
            ranked = [(key, score) for key, score in fuse(scored) if key != exclude][:top_k]
            found = view.passages(key for key, _ in ranked)
        ranked = [(key, score) for key, score in ranked if key in found]
        compared = "crosslingual" if "crosslingual" in vectors else "dense"
        terms = question_terms(text, None)
        highlights = highlight_passages(
            [score_sentences(found[key].passage.text, terms) for key, _ in ranked],
            terms,
            vectors[compared],
            self._sentence_vectors[compared],
            encode_all=True,
        )
        by_name = {channel.name: channel for channel in scored}
        similarities = non_increasing([similarity(by_name[compared].scores.get(key, 0.0)) for key, _ in ranked])
        return [
            Hit(
                found[key].passage,
                rank=rank,
                score=round(score, 6),
                scores=channel_scores(scored, key),
                confidence=confidence,
                highlights=tuple(marks),
            )
            for rank, ((key, score), confidence, marks) in enumerate(zip(ranked, similarities, highlights), start=1)
        ]


def similarity(cosine: float) -> float:
    """A cosine as a similarity in [0, 1] (opposite or unrelated texts: 0), rounded for display.

    Taken under the cross-lingual encoder when there is one: its cosines spread from about 0
    (unrelated) to 1 (the same meaning), where e5's sit between 0.7 and 0.95 for almost any pair.
    """
    return round(min(1.0, max(0.0, cosine)), 4)


def channel_scores(channels: Sequence[ChannelScores], key: int) -> dict[str, float]:
    """Each channel's raw score of one passage, as a hit reports it."""
    return {channel.name: round(channel.scores.get(key, 0.0), 6) for channel in channels}


def _require_top_k(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOP_K:
        raise InvalidInput(f"top_k must be an integer between 1 and {MAX_TOP_K}, got {value!r}")
    return value


def _require_text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string")
    if not value.strip():
        raise InvalidInput(f"{name} must not be empty")
    return value
