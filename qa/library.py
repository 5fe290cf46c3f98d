"""The library: the core object of the service. Documents go in, ranked passages come out.

text → passages (qa.passages) → vectors (qa.embedder) → index (qa.store + qa.vector_index)
→ results (this module). Usable from Python, the CLI and the HTTP API alike.

Durability: the SQLite store is written first, in one transaction per document; the
in-memory FAISS index follows under a write lock, and a FAISS snapshot is written
atomically in the background. On start the snapshot is used only if it matches the
store's revision and the model; otherwise it is rebuilt from the stored vectors, so a
crash at any point loses nothing that was acknowledged and re-embeds nothing.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from qa.embedder import Embedder
from qa.errors import EmptyDocument, InvalidInput, NotFound
from qa.files import read_json, write_json_atomically
from qa.lexical import LEXICAL_VERSION, lexical_terms
from qa.locks import ReadWriteLock
from qa.passages import Passage, split_document
from qa.readers import read_document_file, supported_files
from qa.store import Document, NewPassage, Store, StoredPassage
from qa.text import clean_text
from qa.vector_index import VectorIndex

log = logging.getLogger(__name__)

STORE_FILE = "passages.sqlite3"
VECTORS_FILE = "vectors.faiss"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = 1
# Bump when the text given to the model for a passage changes: every passage is then re-embedded.
EMBEDDING_INPUT_VERSION = 1
CHECKPOINT_DELAY_SECONDS = 2.0
DOCUMENT_ID_PATTERN = re.compile(r"^[\w][\w.\-]{0,127}$")


@dataclass(frozen=True)
class Hit:
    """One ranked passage of a result list."""

    passage: Passage
    rank: int
    score: float
    scores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class AddResult:
    """What adding a document did."""

    document: Document
    status: str  # "added", "replaced" or "unchanged"
    embedded: int  # passages sent to the model now
    reused: int  # passages whose vectors were already stored


def embedding_input(passage: Passage) -> str:
    """The text the model embeds for a passage."""
    return passage.text


def lexical_input(passage: Passage) -> str:
    """The text keyword search indexes for a passage."""
    return passage.text


def embedding_key(model_identity: str, text: str) -> str:
    """Digest of (model, input): equal keys mean the stored vector can be reused."""
    return hashlib.sha256(f"{model_identity}\0{EMBEDDING_INPUT_VERSION}\0{text}".encode()).hexdigest()


def document_id_for(name: str) -> str:
    """A valid document id made from a file name or title."""
    slug = re.sub(r"[^\w.\-]+", "-", name.strip()).strip("-.")[:128]
    return slug or "document"


def validate_document_id(document_id: str) -> str:
    """The id itself, or InvalidInput explaining the allowed form."""
    if not isinstance(document_id, str) or not DOCUMENT_ID_PATTERN.match(document_id):
        raise InvalidInput(
            "document id must be 1-128 letters, digits, '_', '-' or '.', starting with a letter or digit"
        )
    return document_id


class Library:
    """Documents, their passages and the indexes over them, kept in one folder."""

    def __init__(self, index_dir: Path, embedder: Embedder, progress: bool = True) -> None:
        started = time.perf_counter()
        self.index_dir = Path(index_dir)
        self.embedder = embedder
        self.progress = progress
        self.store = Store(self.index_dir / STORE_FILE)
        self._lock = ReadWriteLock()
        self._checkpoint_lock = threading.Lock()
        self._checkpoint_timer: threading.Timer | None = None
        self._refresh_stored_vectors()
        self._refresh_stored_terms()
        self._index, self._revision, origin = self._open_vector_index()
        if origin != "snapshot":
            self.checkpoint()
        log.info(
            "index %s: %d passages in %d documents (%s) in %.2f s",
            self.index_dir, len(self._index), self.store.count_documents(), origin, time.perf_counter() - started,
        )

    # -- opening ---------------------------------------------------------------------------
    def _open_vector_index(self) -> tuple[VectorIndex, int, str]:
        """The snapshot when it matches the store and model, otherwise a rebuild from stored vectors."""
        revision = self.store.revision()
        manifest = read_json(self.index_dir / MANIFEST_FILE) or {}
        snapshot = self.index_dir / VECTORS_FILE
        if (
            manifest.get("format") == MANIFEST_FORMAT
            and manifest.get("revision") == revision
            and manifest.get("model", {}).get("identity") == self.embedder.identity
            and snapshot.exists()
        ):
            try:
                index = VectorIndex.load(snapshot)
                if index.dimension == self.embedder.dimension and len(index) == manifest.get("passages"):
                    return index, revision, "snapshot"
            except RuntimeError as error:
                log.warning("vector snapshot %s unreadable (%s): rebuilding it from the store", snapshot, error)
        index = VectorIndex(self.embedder.dimension)
        keys, vectors = self.store.vectors(dimension=self.embedder.dimension)
        index.add(keys, vectors)
        return index, revision, "rebuilt from the store"

    def _refresh_stored_vectors(self) -> None:
        """Re-embed stored passages whose vectors came from another model or input format.

        Progress is committed batch by batch, so an interrupted refresh resumes where it stopped.
        """
        identity = self.embedder.identity
        if self.store.meta("model_identity") == identity:
            return
        stale = [
            (stored.key, key, embedding_input(stored.passage))
            for stored in self.store.iter_passages()
            if stored.embedding_key != (key := embedding_key(identity, embedding_input(stored.passage)))
        ]
        if stale:
            log.info("model changed to %s: re-embedding %d stored passages", self.embedder.name, len(stale))
        with self._progress_bar(len(stale), "re-embedding") as bar:
            for start in range(0, len(stale), 256):
                batch = stale[start : start + 256]
                vectors = self.embedder.embed_passages([text for _, _, text in batch], progress=bar.update)
                self.store.update_vectors([(key, ekey, vector) for (key, ekey, _), vector in zip(batch, vectors)])
        self.store.set_meta("model_identity", identity)

    def _refresh_stored_terms(self) -> None:
        """Recompute lexical terms when the term rules changed (cheap: no model involved)."""
        if self.store.meta("lexical_version") == LEXICAL_VERSION:
            return
        updates = [(stored.key, lexical_terms(lexical_input(stored.passage))) for stored in self.store.iter_passages()]
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
        """Make the vector index hold exactly the store's passages (caller holds the write lock)."""
        revision = self.store.revision()
        stored = set(self.store.keys().tolist())
        indexed = set(self._index.keys().tolist())
        self._index.remove(indexed - stored)
        keys, vectors = self.store.vectors(sorted(stored - indexed), self.embedder.dimension)
        self._index.add(keys, vectors)
        self._revision = revision
        self._schedule_checkpoint()

    def _after_own_write(self, writes: int = 1) -> None:
        """Record our own commit; if anyone else committed meanwhile, reconcile (write lock held)."""
        if self.store.revision() != self._revision + writes:
            self._reconcile()
        else:
            self._revision += writes
            self._schedule_checkpoint()

    # -- snapshots ---------------------------------------------------------------------------
    def checkpoint(self) -> None:
        """Write the FAISS snapshot and manifest for the current revision (atomically)."""
        with self._checkpoint_lock, self._lock.reading():
            self._index.save(self.index_dir / VECTORS_FILE)
            write_json_atomically(self.index_dir / MANIFEST_FILE, self._manifest())

    def _manifest(self) -> dict:
        return {
            "format": MANIFEST_FORMAT,
            "revision": self._revision,
            "passages": len(self._index),
            "documents": self.store.count_documents(),
            "model": {
                "name": self.embedder.name,
                "identity": self.embedder.identity,
                "dimension": self.embedder.dimension,
            },
            "embedding_input_version": EMBEDDING_INPUT_VERSION,
            "lexical_version": LEXICAL_VERSION,
            "corpus_fingerprint": self.store.meta("corpus_fingerprint"),
            "files": {"store": STORE_FILE, "vectors": VECTORS_FILE},
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
        content_hash = hashlib.sha256(
            repr((text, title, sorted(metadata.items()), source)).encode()
        ).hexdigest()
        document_id = validate_document_id(document_id or f"doc-{content_hash[:12]}")
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
            self._index.remove(removed)
            self._index.add(np.array(added, dtype=np.int64), np.stack([new.vector for new in new_passages]))
            self._after_own_write()
        stored = self.store.document(document_id) or document
        status = "replaced" if existing is not None else "added"
        return AddResult(stored, status, embedded=embedded, reused=len(passages) - embedded)

    def _prepare_passages(self, passages: Sequence[Passage]) -> tuple[list[NewPassage], int]:
        """Vectors (reused by embedding key, or computed now) and terms for each passage."""
        keys = [embedding_key(self.embedder.identity, embedding_input(p)) for p in passages]
        vectors = self.store.vectors_by_embedding_key(keys)
        missing = {key: embedding_input(p) for key, p in zip(keys, passages) if key not in vectors}
        if missing:
            with self._progress_bar(len(missing), "embedding") as bar:
                computed = self.embedder.embed_passages(list(missing.values()), progress=bar.update)
            vectors.update(zip(missing, computed))
        new_passages = [
            NewPassage(passage=p, embedding_key=key, vector=vectors[key], terms=lexical_terms(lexical_input(p)))
            for key, p in zip(keys, passages)
        ]
        return new_passages, len(missing)

    def remove_document(self, document_id: str) -> Document:
        """Delete a document; its passages leave every search at once. NotFound when unknown."""
        document = self.store.document(document_id)
        if document is None:
            raise NotFound(f"no document with id {document_id!r}")
        with self._lock.writing():
            removed = self.store.delete_document(document_id)
            if removed is None:
                raise NotFound(f"no document with id {document_id!r}")
            self._index.remove(removed)
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
        files = supported_files(paths)
        fingerprint = hashlib.sha256()
        for path in files:
            fingerprint.update(str(path.resolve()).encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
        summary = {"added": 0, "replaced": 0, "unchanged": 0, "removed": 0}
        if self.store.meta("corpus_fingerprint") == fingerprint.hexdigest():
            summary["unchanged"] = len(files)
            return summary
        sources = set()
        for path in files:
            source = f"corpus:{path.resolve()}"
            sources.add(source)
            text, title = read_document_file(path)
            result = self.add_document(text, document_id_for(path.stem), title=title, source=source)
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
        """Number of searchable passages."""
        return len(self._index)

    def passage(self, passage_id: str) -> Passage:
        """One passage by id; NotFound when unknown."""
        return self._stored_passage(passage_id).passage

    def _stored_passage(self, passage_id: str) -> StoredPassage:
        stored = self.store.passage_by_id(passage_id) if isinstance(passage_id, str) else None
        if stored is None:
            raise NotFound(f"no passage with id {passage_id!r}")
        return stored

    def ask(self, question: str, top_k: int = 5) -> list[Hit]:
        """The passages that best answer a question, best first."""
        question = _require_text(question, "question")
        vector = self.embedder.embed_queries([clean_text(question)])
        return self._dense_hits(vector, top_k)

    def similar(self, text: str, top_k: int = 5) -> list[Hit]:
        """The passages most similar to a text (compared as passage to passage)."""
        text = _require_text(text, "text")
        vector = self.embedder.embed_passages([clean_text(text)])
        return self._dense_hits(vector, top_k)

    def similar_to_passage(self, passage_id: str, top_k: int = 5) -> list[Hit]:
        """The neighbours of a stored passage, itself excluded."""
        stored = self._stored_passage(passage_id)
        self._ensure_current()
        with self._lock.reading():
            vector = self._index.vector(stored.key)
        hits = self._dense_hits(vector, top_k + 1, exclude=stored.key)
        return hits[:top_k]

    def _dense_hits(self, vector: np.ndarray, top_k: int, exclude: int | None = None) -> list[Hit]:
        self._ensure_current()
        with self._lock.reading():
            scores, keys = self._index.search(vector, top_k)
            found = self.store.passages_by_keys(int(key) for key in keys[0] if key >= 0)
        ranked = [
            (int(key), float(score))
            for score, key in zip(scores[0], keys[0])
            if key >= 0 and key != exclude and int(key) in found
        ]
        return [
            Hit(found[key].passage, rank=rank, score=score, scores={"dense": score})
            for rank, (key, score) in enumerate(ranked, start=1)
        ]


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
) -> Library:
    """Open (or create) the library in ``index_dir`` and bring the corpus documents up to date."""
    library = Library(index_dir, embedder, progress=progress)
    if corpus:
        summary = library.sync_corpus(corpus)
        if on_corpus:
            on_corpus(summary)
    return library
