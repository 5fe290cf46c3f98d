"""The local home of the index: SQLite (the source of truth) and one FAISS index per encoder, in one folder.

Durability: every write is one SQLite transaction; the in-memory FAISS indexes follow under a
write lock, and their snapshot is written atomically in the background. On opening, a snapshot
is used only if it matches the store's revision and the encoder (and its digest matches the
manifest); otherwise it is rebuilt from the stored vectors. A crash at any point therefore
loses nothing that was acknowledged and re-embeds nothing.

Several processes may share the folder (a server and ``python -m qa add``): each write bumps
the store's revision, and a reader whose indexes are behind catches up before it searches.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from qa.errors import DamagedIndex
from qa.files import file_sha256, read_json, write_json_atomically
from qa.index.deferred import Deferred
from qa.index.locks import ReadWriteLock
from qa.index.passage_index import (
    CANDIDATES_PER_CHANNEL,
    LEXICAL_CHANNELS,
    LEXICAL_SCORED,
    ChannelScores,
    Document,
    Embedding,
    EncoderSpec,
    NewPassage,
    PassageFilter,
    Query,
    StoredPassage,
    moments_from_top,
)
from qa.index.store import Store, damage_message
from qa.index.vector_index import DEFAULT_EXACT_LIMIT, VectorIndex
from qa.vectors.lexical import match_expression

log = logging.getLogger(__name__)

STORE_FILE = "passages.sqlite3"
VECTORS_FILE = "vectors.faiss"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = 1
CHECKPOINT_DELAY_SECONDS = 2.0
ABANDONED_AFTER_SECONDS = 3600.0


class LocalPassageIndex:
    """Documents, passages, vectors and keyword terms in ``folder``; see the module docstring.

    ``encoders`` names the vector channels to open (an empty mapping opens the documents only:
    listing and deleting work, searching by vector does not).
    """

    def __init__(
        self,
        folder: Path,
        encoders: Mapping[str, EncoderSpec] = (),
        exact_limit: int = DEFAULT_EXACT_LIMIT,
        read_only: bool = False,
    ) -> None:
        started = time.perf_counter()
        self.exact_limit = exact_limit
        self.folder = Path(folder)
        self.location = str(self.folder)
        self.read_only = read_only
        self.encoders: dict[str, EncoderSpec] = dict(encoders)
        self.store = Store(self.folder / STORE_FILE, read_only=read_only)
        self._require_intact()
        if not read_only:
            remove_abandoned_temporary_files(self.folder)
        self._lock = ReadWriteLock()
        self._checkpoint_lock = threading.Lock()
        self._checkpointer = Deferred(self._checkpoint_quietly, "checkpoint")
        self._revision = self.store.revision()
        self.vector_indexes: dict[str, VectorIndex] = {}
        origins = set()
        for name in self.encoders:
            self.vector_indexes[name], origin = self._open_vector_index(name)
            origins.add(origin)
        if origins - {"snapshot"}:
            self._checkpoint_quietly()
        log.info(
            "index %s%s: %d passages in %d documents (%s) in %.2f s",
            self.folder, " (read-only)" if read_only else "", self.store.count_passages(),
            self.store.count_documents(), ", ".join(sorted(origins)) or "documents only",
            time.perf_counter() - started,
        )

    def _require_intact(self) -> None:
        """DamagedIndex (which names the repair command) unless the store passes its integrity check."""
        started = time.perf_counter()
        problems = self.store.integrity_problems(list(self.encoders))
        if problems:
            raise DamagedIndex(damage_message(self.store.path, problems))
        log.info("index %s passed its integrity check in %.2f s", self.folder, time.perf_counter() - started)

    # -- opening ---------------------------------------------------------------------------
    def _snapshot_file(self, encoder: str) -> Path:
        return self.folder / (VECTORS_FILE if encoder == "dense" else f"vectors-{encoder}.faiss")

    def _open_vector_index(self, encoder: str) -> tuple[VectorIndex, str]:
        """The snapshot when it matches the store and encoder, otherwise a rebuild from stored vectors.

        A snapshot that should have matched but did not (behind the store after an unclean stop,
        a digest or size that disagrees with the manifest, unreadable) is rebuilt with a WARNING.
        """
        spec = self.encoders[encoder]
        manifest = read_json(self.folder / MANIFEST_FILE) or {}
        recorded = manifest.get("encoders")
        recorded = recorded.get(encoder) if isinstance(recorded, dict) else None
        recorded = recorded if isinstance(recorded, dict) else {}
        snapshot = self._snapshot_file(encoder)
        problem = None
        if not snapshot.exists() or manifest.get("format") != MANIFEST_FORMAT:
            pass  # a new index, or one written by another version: rebuilding is expected
        elif recorded.get("identity") != spec.identity:
            log.info("vector snapshot %s was made by another %s encoder: rebuilding it", snapshot, encoder)
        elif manifest.get("revision") != self._revision:
            problem = (
                f"it is behind the database (revision {manifest.get('revision')}, database {self._revision}):"
                " the last process on this index did not stop cleanly or could not write it"
            )
        else:
            try:
                # the digest ties the manifest to this very file, not to an older copy put back
                if recorded.get("sha256") != file_sha256(snapshot):
                    problem = "its checksum differs from the one its manifest records (damaged or replaced)"
                else:
                    index = VectorIndex.load(snapshot, exact_limit=self.exact_limit)
                    if index.dimension == spec.dimension and len(index) == manifest.get("passages"):
                        return index, "snapshot"
                    problem = f"it holds {len(index)} vectors of {index.dimension} floats, not what the manifest says"
            except (OSError, RuntimeError) as error:
                problem = f"it cannot be read ({error})"
        if problem:
            log.warning("vector snapshot %s is not used: %s; rebuilding it from the database", snapshot, problem)
        index = VectorIndex(spec.dimension, exact_limit=self.exact_limit)
        index.add(*self.store.vectors(encoder, dimension=spec.dimension))
        return index, "rebuilt from the store"

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
        for name, index in self.vector_indexes.items():
            indexed = set(index.keys().tolist())
            index.remove(indexed - stored)
            index.add(*self.store.vectors(name, sorted(stored - indexed), index.dimension))
        self._revision = revision
        self._schedule_checkpoint()

    def _after_own_write(self) -> None:
        """Record our own commit; if anyone else committed meanwhile, reconcile (write lock held)."""
        if self.store.revision() != self._revision + 1:
            self._reconcile()
        else:
            self._revision += 1
            self._schedule_checkpoint()

    # -- snapshots ---------------------------------------------------------------------------
    def checkpoint(self) -> None:
        """Write the FAISS snapshots and the manifest for the current revision (atomically)."""
        with self._checkpoint_lock, self._lock.reading():
            # the digest of the bytes written here, not of the file re-read: another process on this
            # folder may replace the file in between, and this manifest must not vouch for its copy
            digests = {name: index.save(self._snapshot_file(name)) for name, index in self.vector_indexes.items()}
            write_json_atomically(self.folder / MANIFEST_FILE, self._manifest(digests))

    def _manifest(self, digests: dict[str, str]) -> dict:
        dense = self.encoders.get("dense")
        return {
            "format": MANIFEST_FORMAT,
            "revision": self._revision,
            "passages": self.searchable_count(),
            "documents": self.store.count_documents(),
            "model": {"name": dense.model, "identity": dense.identity, "dimension": dense.dimension} if dense else None,
            "encoders": {
                name: {
                    "name": spec.model,
                    "identity": spec.identity,
                    "dimension": spec.dimension,
                    "file": self._snapshot_file(name).name,
                    "sha256": digests[name],
                }
                for name, spec in self.encoders.items()
            },
            "lexical_version": self.store.meta("lexical_version"),
            "corpus_fingerprint": self.store.meta("corpus_fingerprint"),
            "store": STORE_FILE,
            "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    def _schedule_checkpoint(self) -> None:
        if not self.vector_indexes or self.read_only:
            return  # nothing derived to snapshot (or nowhere to write it): the next opening rebuilds it
        self._checkpointer.schedule(CHECKPOINT_DELAY_SECONDS)

    def _checkpoint_quietly(self) -> None:
        """A checkpoint whose failure is logged, not raised: it only costs a rebuild at the next opening."""
        if self.read_only or not self.vector_indexes:
            return
        try:
            self.checkpoint()
        except (OSError, RuntimeError) as error:  # a full disk, a read-only mount; faiss reports RuntimeError
            log.warning(
                "could not write the vector snapshot of %s (%s): the next start rebuilds it from the database",
                self.folder, str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__,
            )
        except Exception:
            log.exception("writing the vector snapshot failed")

    def close(self) -> None:
        """Write a final snapshot (when vectors are open and the index is writable) and release the database."""
        self._checkpointer.cancel()
        self._checkpoint_quietly()
        self.store.close()

    # -- writing -----------------------------------------------------------------------------
    def write_document(self, document: Document, text: str, passages: Sequence[NewPassage]) -> Document:
        """Insert or replace a document and all its passages in one transaction, then in the vector indexes."""
        with self._lock.writing():
            removed, added = self.store.write_document(document, text, passages)
            keys = np.array(added, dtype=np.int64)
            for name, index in self.vector_indexes.items():
                index.remove(removed)
                if len(keys):
                    index.add(keys, np.stack([new.embeddings[name].vector for new in passages]))
            self._after_own_write()
        return self.store.document(document.id) or document

    def delete_document(self, document_id: str) -> Document | None:
        """Delete a document and its passages; its passages leave every search at once."""
        document = self.store.document(document_id)
        if document is None:
            return None
        with self._lock.writing():
            removed = self.store.delete_document(document_id)
            if removed is None:
                return None
            for index in self.vector_indexes.values():
                index.remove(removed)
            self._after_own_write()
        return document

    def write_embeddings(self, encoder: str, updates: Sequence[tuple[int, Embedding]]) -> None:
        """Replace one encoder's vectors of existing passages, in the store and in its vector index."""
        with self._lock.writing():
            self.store.write_embeddings(encoder, updates)
            index = self.vector_indexes.get(encoder)
            if index is not None and updates:
                keys = np.array([key for key, _ in updates], dtype=np.int64)
                index.remove(keys)
                index.add(keys, np.stack([embedding.vector for _, embedding in updates]))
            self._after_own_write()

    def update_terms(self, updates: Sequence[tuple[int, list[str], list[str]]]) -> None:
        """Replace the keyword terms of existing passages."""
        with self._lock.writing():
            self.store.update_terms(updates)
            self._after_own_write()

    def set_meta(self, key: str, value: str) -> None:
        """Keep a value in the store's meta table (a write like any other)."""
        with self._lock.writing():
            self.store.set_meta(key, value)
            self._after_own_write()

    # -- reading -----------------------------------------------------------------------------
    @contextmanager
    def reading(self) -> Iterator[LocalView]:
        """A consistent view: the read lock is held (no write in between) and the indexes are current."""
        self._ensure_current()
        with self._lock.reading():
            yield LocalView(self)

    def count_passages(self) -> int:
        """Number of searchable passages (including those another process added)."""
        self._ensure_current()
        return self.searchable_count()

    def searchable_count(self) -> int:
        """Passages in the vector indexes as they are now (no catching up: safe under the read lock)."""
        for index in self.vector_indexes.values():
            return len(index)
        return self.store.count_passages()

    def count_documents(self) -> int:
        """Number of documents."""
        return self.store.count_documents()

    def document(self, document_id: str) -> Document | None:
        """One document with its passage count, or None."""
        return self.store.document(document_id)

    def documents(self, offset: int = 0, limit: int = 100) -> list[Document]:
        """A page of documents in id order."""
        return self.store.documents(offset, limit)

    def documents_from_source(self, prefix: str) -> list[Document]:
        """Documents whose source starts with ``prefix``."""
        return self.store.documents_from_source_prefix(prefix)

    def document_passages(self, document_id: str) -> list[StoredPassage]:
        """A document's passages in reading order."""
        return self.store.passages_of_document(document_id)

    def passage(self, passage_id: str) -> StoredPassage | None:
        """One passage by its public id."""
        return self.store.passage_by_id(passage_id)

    def iter_passages(self) -> Iterator[StoredPassage]:
        """Every passage in key order."""
        return self.store.iter_passages()

    def term_frequencies(self, terms: Sequence[str]) -> dict[str, int]:
        """How many passages contain each term."""
        return self.store.document_frequencies(list(terms))

    def vectors_for(self, encoder: str, embedding_keys: Iterable[str]) -> dict[str, np.ndarray]:
        """Stored vectors of these embedding keys."""
        return self.store.vectors_by_embedding_key(encoder, embedding_keys)

    def embedding_keys(self, encoder: str) -> dict[int, str]:
        """Passage key -> embedding key of one encoder's stored vectors."""
        return self.store.embedding_keys(encoder)

    def meta(self, key: str) -> str | None:
        """A value of the store's meta table."""
        return self.store.meta(key)

    def revision(self) -> int:
        """Number of committed writes to the store so far."""
        return self.store.revision()


class LocalView:
    """What one search reads, while its index's read lock is held."""

    def __init__(self, index: LocalPassageIndex) -> None:
        self._index = index

    def score(self, query: Query, channels: Sequence[str], where: PassageFilter | None = None) -> list[ChannelScores]:
        """Candidates of every channel, each scored exactly by every channel.

        A filter is applied inside FAISS and to the ranked FTS matches, so each channel still
        brings its best candidates among the allowed passages.
        """
        store, vector_indexes = self._index.store, self._index.vector_indexes
        expressions = {"lexical": match_expression(list(query.terms), "terms"),
                       "names": match_expression(list(query.names), "names")}
        allowed = store.filtered_keys(where) if where is not None else None
        # the keyword channels read their ranked matches against a set of the allowed keys
        lexical = [name for name in channels if name in LEXICAL_CHANNELS]
        allowed_set = frozenset(allowed.tolist()) if allowed is not None and lexical else None
        collection = self._index.searchable_count()
        candidates: dict[str, dict[int, float]] = {}
        lexical_scores: dict[str, dict[int, float]] = {}
        moments: dict[str, tuple[float, float]] = {}
        for name in channels:
            if name in LEXICAL_CHANNELS:
                # one query scores the best LEXICAL_SCORED matches: its head are the candidates, the rest
                # completes other channels' candidates (asking FTS5 for given rowids was 50 ms a query)
                found = store.lexical_search(expressions[name], LEXICAL_SCORED, allowed=allowed_set)
                candidates[name] = dict(found[:CANDIDATES_PER_CHANNEL])
                lexical_scores[name] = dict(found)
                moments[name] = moments_from_top(lexical_scores[name].values(), collection)
            else:
                index = vector_indexes[name]
                scores, keys = index.search(query.vectors[name], CANDIDATES_PER_CHANNEL, allowed_keys=allowed)
                candidates[name] = {int(k): float(v) for v, k in zip(scores[0], keys[0]) if k >= 0}
                moments[name] = index.score_moments(query.vectors[name])
        pool = set().union(*candidates.values()) if candidates else set()
        for name in channels:
            missing = sorted(pool - candidates[name].keys())
            if name in LEXICAL_CHANNELS:
                candidates[name].update((key, lexical_scores[name].get(key, 0.0)) for key in missing)
            else:
                candidates[name].update(vector_indexes[name].scores_for(query.vectors[name], missing))
        return [ChannelScores(name, candidates[name], *moments[name]) for name in channels]

    def passages(self, keys: Iterable[int]) -> dict[int, StoredPassage]:
        """The passages of these keys, as of this view."""
        return self._index.store.passages_by_keys(keys)

    def neighbours(self, document_id: str, first: int, last: int) -> list[StoredPassage]:
        """The passages of one document at positions ``first``..``last``, as of this view."""
        return self._index.store.passages_at(document_id, first, last)

    def vectors(self, key: int) -> dict[str, np.ndarray]:
        """Each encoder's vector of one passage (KeyError when it is not indexed)."""
        return {name: index.vector(key) for name, index in self._index.vector_indexes.items()}


def remove_abandoned_temporary_files(folder: Path) -> None:
    """Delete temporary files that a killed checkpoint left (old enough not to be another process's write)."""
    for path in folder.glob(".*.tmp"):
        try:
            if time.time() - path.stat().st_mtime > ABANDONED_AFTER_SECONDS:
                path.unlink()
        except OSError:
            continue
