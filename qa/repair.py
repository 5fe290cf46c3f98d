"""Repairing a damaged local index (``python -m qa repair``): salvage what its database still holds, rebuild the rest.

A database that fails its integrity check is not served (``qa.index.store``). Every derived
part of an index can be rebuilt from the documents' texts, which the database keeps whole:
passages are split again, keyword terms recomputed, vectors reused where their rows can
still be read (matched by embedding key: same model, same text) and embedded again where
they cannot. So the repair reads every readable document and vector row, sets the damaged
files aside (never deletes them), and adds the documents back into a fresh database.
Documents whose own rows cannot be read are lost to the index; the repair names them (as far
as the passage rows still say which they were) and the kept files remain for an expert.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qa.errors import QAError
from qa.index.local import MANIFEST_FILE, STORE_FILE
from qa.index.store import Store
from qa.library import Library, embedding_key
from qa.vectors.embedder import Embedder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SalvagedDocument:
    """A document row that could still be read whole."""

    id: str
    title: str
    source: str
    metadata: dict
    text: str


@dataclass
class Salvage:
    """What a damaged database still holds."""

    documents: list[SalvagedDocument] = field(default_factory=list)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # embedding key -> vector
    passage_documents: set[str] = field(default_factory=set)  # document ids the passage rows name
    unreadable_rows: int = 0  # failed reads: a row, or a range of row ids on a damaged page
    schema_readable: bool = True


@dataclass(frozen=True)
class RepairReport:
    """What a repair did."""

    restored: list[str]  # document ids added back
    lost: list[str]  # document ids known to have existed that could not be restored
    reused: int  # vectors read back from the damaged database
    embedded: int  # vectors computed again
    kept_in: Path | None  # where the damaged files were set aside


def integrity_problems(index_dir: Path, encoders: Sequence[str] = ()) -> list[str]:
    """The problems the start-up check finds in an index folder's database (empty: healthy)."""
    try:
        store = Store(index_dir / STORE_FILE, read_only=True)
    except QAError as error:
        return [str(error)]
    try:
        return store.integrity_problems(encoders)
    finally:
        store.close()


def readable_rows(db: sqlite3.Connection, table: str, columns: str) -> Iterator[tuple | None]:
    """The rows of ``table`` in rowid order; None for each row or range SQLite could not read.

    One row per query, so a damaged page costs the rows on it and no more: after an error the
    next rowid is tried (in growing steps when even the table's largest rowid is unreadable).
    """
    try:
        last = db.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0] or 0
    except sqlite3.DatabaseError:
        last = None
    rowid, step = 0, 1
    while last is None or rowid < last:
        try:
            row = db.execute(
                f"SELECT rowid, {columns} FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT 1", (rowid,)
            ).fetchone()
        except sqlite3.DatabaseError:
            yield None
            rowid += step
            if last is None:  # the table's root or rightmost pages are damaged: probe in doubling steps
                step *= 2
                if rowid > 1 << 62:
                    return
            continue
        if row is None:
            return
        rowid, step = row[0], 1
        yield row[1:]


def salvage(path: Path) -> Salvage:
    """Every document and vector row of a damaged database that can still be read."""
    found = Salvage()
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        for row in readable_rows(db, "documents", "id, title, source, metadata, text"):
            try:
                if row is None:
                    raise ValueError("unreadable row")
                document_id, title, source, metadata, text = row
                metadata = json.loads(metadata)
                if not (isinstance(document_id, str) and isinstance(text, str) and isinstance(metadata, dict)):
                    raise ValueError("damaged values")
            except ValueError:
                found.unreadable_rows += 1
                continue
            found.documents.append(SalvagedDocument(document_id, title, source, metadata, text))
        for row in readable_rows(db, "embeddings", "embedding_key, vector"):
            if row is None or not isinstance(row[1], bytes) or len(row[1]) % 4:
                found.unreadable_rows += 1
                continue
            found.vectors[row[0]] = np.frombuffer(row[1], dtype=np.float32).copy()
        for row in readable_rows(db, "passages", "document_id"):
            if row is None:
                found.unreadable_rows += 1
            elif isinstance(row[0], str):
                found.passage_documents.add(row[0])
    except sqlite3.DatabaseError as error:  # not even the schema can be read
        log.error("cannot read %s: %s", path, error)
        found.schema_readable = False
    finally:
        db.close()
    return found


def set_aside(index_dir: Path) -> Path:
    """Move the database, its journal files, the snapshots and the manifest into a ``damaged-<time>`` folder."""
    kept = index_dir / f"damaged-{time.strftime('%Y%m%d-%H%M%S')}"
    kept.mkdir()
    names = [STORE_FILE, f"{STORE_FILE}-wal", f"{STORE_FILE}-shm", MANIFEST_FILE]
    for path in [index_dir / name for name in names] + sorted(index_dir.glob("vectors*.faiss")):
        if path.exists():
            path.rename(kept / path.name)
    return kept


class SalvagedVectors:
    """An encoder that gives back the vectors the damaged database still held, and embeds only the rest."""

    def __init__(self, model: Embedder, vectors: Mapping[str, np.ndarray]) -> None:
        self.model = model
        self.name, self.identity, self.dimension = model.name, model.identity, model.dimension
        self.vectors = vectors
        self.reused = 0
        self.embedded = 0

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.embed_queries(texts)

    def embed_passages(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        keys = [embedding_key(self.identity, text) for text in texts]
        kept = {
            key: vector for key in keys
            if (vector := self.vectors.get(key)) is not None and vector.shape == (self.dimension,)
        }
        missing = [text for key, text in zip(keys, texts) if key not in kept]
        computed = iter(self.model.embed_passages(missing, progress=progress) if missing else [])
        self.reused += len(texts) - len(missing)
        self.embedded += len(missing)
        rows = [kept[key] if key in kept else next(computed) for key in keys]
        return np.stack(rows) if rows else np.zeros((0, self.dimension), dtype=np.float32)


def repair(
    index_dir: Path, embedder: Embedder, crosslingual: Embedder | None = None, progress: bool = True
) -> RepairReport:
    """Rebuild the index in ``index_dir`` from what its damaged database still holds; see the module doc.

    Raises QAError when not a single document can be read (nothing is moved then).
    """
    path = index_dir / STORE_FILE
    found = salvage(path)
    if not found.documents and (not found.schema_readable or found.unreadable_rows or found.passage_documents):
        raise QAError(
            f"not one document of {path} can be read: restore the index from a backup, or build it again"
            " from your files (`python -m qa build`, `python -m qa add`)"
        )
    kept_in = set_aside(index_dir)
    log.info("damaged files set aside in %s", kept_in)
    dense = SalvagedVectors(embedder, found.vectors)
    second = SalvagedVectors(crosslingual, found.vectors) if crosslingual is not None else None
    library = Library(index_dir, dense, crosslingual=second, progress=progress)
    restored, lost = [], []
    try:
        for document in found.documents:
            try:
                library.add_document(
                    document.text, document.id, title=document.title, metadata=document.metadata,
                    source=document.source,
                )
            except QAError as error:
                log.warning("document %s could not be restored: %s", document.id, error)
                lost.append(document.id)
                continue
            restored.append(document.id)
    finally:
        library.close()
    lost += sorted(found.passage_documents - {document.id for document in found.documents})
    encoders = [dense] + ([second] if second else [])
    return RepairReport(
        restored=restored,
        lost=sorted(lost),
        reused=sum(encoder.reused for encoder in encoders),
        embedded=sum(encoder.embedded for encoder in encoders),
        kept_in=kept_in,
    )
