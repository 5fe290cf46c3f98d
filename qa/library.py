"""The library: the core object of the service. Documents go in, ranked passages come out.

text → passages (qa.documents.passages) → vectors (qa.vectors.embedder) → index (qa.index.store + qa.index.vector_index)
→ results (this module). Usable from Python, the CLI and the HTTP API alike.

Durability: the SQLite store is written first, in one transaction per document; the
in-memory FAISS index follows under a write lock, and a FAISS snapshot is written
atomically in the background. On start the snapshot is used only if it matches the
store's revision and the model; otherwise it is rebuilt from the stored vectors, so a
crash at any point loses nothing that was acknowledged and re-embeds nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from qa.documents.passages import Passage, split_document
from qa.documents.readers import read_document_file, supported_files
from qa.documents.text import clean_text, to_simplified
from qa.errors import EmptyDocument, InvalidInput, NotFound
from qa.files import file_sha256, read_json, write_json_atomically
from qa.index.locks import ReadWriteLock
from qa.index.store import Document, Embedding, NewPassage, PassageFilter, Store, StoredPassage
from qa.index.vector_index import VectorIndex
from qa.ranking.confidence import ANSWERABLE_CONFIDENCE, ANSWERABLE_DEPTH, result_confidences
from qa.ranking.fusion import MODE_CHANNELS, MODES, ChannelScores, fuse, moments_from_top
from qa.ranking.highlights import Highlight, highlight_passages
from qa.vectors.embedder import Embedder, VectorCache
from qa.vectors.lexical import (
    LEXICAL_VERSION,
    lexical_terms,
    match_expression,
    name_terms,
    query_name_terms,
    query_terms,
    rarity_weights,
    term_coverage,
)

log = logging.getLogger(__name__)

STORE_FILE = "passages.sqlite3"
VECTORS_FILE = "vectors.faiss"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = 1
# Bump when the text given to the model for a passage changes: every passage is then re-embedded.
EMBEDDING_INPUT_VERSION = 2
CHECKPOINT_DELAY_SECONDS = 2.0
CANDIDATES_PER_CHANNEL = 100
LEXICAL_SCORED = 1000
CONFIDENCE_CONTEXT = 10
LEXICAL_CHANNELS = ("lexical", "names")
DOCUMENT_ID_PATTERN = re.compile(r"^[\w][\w.\-]{0,127}$")


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
class Ranking:
    """Intermediate result of a search: fused (key, score) pairs and what produced them."""

    ranked: list[tuple[int, float]]
    channels: list[ChannelScores]
    vectors: dict[str, np.ndarray]
    terms: list[str]
    passages: dict[int, Passage]


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


def embedding_input(passage: Passage) -> str:
    """The text the models embed for a passage: in simplified characters.

    Folding both sides to one script lets a simplified question meet a traditional passage
    as if both were written alike (e5 lost 3 points of Recall@1 across scripts on drcd-dev,
    and nothing within one script).
    """
    return to_simplified(passage.text)


def passage_terms(passage: Passage) -> tuple[list[str], list[str]]:
    """What keyword search indexes for a passage: (terms, pinyin name terms)."""
    return lexical_terms(passage.text), name_terms(passage.text)


def embedding_key(model_identity: str, text: str) -> str:
    """Digest of (model, input): equal keys mean the stored vector can be reused."""
    return hashlib.sha256(f"{model_identity}\0{EMBEDDING_INPUT_VERSION}\0{text}".encode()).hexdigest()


def document_id_for(name: str) -> str:
    """A valid document id made from a file name or title."""
    slug = re.sub(r"[^\w.\-]+", "-", name.strip()).strip("-.")[:128]
    return slug or "document"


def validate_document_id(document_id: str) -> str:
    """The id itself, or InvalidInput explaining the allowed form."""
    if not isinstance(document_id, str) or not DOCUMENT_ID_PATTERN.fullmatch(document_id):
        raise InvalidInput(
            "document id must be 1-128 letters, digits, '_', '-' or '.', starting with a letter or digit"
        )
    return document_id


class Library:
    """Documents, their passages and the indexes over them, kept in one folder.

    ``encoders`` maps a role to a model: ``dense`` (the configurable sentence-transformers
    model) always, ``crosslingual`` (a second multilingual encoder fused with it) optionally.
    Each has its own stored vectors and its own FAISS index.
    """

    def __init__(
        self,
        index_dir: Path,
        embedder: Embedder,
        crosslingual: Embedder | None = None,
        progress: bool = True,
    ) -> None:
        started = time.perf_counter()
        self.index_dir = Path(index_dir)
        self.embedder = embedder
        self.encoders: dict[str, Embedder] = {"dense": embedder}
        if crosslingual is not None:
            self.encoders["crosslingual"] = crosslingual
        self.progress = progress
        self._sentence_vectors = {name: VectorCache(model) for name, model in self.encoders.items()}
        self.store = Store(self.index_dir / STORE_FILE)
        remove_abandoned_temporary_files(self.index_dir)
        self._lock = ReadWriteLock()
        self._checkpoint_lock = threading.Lock()
        self._checkpoint_timer: threading.Timer | None = None
        for name in self.encoders:
            self._refresh_stored_vectors(name)
        self._refresh_stored_terms()
        self._revision = self.store.revision()
        self.indexes: dict[str, VectorIndex] = {}
        origins = set()
        for name in self.encoders:
            self.indexes[name], origin = self._open_vector_index(name)
            origins.add(origin)
        if origins != {"snapshot"}:
            self.checkpoint()
        log.info(
            "index %s: %d passages in %d documents (%s) in %.2f s",
            self.index_dir, self.count(), self.store.count_documents(), ", ".join(sorted(origins)),
            time.perf_counter() - started,
        )

    # -- opening ---------------------------------------------------------------------------
    def _snapshot_file(self, encoder: str) -> Path:
        return self.index_dir / (VECTORS_FILE if encoder == "dense" else f"vectors-{encoder}.faiss")

    def _open_vector_index(self, encoder: str) -> tuple[VectorIndex, str]:
        """The snapshot when it matches the store and model, otherwise a rebuild from stored vectors."""
        model = self.encoders[encoder]
        manifest = read_json(self.index_dir / MANIFEST_FILE) or {}
        encoders = manifest.get("encoders")
        recorded = encoders.get(encoder) if isinstance(encoders, dict) else None
        recorded = recorded if isinstance(recorded, dict) else {}
        snapshot = self._snapshot_file(encoder)
        if (
            manifest.get("format") == MANIFEST_FORMAT
            and manifest.get("revision") == self._revision
            and recorded.get("identity") == model.identity
            and snapshot.exists()
        ):
            try:
                # the digest ties the manifest to this very file, not to an older copy put back
                if recorded.get("sha256") == file_sha256(snapshot):
                    index = VectorIndex.load(snapshot)
                    if index.dimension == model.dimension and len(index) == manifest.get("passages"):
                        return index, "snapshot"
            except (OSError, RuntimeError) as error:
                log.warning("vector snapshot %s unreadable (%s): rebuilding it from the store", snapshot, error)
        index = VectorIndex(model.dimension)
        index.add(*self.store.vectors(encoder, dimension=model.dimension))
        return index, "rebuilt from the store"

    def _refresh_stored_vectors(self, encoder: str) -> None:
        """Embed stored passages whose vectors for this encoder are missing or came from another model.

        Progress is committed batch by batch, so an interrupted refresh resumes where it stopped.
        """
        model = self.encoders[encoder]
        stamp = f"{model.identity}|input {EMBEDDING_INPUT_VERSION}"
        if self.store.meta(f"model_identity:{encoder}") == stamp:
            return
        stored_keys = self.store.embedding_keys(encoder)
        stale = [
            (stored.key, key, embedding_input(stored.passage))
            for stored in self.store.iter_passages()
            if stored_keys.get(stored.key) != (key := embedding_key(model.identity, embedding_input(stored.passage)))
        ]
        if stale:
            log.info("%s encoder is now %s: embedding %d stored passages", encoder, model.name, len(stale))
        with self._progress_bar(len(stale), f"embedding ({encoder})") as bar:
            for start in range(0, len(stale), 256):
                batch = stale[start : start + 256]
                vectors = model.embed_passages([text for _, _, text in batch], progress=bar.update)
                self.store.write_embeddings(
                    encoder, [(key, Embedding(ekey, vector)) for (key, ekey, _), vector in zip(batch, vectors)]
                )
        self.store.set_meta(f"model_identity:{encoder}", stamp)

    def _refresh_stored_terms(self) -> None:
        """Recompute lexical terms when the term rules changed (cheap: no model involved)."""
        if self.store.meta("lexical_version") == LEXICAL_VERSION:
            return
        updates = [(stored.key, *passage_terms(stored.passage)) for stored in self.store.iter_passages()]
        for start in range(0, len(updates), 1000):
            self.store.update_terms(updates[start : start + 1000])
        self.store.set_meta("lexical_version", LEXICAL_VERSION)

    def _progress_bar(self, total: int, description: str) -> tqdm:
        return tqdm(total=total, desc=description, unit="passage", disable=not self.progress or total == 0)

    # -- keeping memory in step with the store ----------------------------------------------
    def _ensure_current(self) -> None:
        """Catch up with writes made by another process (e.g. ``python -m qa add`` beside the server)."""
        if self.store.revision() != self._revision:
            with self._lock.writing():
                self._reconcile()

    def _reconcile(self) -> None:
        """Make every vector index hold exactly the store's passages (caller holds the write lock)."""
        revision = self.store.revision()
        stored = set(self.store.keys().tolist())
        for name, index in self.indexes.items():
            indexed = set(index.keys().tolist())
            index.remove(indexed - stored)
            index.add(*self.store.vectors(name, sorted(stored - indexed), index.dimension))
        self._revision = revision
        self._schedule_checkpoint()

    def _after_own_write(self, writes: int = 1) -> None:
        """Record our own commit; if anyone else committed meanwhile, reconcile (write lock held)."""
        if self.store.revision() != self._revision + writes:
            self._reconcile()
        else:
            self._revision += writes
            self._schedule_checkpoint()

    def warm_up(self) -> float:
        """Load what the first questions would otherwise wait for; returns the seconds it took.

        jieba's dictionary and the pinyin table load lazily (about 1 s each) and each encoder's
        first call is slow; a server calls this before it accepts requests.
        """
        started = time.perf_counter()
        for question in ("城市管理应该像什么一样精细？", "Who is Li Xiaona?"):
            self._query(question, tuple(self.encoders))
        return time.perf_counter() - started

    # -- snapshots ---------------------------------------------------------------------------
    def checkpoint(self) -> None:
        """Write the FAISS snapshot and manifest for the current revision (atomically)."""
        with self._checkpoint_lock, self._lock.reading():
            # the digest of the bytes written here, not of the file re-read: another library on this
            # folder may replace the file in between, and this manifest must not vouch for its copy
            digests = {name: index.save(self._snapshot_file(name)) for name, index in self.indexes.items()}
            write_json_atomically(self.index_dir / MANIFEST_FILE, self._manifest(digests))

    def _manifest(self, digests: dict[str, str]) -> dict:
        return {
            "format": MANIFEST_FORMAT,
            "revision": self._revision,
            "passages": len(self.indexes["dense"]),
            "documents": self.store.count_documents(),
            "model": {
                "name": self.embedder.name,
                "identity": self.embedder.identity,
                "dimension": self.embedder.dimension,
            },
            "encoders": {
                name: {
                    "name": model.name,
                    "identity": model.identity,
                    "dimension": model.dimension,
                    "file": self._snapshot_file(name).name,
                    "sha256": digests[name],
                }
                for name, model in self.encoders.items()
            },
            "embedding_input_version": EMBEDDING_INPUT_VERSION,
            "lexical_version": LEXICAL_VERSION,
            "corpus_fingerprint": self.store.meta("corpus_fingerprint"),
            "store": STORE_FILE,
            "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    def _schedule_checkpoint(self) -> None:
        if self._checkpoint_timer is not None:
            self._checkpoint_timer.cancel()
        self._checkpoint_timer = threading.Timer(CHECKPOINT_DELAY_SECONDS, self._checkpoint_quietly)
        self._checkpoint_timer.daemon = True
        self._checkpoint_timer.start()

    def _checkpoint_quietly(self) -> None:
        try:
            self.checkpoint()
        except Exception:  # a failed snapshot only costs a rebuild from the store at the next start
            log.exception("writing the vector snapshot failed")

    def close(self) -> None:
        """Write a final snapshot and release the database."""
        if self._checkpoint_timer is not None:
            self._checkpoint_timer.cancel()
        self.checkpoint()
        self.store.close()

    # -- documents ---------------------------------------------------------------------------
    def add_document(
        self,
        text: str,
        document_id: str | None = None,
        title: str | None = None,
        metadata: dict | None = None,
        source: str = "api",
    ) -> AddResult:
        """Index a document, or replace the one with the same id; unchanged passages are not re-embedded.

        Args:
            text: the document's full text.
            document_id: its id; by default derived from the text, so posting the same text twice is harmless.
            title: shown with its passages; by default the document's top heading or its id.
            metadata: any JSON object, returned with the document and usable as a search filter.
            source: where it came from (``api``, ``upload:<name>``, ``corpus:<path>``).
        """
        if not isinstance(text, str):
            raise InvalidInput("document text must be a string")
        metadata = dict(metadata or {})
        # canonical JSON: the same metadata with its fields in another order is the same document
        content_hash = hashlib.sha256(
            json.dumps([text, title, metadata, source], ensure_ascii=False, sort_keys=True).encode()
        ).hexdigest()
        document_id = validate_document_id(f"doc-{content_hash[:12]}" if document_id is None else document_id)
        existing = self.store.document(document_id)
        if existing is not None and existing.content_hash == content_hash:
            return AddResult(existing, "unchanged", embedded=0, reused=existing.passages)

        passages = split_document(text, document_id, title)
        if not passages:
            raise EmptyDocument(f"document {document_id!r} has no text to index")
        new_passages, embedded = self._prepare_passages(passages)
        document = Document(
            id=document_id,
            title=passages[0].document_title,
            source=source,
            metadata=metadata,
            content_hash=content_hash,
            passages=len(passages),
        )
        with self._lock.writing():
            removed, added = self.store.write_document(document, text, new_passages)
            keys = np.array(added, dtype=np.int64)
            for name, index in self.indexes.items():
                index.remove(removed)
                index.add(keys, np.stack([new.embeddings[name].vector for new in new_passages]))
            self._after_own_write()
        stored = self.store.document(document_id) or document
        status = "replaced" if existing is not None else "added"
        return AddResult(stored, status, embedded=embedded, reused=len(passages) - embedded)

    def _prepare_passages(self, passages: Sequence[Passage]) -> tuple[list[NewPassage], int]:
        """Vectors (reused by embedding key, or computed now) and terms for each passage.

        Returns the passages and how many of them had to be embedded (by the dense model).
        """
        inputs = [embedding_input(p) for p in passages]
        embeddings: dict[str, list[Embedding]] = {}
        embedded = 0
        for name, model in self.encoders.items():
            keys = [embedding_key(model.identity, text) for text in inputs]
            vectors = self.store.vectors_by_embedding_key(keys)
            missing = {key: text for key, text in zip(keys, inputs) if key not in vectors}
            if missing:
                with self._progress_bar(len(missing), f"embedding ({name})") as bar:
                    vectors.update(zip(missing, model.embed_passages(list(missing.values()), progress=bar.update)))
            embeddings[name] = [Embedding(key, vectors[key]) for key in keys]
            embedded = embedded or len(missing)
        new_passages = [
            NewPassage(
                passage=p,
                embeddings={name: embeddings[name][i] for name in self.encoders},
                terms=terms,
                names=names,
            )
            for i, (p, (terms, names)) in enumerate(zip(passages, map(passage_terms, passages)))
        ]
        return new_passages, embedded

    def remove_document(self, document_id: str) -> Document:
        """Delete a document; its passages leave every search at once. NotFound when unknown."""
        document = self.store.document(document_id)
        if document is None:
            raise NotFound(f"no document with id {document_id!r}")
        with self._lock.writing():
            removed = self.store.delete_document(document_id)
            if removed is None:
                raise NotFound(f"no document with id {document_id!r}")
            for index in self.indexes.values():
                index.remove(removed)
            self._after_own_write()
        return document

    def document(self, document_id: str) -> Document:
        """A document's record; NotFound when unknown."""
        document = self.store.document(document_id)
        if document is None:
            raise NotFound(f"no document with id {document_id!r}")
        return document

    def documents(self, offset: int = 0, limit: int = 100) -> list[Document]:
        """A page of documents in id order."""
        return self.store.documents(offset, limit)

    def document_passages(self, document_id: str) -> list[Passage]:
        """A document's passages in reading order; NotFound when unknown."""
        self.document(document_id)
        return [stored.passage for stored in self.store.passages_of_document(document_id)]

    def sync_corpus(self, paths: Iterable[Path]) -> dict[str, int]:
        """Index the corpus files (files or folders) as documents, when they changed since last time.

        Documents that came from the corpus setting and whose file is gone are removed;
        documents added through the API are left alone.
        """
        named = corpus_files(paths)
        files = [path for path, _ in named]
        fingerprint = hashlib.sha256()
        for path in files:
            fingerprint.update(str(path.resolve()).encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
        summary = {"added": 0, "replaced": 0, "unchanged": 0, "removed": 0}
        if self.store.meta("corpus_fingerprint") == fingerprint.hexdigest():
            summary["unchanged"] = len(files)
            return summary
        sources = set()
        for path, document_id in named:
            source = f"corpus:{path.resolve()}"
            sources.add(source)
            text, title = read_document_file(path)
            result = self.add_document(text, document_id, title=title, source=source)
            summary[result.status] += 1
        for document in self.store.documents_from_source_prefix("corpus:"):
            if document.source not in sources:
                self.remove_document(document.id)
                summary["removed"] += 1
        with self._lock.writing():
            self.store.set_meta("corpus_fingerprint", fingerprint.hexdigest())
            self._after_own_write()
        return summary

    # -- searching ---------------------------------------------------------------------------
    def count(self) -> int:
        """Number of searchable passages (including those another process added)."""
        self._ensure_current()
        return len(self.indexes["dense"])

    def passage(self, passage_id: str) -> Passage:
        """One passage by id; NotFound when unknown."""
        return self._stored_passage(passage_id).passage

    def _stored_passage(self, passage_id: str) -> StoredPassage:
        stored = self.store.passage_by_id(passage_id) if isinstance(passage_id, str) else None
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
            top_k: how many passages to return at most.
            mode: ``hybrid`` (all channels fused), ``dense`` (the encoders only) or ``lexical`` (keywords only).
            min_confidence: drop results whose confidence is below this, in [0, 1].
            where: search only some documents (by id and/or metadata values).
        """
        question = _require_text(question, "question")
        top_k = _require_top_k(top_k)
        if not 0.0 <= min_confidence <= 1.0:
            raise InvalidInput("min_confidence must be between 0 and 1")
        depth = max(top_k, CONFIDENCE_CONTEXT)
        ranking = self.rank(question, mode, depth=depth, fetch=depth, where=where)
        found = ranking.passages
        vectors, terms = ranking.vectors, ranking.terms
        weights = self.term_weights(terms)
        # confidence looks at the results after the last one returned, to measure margins
        everything = result_confidences(ranking.ranked, ranking.channels, self.coverage(ranking, weights), mode)
        confidences = everything[:top_k]
        ranked = ranking.ranked[:top_k]
        highlights = highlight_passages(
            [found[key].text for key, _ in ranked],
            terms,
            weights,
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
        answerable = max(everything[:ANSWERABLE_DEPTH], default=0.0) >= ANSWERABLE_CONFIDENCE
        kept = [hit for hit in hits if hit.confidence >= min_confidence]
        return Answer(question=question, mode=mode, hits=kept, answerable=answerable)

    def term_weights(self, terms: Sequence[str]) -> dict[str, float]:
        """Rarity (inverse document frequency) of each term in this collection."""
        frequencies = self.store.document_frequencies(list(terms))
        return rarity_weights(terms, frequencies.__getitem__, max(1, self.count()))

    def coverage(self, ranking: Ranking, weights: dict[str, float] | None = None) -> dict[int, float]:
        """For each fetched passage of a ranking, the weighted share of the question's terms it contains."""
        weights = self.term_weights(ranking.terms) if weights is None else weights
        return {key: term_coverage(ranking.terms, passage.text, weights) for key, passage in ranking.passages.items()}

    def rank(
        self,
        question: str,
        mode: str = "hybrid",
        depth: int = CONFIDENCE_CONTEXT,
        fetch: int = 0,
        where: PassageFilter | None = None,
    ) -> Ranking:
        """The fused ranking of the ``depth`` best passage keys, with every channel's scores.

        With ``fetch``, the ranked passages are read in the same view of the index, and those that
        another process deleted meanwhile are left out.
        """
        channels = self._mode_channels(mode)
        vectors, terms, names = self._query(question, channels)
        self._ensure_current()
        with self._lock.reading():
            scored = self._score_channels(channels, vectors, terms, names, where)
            ranked = fuse(scored)[:depth]
            found = self.store.passages_by_keys(key for key, _ in ranked) if fetch else {}
        if fetch:
            # passages another process deleted after this index last caught up are no longer results
            ranked = [(key, score) for key, score in ranked if key in found]
        return Ranking(ranked, scored, vectors, terms, {key: stored.passage for key, stored in found.items()})

    def _query(self, question: str, channels: Sequence[str]) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
        """What a question is searched with: a vector per encoder channel, its terms, its pinyin name terms."""
        cleaned = clean_text(question)
        vectors = {
            name: self.encoders[name].embed_queries([to_simplified(cleaned)])[0]
            for name in channels
            if name in self.encoders
        }
        return vectors, query_terms(cleaned), query_name_terms(question)

    def _mode_channels(self, mode: str) -> tuple[str, ...]:
        if mode not in MODE_CHANNELS:
            raise InvalidInput(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        return tuple(name for name in MODE_CHANNELS[mode] if name in self.encoders or name in LEXICAL_CHANNELS)

    def _sentence_encoder(self, vectors: dict[str, np.ndarray]) -> Callable[[list[str]], np.ndarray] | None:
        """Sentences are compared with the question under the cross-lingual encoder when there is one."""
        for name in ("crosslingual", "dense"):
            if name in vectors:
                return self._sentence_vectors[name]
        return None

    def _score_channels(
        self,
        channels: Sequence[str],
        vectors: dict[str, np.ndarray],
        terms: list[str],
        names: list[str],
        where: PassageFilter | None = None,
    ) -> list[ChannelScores]:
        """Candidates of every channel, each scored exactly by every channel (caller holds the read lock).

        A filter is applied inside FAISS and inside the FTS query, so each channel still
        brings its best candidates among the allowed passages.
        """
        expressions = {"lexical": match_expression(terms, "terms"), "names": match_expression(names, "names")}
        allowed = self.store.filtered_keys(where) if where is not None else None
        candidates: dict[str, dict[int, float]] = {}
        lexical_scores: dict[str, dict[int, float]] = {}
        moments: dict[str, tuple[float, float]] = {}
        for name in channels:
            if name in LEXICAL_CHANNELS:
                # one query scores the best LEXICAL_SCORED matches: its head are the candidates, the rest
                # completes other channels' candidates (asking FTS5 for given rowids was 50 ms a query)
                found = self.store.lexical_search(expressions[name], LEXICAL_SCORED, where=where)
                candidates[name] = dict(found[:CANDIDATES_PER_CHANNEL])
                lexical_scores[name] = dict(found)
                moments[name] = moments_from_top(lexical_scores[name].values(), len(self.indexes["dense"]))
            else:
                index = self.indexes[name]
                scores, keys = index.search(vectors[name], CANDIDATES_PER_CHANNEL, allowed_keys=allowed)
                candidates[name] = {int(k): float(v) for v, k in zip(scores[0], keys[0]) if k >= 0}
                moments[name] = index.score_moments(vectors[name])
        pool = set().union(*candidates.values())
        for name in channels:
            missing = sorted(pool - candidates[name].keys())
            if name in LEXICAL_CHANNELS:
                candidates[name].update((key, lexical_scores[name].get(key, 0.0)) for key in missing)
            else:
                candidates[name].update(self.indexes[name].scores_for(vectors[name], missing))
        return [ChannelScores(name, candidates[name], *moments[name]) for name in channels]

    def similar(self, text: str, top_k: int = 5, where: PassageFilter | None = None) -> list[Hit]:
        """The passages most similar to a text (compared as passage to passage by the encoders)."""
        text = _require_text(text, "text")
        top_k = _require_top_k(top_k)
        cleaned = to_simplified(clean_text(text))
        vectors = {name: model.embed_passages([cleaned])[0] for name, model in self.encoders.items()}
        return self._similar_hits(vectors, top_k, where=where)

    def similar_to_passage(self, passage_id: str, top_k: int = 5) -> list[Hit]:
        """The neighbours of a stored passage, itself excluded."""
        stored = self._stored_passage(passage_id)
        top_k = _require_top_k(top_k)
        self._ensure_current()
        with self._lock.reading():
            try:
                vectors = {name: index.vector(stored.key) for name, index in self.indexes.items()}
            except KeyError:  # removed since it was looked up
                raise NotFound(f"no passage with id {passage_id!r}") from None
        return self._similar_hits(vectors, top_k, exclude=stored.key)

    def _similar_hits(
        self,
        vectors: dict[str, np.ndarray],
        top_k: int,
        exclude: int | None = None,
        where: PassageFilter | None = None,
    ) -> list[Hit]:
        self._ensure_current()
        with self._lock.reading():
            scored = self._score_channels(tuple(vectors), vectors, [], [], where)
            ranked = [(key, score) for key, score in fuse(scored) if key != exclude][:top_k]
            found = self.store.passages_by_keys(key for key, _ in ranked)
        return [
            Hit(
                found[key].passage,
                rank=rank,
                score=round(score, 6),
                scores=channel_scores(scored, key),
            )
            for rank, (key, score) in enumerate(((k, s) for k, s in ranked if k in found), start=1)
        ]


ABANDONED_AFTER_SECONDS = 3600.0


def remove_abandoned_temporary_files(folder: Path) -> None:
    """Delete temporary files that a killed checkpoint left (old enough not to be another process's write)."""
    for path in folder.glob(".*.tmp"):
        try:
            if time.time() - path.stat().st_mtime > ABANDONED_AFTER_SECONDS:
                path.unlink()
        except OSError:
            continue


def channel_scores(channels: Sequence[ChannelScores], key: int) -> dict[str, float]:
    """Each channel's raw score of one passage, as a hit reports it."""
    return {channel.name: round(channel.scores.get(key, 0.0), 6) for channel in channels}


def _require_top_k(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"top_k must be a positive integer, got {value!r}")
    return value


def corpus_files(paths: Iterable[Path]) -> list[tuple[Path, str]]:
    """(file, document id) of each corpus file; inside a folder the id comes from the relative path."""
    named = []
    for path in map(Path, paths):
        for file in supported_files([path]):
            relative = file.relative_to(path) if path.is_dir() else Path(file.name)
            named.append((file, relative, document_id_for(relative.with_suffix("").as_posix())))
    taken = Counter(document_id for _, _, document_id in named)
    # "notes.txt" and "notes.md", or "a b.txt" and "a-b.txt", would overwrite each other on every run
    return [
        (file, document_id if taken[document_id] == 1 else distinct_document_id(relative))
        for file, relative, document_id in named
    ]


def distinct_document_id(relative: Path) -> str:
    """An id for a file whose name-derived id another corpus file shares: its full name and a digest of its path."""
    digest = hashlib.sha256(relative.as_posix().encode()).hexdigest()[:8]
    return f"{document_id_for(relative.as_posix())[:119]}-{digest}"


def _require_text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string")
    if not value.strip():
        raise InvalidInput(f"{name} must not be empty")
    return value


def open_library(
    index_dir: Path,
    embedder: Embedder,
    corpus: Sequence[Path] = (),
    progress: bool = True,
    on_corpus: Callable[[dict[str, int]], None] | None = None,
    crosslingual: Embedder | None = None,
) -> Library:
    """Open (or create) the library in ``index_dir`` and bring the corpus documents up to date."""
    library = Library(index_dir, embedder, crosslingual=crosslingual, progress=progress)
    if corpus:
        summary = library.sync_corpus(corpus)
        if on_corpus:
            on_corpus(summary)
    return library
