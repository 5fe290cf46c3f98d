"""The Milvus home of the passage index: any number of stateless replicas share one Milvus.

Three collections, all named after the ``--milvus-collection`` setting (``qa`` here):

- ``qa_passages``: one row per passage of every stored document version: its fields, one
  vector per encoder (``dense`` 384-d, ``crosslingual`` 512-d), and the keyword terms and
  pinyin name terms as analysed text, turned into sparse vectors by Milvus' BM25 function.
  Every channel searches here, server-side, with the filter inside the search.
- ``qa_documents``: the ledger, one row per document *version* (key: the version number).
  A version is ``writing`` while its passages go in, ``committed`` once they all are, and
  ``retired`` once replaced or deleted. A document's visible version is its highest
  committed one.
- ``qa_meta``: settings the collections were made with, and the *generation*: a token every
  write changes, so a replica knows when to re-read the ledger.

Why versions: Milvus has no transactions across rows, so a replace writes the new passages
under a new version that no search sees, then commits it with one row (the flip), then
retires the old version. Readers filter every search to the visible versions, so a
document is never seen half-written. Two processes replacing the same document at once
both commit; the higher version wins everywhere at once (every replica applies the same
rule), and the loser's commit retires it. Retired and abandoned versions are deleted
after ``RETENTION_SECONDS`` (replicas subtract them from the moments first).

What fusion needs about the whole collection (per encoder the passage count, sum vector
and sum of outer products, so the mean and spread of a query's scores are exact) is
derived from Milvus alone: a replica folds the vectors of each version that became
visible or invisible since it last looked, so every replica answers the same. Reads use
the Strong consistency level: a write acknowledged through one replica is seen by the next
request through any other.

Needs Milvus 2.5 or later (BM25 functions, analysers, ``text_match``), or Milvus Lite 3.2.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from qa.documents.passages import Passage
from qa.errors import CannotStart, InvalidInput
from qa.index.deferred import Deferred
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

log = logging.getLogger(__name__)

MINIMUM_MILVUS_VERSION = "2.5.0"
CONSISTENCY = "Strong"
SCHEMA_VERSION = "1"
WRITING, COMMITTED, RETIRED = "writing", "committed", "retired"
# Retired versions stay this long, so replicas that have not looked since can still subtract them.
RETENTION_SECONDS = 600.0
# A version still "writing" after this long belongs to a writer that died: it is deleted.
ABANDONED_SECONDS = 3600.0
INSERT_BATCH = 128
SEAL_DELAY_SECONDS = 2.0
QUERY_BATCH = 1000
# Milvus caps limit + offset of one query or search at 16384.
MAX_RESULTS = 16384
# Retries of a channel search whose results held versions committed after this replica's view.
STALE_RETRIES = 3
VARCHAR_LIMIT = 65535
PLACEHOLDER = "placeholder"  # every Milvus collection needs a vector field: the ledger and meta get a 2-d one
LEXICAL_FIELDS = dict(zip(LEXICAL_CHANNELS, ("terms", "names")))
# A letter (U+A78F), so Milvus' standard tokenizer keeps "3.14" as one term ("3ꞏ14"), as FTS5 does.
DECIMAL_POINT = "\ua78f"


class MilvusUnavailable(CannotStart):
    """The Milvus server cannot be reached or refuses the collections; the message says what to do."""

    code = "milvus_unavailable"


@dataclass(frozen=True)
class LedgerRow:
    """One document version as the ledger holds it."""

    version: int
    document: Document
    state: str
    changed_at: int  # microseconds since the epoch, by the writer's clock


@dataclass
class Moments:
    """Count, sum and sum of outer products of one encoder's vectors over the visible passages."""

    count: int
    sum: np.ndarray
    outer: np.ndarray

    @classmethod
    def empty(cls, dimension: int) -> Moments:
        return cls(0, np.zeros(dimension, dtype=np.float64), np.zeros((dimension, dimension), dtype=np.float64))

    def copy(self) -> Moments:
        return Moments(self.count, self.sum.copy(), self.outer.copy())

    def add(self, vectors: np.ndarray, sign: int = 1) -> None:
        if len(vectors):
            matrix = np.asarray(vectors, dtype=np.float64)
            self.count += sign * len(matrix)
            self.sum += sign * matrix.sum(axis=0)
            self.outer += sign * (matrix.T @ matrix)

    def of_query(self, query: np.ndarray) -> tuple[float, float]:
        """Mean and standard deviation of ``query · v`` over every visible vector v."""
        if self.count <= 0:
            return 0.0, 1.0
        query = np.asarray(query, dtype=np.float64).reshape(-1)
        mean = float(query @ self.sum) / self.count
        variance = float(query @ self.outer @ query) / self.count - mean * mean
        return mean, max(variance, 1e-12) ** 0.5


@dataclass(frozen=True)
class View:
    """What a replica knows of the ledger: the visible version of each document, and statistics over them.

    ``frequencies`` (term -> passages containing it; kept on Milvus Lite only, where Milvus cannot
    count them quickly) is shared between successive views and updated in place, so a search
    running across a write may see a term count a moment early.
    """

    generation: str | None
    visible: dict[str, LedgerRow]  # document id -> its visible version
    hidden: frozenset[int]  # versions in the ledger that no search may see
    moments: dict[str, Moments]
    frequencies: Counter[str]
    passages: int
    versions: frozenset[int] = frozenset()


EMPTY_VIEW = View(None, {}, frozenset(), {}, Counter(), 0)


def encode_term(term: str) -> str:
    """A lexical term as one token of Milvus' standard tokenizer (only '.' of decimals is not alphanumeric)."""
    return term.replace(".", DECIMAL_POINT)


def analysed_text(terms: Sequence[str]) -> str:
    """Terms joined by spaces, cut to what a VARCHAR holds (a longer passage loses its last terms)."""
    text = " ".join(encode_term(term) for term in terms)
    if len(text.encode()) <= VARCHAR_LIMIT:
        return text
    return text.encode()[:VARCHAR_LIMIT].decode(errors="ignore").rsplit(" ", 1)[0]


def string_literal(value: str) -> str:
    """A Milvus expression string literal: quotes and backslashes escaped, so a value can never become syntax."""
    escaped = (
        value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    )
    if any(ord(character) < 0x20 for character in escaped):
        raise InvalidInput("filter values and metadata fields cannot contain control characters")
    return f'"{escaped}"'


def value_literal(value: object) -> str:
    """A JSON scalar as a Milvus expression literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if not np.isfinite(value):
            raise InvalidInput("metadata filter numbers must be finite")
        return repr(value)
    if isinstance(value, str):
        return string_literal(value)
    raise InvalidInput(f"metadata filter values must be strings, numbers, booleans or null, got {type(value).__name__}")


def filter_expression(where: PassageFilter | None) -> str | None:
    """The Milvus boolean expression for a passage filter: '' lets everything through, None nothing."""
    if where is None:
        return ""
    conditions = []
    if where.documents is not None:
        if not where.documents:
            return None
        conditions.append(f"document in [{', '.join(map(string_literal, where.documents))}]")
    for name, value in where.metadata:
        path = f"metadata[{string_literal(name)}]"
        conditions.append(f"{path} is null" if value is None else f"{path} == {value_literal(value)}")
    return " and ".join(f"({condition})" for condition in conditions)


def both(*expressions: str) -> str:
    """The conjunction of the non-empty expressions."""
    present = [expression for expression in expressions if expression]
    return " and ".join(f"({expression})" for expression in present)


def new_version() -> int:
    """A version number that grows with wall-clock time (microseconds) and is unique with high probability."""
    return (time.time_ns() // 1000) << 8 | secrets.randbits(8)


def passage_key(version: int, position: int) -> int:
    """The integer key of a passage of a version: unique across versions and replicas, positive int64."""
    digest = hashlib.sha256(f"{version}:{position}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF


class MilvusPassageIndex:
    """The passage index in a Milvus server (``http://host:19530``) or a Milvus Lite folder (``*.db``).

    ``encoders`` names the vector channels (an empty mapping opens the documents only: listing
    and deleting work, searching and adding do not). The collections remember the encoders they
    were made for, and a server with other ones is refused with a message saying what to do.
    Thread-safe: one gRPC client, and the replica's view swapped under a lock.
    """

    # A Milvus home is opened as its user may: read-only serving (--read-only) refuses writes over
    # HTTP and skips the corpus sync, and the Milvus user's privileges keep the data read-only.
    read_only = False

    def __init__(
        self,
        uri: str,
        encoders: Mapping[str, EncoderSpec] = (),
        collection: str = "qa",
        token: str | None = None,
        connect_timeout: float = 30.0,
    ) -> None:
        from pymilvus import MilvusClient
        from pymilvus.exceptions import MilvusException

        started = time.perf_counter()
        self.uri = uri
        self.encoders: dict[str, EncoderSpec] = dict(encoders)
        self.collection = collection
        self.location = f"{uri} (Milvus collections {collection}_*)"
        self.passages_collection = f"{collection}_passages"
        self.documents_collection = f"{collection}_documents"
        self.meta_collection = f"{collection}_meta"
        self._error = MilvusException
        self._lock = threading.Lock()
        # Milvus Lite does not serialise writes to a collection; within one process this lock does
        # (Milvus itself needs no such care, and writers in other processes coordinate by versions).
        self._write_lock = threading.Lock()
        self._view = EMPTY_VIEW
        self._counted: tuple[str | None, dict[str, int]] = (None, {})  # term counts of one generation
        self._sealer = Deferred(self._checkpoint_quietly, "seal")
        try:
            self.client = MilvusClient(uri=uri, token=token or "", timeout=connect_timeout)
            version = str(self.client.get_server_version())
        except MilvusException as error:
            raise MilvusUnavailable(
                f"cannot reach Milvus at {uri} ({getattr(error, 'message', error)}): start it, or check"
                " --store / QA_STORE and --milvus-token"
            ) from error
        try:
            lite = version.startswith("milvus_lite")
            if not lite and _version_tuple(version) < _version_tuple(MINIMUM_MILVUS_VERSION):
                raise MilvusUnavailable(
                    f"Milvus at {uri} is version {version}; this service needs Milvus {MINIMUM_MILVUS_VERSION} or"
                    " later (BM25 functions and text_match for the keyword channels)"
                )
            # Milvus Lite searches unsealed rows by brute force (and rebuilds their BM25 index on every
            # search: 2.2 s against 0.5 s sealed, at 2,000 passages): the home seals them after writes
            self._seal_after_writes = lite
            # Term document frequencies: Milvus counts them with its text-match index, a query per term;
            # Milvus Lite evaluates text_match by tokenising every row (0.6 s a term at 2,000 passages),
            # so there the replica counts terms itself as versions come and go (its collections are small)
            self._fold_terms = lite
            self._open_collections()
            self._view = self._current_view()
        except MilvusException as error:
            raise MilvusUnavailable(f"Milvus at {uri} refused the collections {collection}_*: {error}") from error
        log.info(
            "index %s: %d passages in %d documents, moments folded in %.2f s",
            self.location, self._view.passages, len(self._view.visible), time.perf_counter() - started,
        )

    # -- collections -----------------------------------------------------------------------
    def _open_collections(self) -> None:
        """Create the collections when missing (any replica may be first), load them, check the encoders."""
        wanted = json.dumps({name: [spec.dimension, spec.identity] for name, spec in sorted(self.encoders.items())})
        self._create_collections()
        for name in (self.passages_collection, self.documents_collection, self.meta_collection):
            if self.client.has_collection(name):  # without encoders, the passages may not exist yet
                self.client.load_collection(name)
        recorded = self.meta("collection:encoders")
        if recorded is None and self.encoders:
            self.set_meta("collection:encoders", wanted)
        elif self.encoders and recorded != wanted:
            raise MilvusUnavailable(
                f"the Milvus collections {self.collection}_* hold vectors of encoders {recorded}; this server has"
                f" {wanted}: start it with the same model and --crosslingual setting as the other replicas,"
                " or choose another --milvus-collection (and add the documents there)"
            )

    def _create_collections(self) -> None:
        from pymilvus import DataType, Function, FunctionType, MilvusClient

        if self.encoders and not self.client.has_collection(self.passages_collection):
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("key", DataType.INT64, is_primary=True)
            schema.add_field("id", DataType.VARCHAR, max_length=1024)
            schema.add_field("document", DataType.VARCHAR, max_length=256)
            schema.add_field("version", DataType.INT64)
            schema.add_field("position", DataType.INT64)
            schema.add_field("title", DataType.VARCHAR, max_length=VARCHAR_LIMIT)
            schema.add_field("heading", DataType.VARCHAR, max_length=VARCHAR_LIMIT, nullable=True)
            schema.add_field("text", DataType.VARCHAR, max_length=VARCHAR_LIMIT)
            schema.add_field("start", DataType.INT64)
            schema.add_field("end", DataType.INT64)
            schema.add_field("metadata", DataType.JSON)
            index = self.client.prepare_index_params()
            for name, spec in sorted(self.encoders.items()):
                schema.add_field(name, DataType.FLOAT_VECTOR, dim=spec.dimension)
                schema.add_field(f"{name}_key", DataType.VARCHAR, max_length=512)
                # exact inner product (cosine of unit vectors), as the local home; see README, sizing, for HNSW
                index.add_index(name, index_type="FLAT", metric_type="IP")
            for text_field in LEXICAL_FIELDS.values():
                schema.add_field(
                    text_field, DataType.VARCHAR, max_length=VARCHAR_LIMIT,
                    enable_analyzer=True, enable_match=text_field == "terms", analyzer_params={"tokenizer": "standard"},
                )
                schema.add_field(f"{text_field}_sparse", DataType.SPARSE_FLOAT_VECTOR)
                schema.add_function(
                    Function(
                        name=f"{text_field}_bm25", function_type=FunctionType.BM25,
                        input_field_names=[text_field], output_field_names=[f"{text_field}_sparse"],
                    )
                )
                # FTS5's parameters, so keyword scores rank as in the local home
                index.add_index(
                    f"{text_field}_sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                    params={"bm25_k1": 1.2, "bm25_b": 0.75},
                )
            self._create(self.passages_collection, schema, index)
        if not self.client.has_collection(self.documents_collection):
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("version", DataType.INT64, is_primary=True)
            schema.add_field("document", DataType.VARCHAR, max_length=256)
            schema.add_field("state", DataType.VARCHAR, max_length=16)
            schema.add_field("title", DataType.VARCHAR, max_length=VARCHAR_LIMIT)
            schema.add_field("source", DataType.VARCHAR, max_length=VARCHAR_LIMIT)
            schema.add_field("metadata", DataType.JSON)
            schema.add_field("content_hash", DataType.VARCHAR, max_length=128)
            schema.add_field("created_at", DataType.DOUBLE)
            schema.add_field("updated_at", DataType.DOUBLE)
            schema.add_field("passages", DataType.INT64)
            schema.add_field("changed_at", DataType.INT64)
            schema.add_field(PLACEHOLDER, DataType.FLOAT_VECTOR, dim=2)
            self._create(self.documents_collection, schema, self._placeholder_index())
        if not self.client.has_collection(self.meta_collection):
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("name", DataType.VARCHAR, is_primary=True, max_length=256)
            schema.add_field("value", DataType.VARCHAR, max_length=VARCHAR_LIMIT)
            schema.add_field(PLACEHOLDER, DataType.FLOAT_VECTOR, dim=2)
            self._create(self.meta_collection, schema, self._placeholder_index())

    def _placeholder_index(self):
        index = self.client.prepare_index_params()
        index.add_index(PLACEHOLDER, index_type="FLAT", metric_type="IP")
        return index

    def _create(self, name: str, schema, index) -> None:
        try:
            self.client.create_collection(name, schema=schema, index_params=index, consistency_level=CONSISTENCY)
        except self._error:
            # another replica created it at the same moment: fine if it is there now
            if not self.client.has_collection(name):
                raise

    # -- meta --------------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        """A value kept with the index (seen by every replica)."""
        rows = self.client.query(
            self.meta_collection, filter=f"name == {string_literal(key)}", output_fields=["value"],
            consistency_level=CONSISTENCY,
        )
        return rows[0]["value"] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        """Keep a value with the index."""
        self.client.upsert(self.meta_collection, [{"name": key, "value": value, PLACEHOLDER: [1.0, 0.0]}])

    def _bump_generation(self, rewritten: bool = False) -> None:
        """Tell every replica that the ledger changed (or, with ``rewritten``, that passage rows did).

        The generation is ``epoch/token``: a new token makes replicas fold the versions that came
        and went; a new epoch (vectors or terms rewritten in place, after a model or term-rule
        change) makes them fold everything again.
        """
        epoch = int(self.meta("vectors_epoch") or 0)
        if rewritten:
            epoch += 1
            self.set_meta("vectors_epoch", str(epoch))
        self.set_meta("generation", f"{epoch}/{secrets.token_hex(16)}")

    # -- the replica's view ---------------------------------------------------------------
    def _current_view(self) -> View:
        """The view as of now: the ledger is re-read when a writer changed the generation since last time."""
        generation = self.meta("generation")
        with self._lock:
            if generation is not None and generation == self._view.generation:
                return self._view
            rows = [_ledger_row(row) for row in self._query_all(self.documents_collection, "", _LEDGER_FIELDS)]
            self._view = self._fold(self._view, rows, generation)
            return self._view

    def _fold(self, view: View, rows: list[LedgerRow], generation: str | None) -> View:
        """The new view: moments and term counts follow the versions that became visible or invisible."""
        visible: dict[str, LedgerRow] = {}
        for row in rows:
            if row.state == COMMITTED and (
                row.document.id not in visible or row.version > visible[row.document.id].version
            ):
                visible[row.document.id] = row
        now_versions = {row.version: row for row in visible.values()}
        before = {row.version: row for row in view.visible.values()}
        added = [now_versions[v] for v in now_versions.keys() - before.keys()]
        removed = [before[v] for v in before.keys() - now_versions.keys()]
        moments = {name: view.moments[name].copy() for name in self.encoders if name in view.moments}
        frequencies = view.frequencies
        rebuild = view.generation is None or len(moments) < len(self.encoders)
        rebuild = rebuild or _epoch(view.generation) != _epoch(generation)
        if not rebuild:
            for changed, sign in ((added, 1), (removed, -1)):
                if self._fold_versions(moments, frequencies, changed, sign) < sum(r.document.passages for r in changed):
                    rebuild = True  # a version was deleted before this replica subtracted it
                    break
        if rebuild:
            moments = {name: Moments.empty(spec.dimension) for name, spec in self.encoders.items()}
            frequencies = Counter()
            self._fold_versions(moments, frequencies, list(visible.values()), 1)
        return View(
            generation, visible, hidden=frozenset(row.version for row in rows) - now_versions.keys(), moments=moments,
            frequencies=frequencies, passages=sum(row.document.passages for row in visible.values()),
            versions=frozenset(now_versions),
        )

    def _fold_versions(
        self, moments: dict[str, Moments], frequencies: Counter[str], rows: Sequence[LedgerRow], sign: int
    ) -> int:
        """Add (or subtract) the vectors and terms of these versions' passages; returns how many were found."""
        found = 0
        versions = [row.version for row in rows]
        for start in range(0, len(versions), 200):
            expression = f"version in [{', '.join(map(str, versions[start : start + 200]))}]"
            fields = ["key", *moments, *(["terms"] if self._fold_terms else [])]
            for batch in self._query_batches(self.passages_collection, expression, fields):
                found += len(batch)
                for name, moment in moments.items():
                    moment.add(np.array([row[name] for row in batch], dtype=np.float32), sign)
                for row in batch if self._fold_terms else ():
                    for term in set(row["terms"].split()):
                        frequencies[term] += sign
                        if frequencies[term] <= 0:
                            del frequencies[term]
        return found

    # -- reading -----------------------------------------------------------------------------
    def _query_batches(self, collection: str, expression: str, fields: Sequence[str]) -> Iterator[list[dict]]:
        """Every row matching an expression, in batches: one query when it fits Milvus' cap, else an iterator."""
        rows = self.client.query(
            collection, filter=expression, output_fields=list(fields), limit=MAX_RESULTS,
            consistency_level=CONSISTENCY,
        )
        if len(rows) < MAX_RESULTS:
            if rows:
                yield rows
            return
        iterator = self.client.query_iterator(
            collection, batch_size=QUERY_BATCH, filter=expression, output_fields=list(fields),
            consistency_level=CONSISTENCY,
        )
        try:
            while batch := iterator.next():
                yield batch
        finally:
            iterator.close()

    def _query_all(self, collection: str, expression: str, fields: Sequence[str]) -> list[dict]:
        return [row for batch in self._query_batches(collection, expression, fields) for row in batch]

    @contextmanager
    def reading(self) -> Iterator[MilvusView]:
        """A consistent view for one search: the visible versions and moments as of now."""
        yield MilvusView(self, self._current_view())

    def document(self, document_id: str) -> Document | None:
        """A document's record (its visible version), or None."""
        row = self._current_view().visible.get(document_id)
        return row.document if row else None

    def documents(self, offset: int = 0, limit: int = 100) -> list[Document]:
        """A page of documents in id order."""
        visible = self._current_view().visible
        return [visible[name].document for name in sorted(visible)[offset : offset + limit]]

    def documents_from_source(self, prefix: str) -> list[Document]:
        """Documents whose source starts with ``prefix``, in id order."""
        visible = self._current_view().visible
        return [visible[name].document for name in sorted(visible) if visible[name].document.source.startswith(prefix)]

    def count_documents(self) -> int:
        """Number of documents."""
        return len(self._current_view().visible)

    def count_passages(self) -> int:
        """Number of searchable passages."""
        return self._current_view().passages

    def document_passages(self, document_id: str) -> list[StoredPassage]:
        """A document's passages in reading order."""
        row = self._current_view().visible.get(document_id)
        if row is None:
            return []
        rows = self._query_all(self.passages_collection, f"version == {row.version}", _PASSAGE_FIELDS)
        return sorted((_stored_passage(found) for found in rows), key=lambda stored: stored.passage.position)

    def passage(self, passage_id: str) -> StoredPassage | None:
        """One passage by its public id (``document:digest``), in its document's visible version."""
        if not isinstance(passage_id, str) or ":" not in passage_id:
            return None
        row = self._current_view().visible.get(passage_id.rsplit(":", 1)[0])
        if row is None:
            return None
        rows = self.client.query(
            self.passages_collection,
            filter=f"version == {row.version} and id == {string_literal(passage_id)}",
            output_fields=_PASSAGE_FIELDS, consistency_level=CONSISTENCY,
        )
        return _stored_passage(rows[0]) if rows else None

    def iter_passages(self) -> Iterator[StoredPassage]:
        """Every visible passage (for migrations after a model or term-rule change)."""
        view = self._current_view()
        for row in sorted(view.visible.values(), key=lambda row: row.document.id):
            for found in self._query_all(self.passages_collection, f"version == {row.version}", _PASSAGE_FIELDS):
                yield _stored_passage(found)

    def embedding_keys(self, encoder: str) -> dict[int, str]:
        """Passage key -> embedding key of one encoder's vectors, for the visible passages."""
        versions = self._current_view().versions
        rows = self._query_all(self.passages_collection, "", ["key", "version", f"{encoder}_key"])
        return {int(row["key"]): row[f"{encoder}_key"] for row in rows if row["version"] in versions}

    def vectors_for(self, encoder: str, embedding_keys: Iterable[str]) -> dict[str, np.ndarray]:
        """Vectors already computed by an encoder for these embedding keys (same model, same input text)."""
        wanted = sorted(set(embedding_keys))
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            rows = self.client.query(
                self.passages_collection,
                filter=f"{encoder}_key in [{', '.join(map(string_literal, chunk))}]",
                output_fields=[f"{encoder}_key", encoder], limit=MAX_RESULTS, consistency_level=CONSISTENCY,
            )
            for row in rows:
                found[row[f"{encoder}_key"]] = np.asarray(row[encoder], dtype=np.float32)
        return found

    def term_frequencies(self, terms: Sequence[str]) -> dict[str, int]:
        """How many visible passages contain each term: counted by Milvus, or by this replica on Milvus Lite."""
        view = self._current_view()
        wanted = list(dict.fromkeys(terms))
        if self._fold_terms:
            return {term: view.frequencies.get(encode_term(term), 0) for term in wanted}
        with self._lock:
            if self._counted[0] != view.generation:
                self._counted = (view.generation, {})
            counted = self._counted[1]
        hidden = _not_in("version", view.hidden)

        def count(term: str) -> int:
            match = f"text_match(terms, {string_literal(encode_term(term))})"
            rows = self.client.query(
                self.passages_collection, filter=both(match, hidden), output_fields=["count(*)"],
                consistency_level=CONSISTENCY,
            )
            return int(rows[0]["count(*)"]) if rows else 0

        missing = [term for term in wanted if term not in counted]
        if missing:
            with ThreadPoolExecutor(max_workers=min(8, len(missing))) as pool:
                counted.update(zip(missing, pool.map(count, missing)))
        return {term: counted[term] for term in wanted}

    # -- writing -----------------------------------------------------------------------------
    def write_document(self, document: Document, text: str, passages: Sequence[NewPassage]) -> Document:
        """Store a new version of a document and make it the visible one; returns the document as stored.

        The passages go in under a version no search sees; one ledger row commits it; older
        versions of the document are then retired. Safe against other writers of the same
        document in any process: the highest version wins. (``text`` is not kept: Milvus
        holds the passages, whose spans refer to it.)
        """
        self._require_encoders()
        for value, what in ((document.title, "title"), (document.source, "source")):
            if len(value.encode()) > VARCHAR_LIMIT:
                raise InvalidInput(f"document {what} is longer than {VARCHAR_LIMIT} bytes")
        version = new_version()
        previous = self._current_view().visible.get(document.id)
        now = time.time()
        stamped = Document(
            id=document.id, title=document.title, source=document.source, metadata=dict(document.metadata),
            content_hash=document.content_hash, created_at=previous.document.created_at if previous else now,
            updated_at=now, passages=len(passages),
        )
        rows = [self._passage_row(version, stamped, new) for new in passages]
        with self._write_lock:
            self._write_ledger([(version, stamped, WRITING)])
            for start in range(0, len(rows), INSERT_BATCH):
                self.client.insert(self.passages_collection, rows[start : start + INSERT_BATCH])
            self._write_ledger([(version, stamped, COMMITTED)])
            self._retire_superseded(document.id)
            self._bump_generation()
            self._collect_garbage()
        self._written()
        return stamped

    def _require_encoders(self) -> None:
        if not self.encoders:
            raise InvalidInput("this index was opened without encoders: it can list and delete, not add")

    def _passage_row(self, version: int, document: Document, new: NewPassage) -> dict:
        p = new.passage
        for value, what in ((p.heading or "", "heading"), (p.text, "text")):
            if len(value.encode()) > VARCHAR_LIMIT:
                raise InvalidInput(f"a passage {what} is longer than {VARCHAR_LIMIT} bytes")
        row = {
            "key": passage_key(version, p.position),
            "id": p.id,
            "document": p.document_id,
            "version": version,
            "position": p.position,
            "title": document.title,
            "heading": p.heading,
            "text": p.text,
            "start": p.start,
            "end": p.end,
            "metadata": document.metadata,
            "terms": analysed_text(new.terms),
            "names": analysed_text(new.names),
        }
        for name in self.encoders:
            embedding = new.embeddings[name]
            row[name] = np.asarray(embedding.vector, dtype=np.float32).tolist()
            row[f"{name}_key"] = embedding.embedding_key
        return row

    def _write_ledger(self, records: Sequence[tuple[int, Document, str]]) -> None:
        """Upsert ledger rows in one request: Milvus applies a request's rows together."""
        if records:
            self.client.upsert(
                self.documents_collection, [_ledger_record(version, doc, state) for version, doc, state in records]
            )

    def _committed_rows(self, document_id: str) -> list[LedgerRow]:
        rows = self.client.query(
            self.documents_collection,
            filter=f"document == {string_literal(document_id)} and state == {string_literal(COMMITTED)}",
            output_fields=_LEDGER_FIELDS, consistency_level=CONSISTENCY,
        )
        return [_ledger_row(row) for row in rows]

    def _retire_superseded(self, document_id: str) -> None:
        """Retire every committed version of a document but the highest (another writer's, or ours)."""
        rows = self._committed_rows(document_id)
        winner = max((row.version for row in rows), default=None)
        self._write_ledger([(row.version, row.document, RETIRED) for row in rows if row.version != winner])

    def delete_document(self, document_id: str) -> Document | None:
        """Retire every committed version of a document (it leaves every search at once); None when unknown."""
        with self._write_lock:
            rows = self._committed_rows(document_id)
            if not rows:
                return None
            self._write_ledger([(row.version, row.document, RETIRED) for row in rows])
            self._bump_generation()
            self._collect_garbage()
        self._written()
        return max(rows, key=lambda row: row.version).document

    def write_embeddings(self, encoder: str, updates: Sequence[tuple[int, Embedding]]) -> None:
        """Replace one encoder's vectors of existing passages (after a model change), row by row."""
        def change(row: dict, embedding: Embedding) -> None:
            row[encoder] = np.asarray(embedding.vector, dtype=np.float32).tolist()
            row[f"{encoder}_key"] = embedding.embedding_key

        self._rewrite_rows(dict(updates), change)
        self._bump_generation(rewritten=True)

    def update_terms(self, updates: Sequence[tuple[int, list[str], list[str]]]) -> None:
        """Replace the (key, terms, names) of existing passages (after a term-rule change)."""
        def change(row: dict, terms_and_names: tuple[list[str], list[str]]) -> None:
            row["terms"], row["names"] = map(analysed_text, terms_and_names)

        self._rewrite_rows({key: (terms, names) for key, terms, names in updates}, change)
        self._bump_generation(rewritten=True)

    def _rewrite_rows(self, changes: Mapping[int, object], change_row: Callable[[dict, object], None]) -> None:
        """Read the rows of these keys, change each, upsert them back whole (Milvus 2.5 has no partial update)."""
        fields = [*_PASSAGE_FIELDS, "version", "metadata", "terms", "names", *self.encoders,
                  *(f"{name}_key" for name in self.encoders)]
        keys = sorted(changes)
        with self._write_lock:
            for start in range(0, len(keys), INSERT_BATCH):
                rows = self.client.query(
                    self.passages_collection, filter=_key_in(keys[start : start + INSERT_BATCH]),
                    output_fields=fields, consistency_level=CONSISTENCY,
                )
                for row in rows:
                    change_row(row, changes[int(row["key"])])
                if rows:
                    self.client.upsert(self.passages_collection, [{name: row[name] for name in fields} for row in rows])
        self._written()

    def _collect_garbage(self) -> None:
        """Delete versions retired long enough ago, and those whose writer died while writing."""
        now = time.time()
        expression = (
            f"(state == {string_literal(RETIRED)} and changed_at < {int((now - RETENTION_SECONDS) * 1e6)})"
            f" or (state == {string_literal(WRITING)} and changed_at < {int((now - ABANDONED_SECONDS) * 1e6)})"
        )
        rows = self.client.query(
            self.documents_collection, filter=expression, output_fields=["version"], limit=1000,
            consistency_level=CONSISTENCY,
        )
        versions = [int(row["version"]) for row in rows]
        if versions:
            listed = ", ".join(map(str, versions))
            self.client.delete(self.passages_collection, filter=f"version in [{listed}]")
            self.client.delete(self.documents_collection, filter=f"version in [{listed}]")
            log.info("deleted %d retired or abandoned document versions", len(versions))

    # -- lifecycle ---------------------------------------------------------------------------
    def _written(self) -> None:
        """After a write: on Milvus Lite, seal the new rows into indexed segments a moment later."""
        if self._seal_after_writes:
            self._sealer.schedule(SEAL_DELAY_SECONDS)

    def _checkpoint_quietly(self) -> None:
        try:
            self.checkpoint()
        except Exception:  # sealing only speeds searches up; the rows are durable already
            log.exception("sealing the written passages failed")

    def checkpoint(self) -> None:
        """Seal written passages into indexed segments (Milvus does this by itself; Milvus Lite needs it).

        Nothing else to persist: Milvus holds everything, a replica only a cache of the ledger.
        """
        with self._write_lock:
            self.client.flush(self.passages_collection)

    def close(self) -> None:
        """Release the connection (sealing what this replica wrote, on Milvus Lite)."""
        if self._sealer.cancel() and self._seal_after_writes:  # rows written and not sealed yet
            self._checkpoint_quietly()
        self.client.close()


class MilvusView:
    """What one search reads: the visible versions and moments as of the moment it began.

    Every search is filtered to those versions, so a document written meanwhile is either
    wholly in this view or not at all.
    """

    def __init__(self, index: MilvusPassageIndex, view: View) -> None:
        self._index = index
        self._view = view

    def score(self, query: Query, channels: Sequence[str], where: PassageFilter | None = None) -> list[ChannelScores]:
        """Candidates of every channel, each scored exactly by every channel, searched inside Milvus.

        The filter and the visible versions are part of every search, so each channel still
        brings its best allowed candidates (no top-k starvation).
        """
        view = self._view
        wanted = filter_expression(where)
        if wanted is None:
            return [ChannelScores(name, {}, 0.0, 0.0) for name in channels]
        allowed = both(wanted, _not_in("version", view.hidden))
        lexical_queries = {"lexical": query.terms, "names": query.names}
        candidates: dict[str, dict[int, float]] = {}
        lexical_scores: dict[str, dict[int, float]] = {}
        moments: dict[str, tuple[float, float]] = {}
        for name in channels:
            if name in LEXICAL_FIELDS:
                terms = " ".join(map(encode_term, lexical_queries[name]))
                found = self._search(f"{LEXICAL_FIELDS[name]}_sparse", terms, LEXICAL_SCORED, allowed) if terms else []
                lexical_scores[name] = dict(found)
                candidates[name] = dict(found[:CANDIDATES_PER_CHANNEL])
                moments[name] = moments_from_top(lexical_scores[name].values(), view.passages)
            else:
                vector = np.asarray(query.vectors[name], dtype=np.float32).reshape(-1)
                candidates[name] = dict(self._search(name, vector.tolist(), CANDIDATES_PER_CHANNEL, allowed))
                moments[name] = view.moments[name].of_query(vector)
        pool = set().union(*candidates.values()) if candidates else set()
        for name in channels:
            missing = sorted(pool - candidates[name].keys())
            if not missing:
                continue
            if name in LEXICAL_FIELDS:
                candidates[name].update((key, lexical_scores[name].get(key, 0.0)) for key in missing)
            else:
                vector = np.asarray(query.vectors[name], dtype=np.float32).reshape(-1).tolist()
                candidates[name].update(self._search(name, vector, len(missing), _key_in(missing)))
        return [ChannelScores(name, candidates[name], *moments[name]) for name in channels]

    def _search(self, field_name: str, query: object, limit: int, expression: str) -> list[tuple[int, float]]:
        """(key, score) best first from one field; hits of versions newer than this view are searched away."""
        versions = self._view.versions
        # milvus-lite returns BM25 scores negated, Milvus positive: BM25 is never negative
        sparse = field_name.endswith("_sparse")
        excluded: set[int] = set()
        for _ in range(STALE_RETRIES + 1):
            hits = self._index.client.search(
                self._index.passages_collection, data=[query], anns_field=field_name, limit=min(limit, MAX_RESULTS),
                filter=both(expression, _not_in("version", excluded)), output_fields=["version"],
                consistency_level=CONSISTENCY,
            )[0]
            stale = {hit["entity"]["version"] for hit in hits} - versions
            if not stale:
                break
            excluded |= stale
        return [
            (int(hit["key"]), abs(float(hit["distance"])) if sparse else float(hit["distance"]))
            for hit in hits
            if hit["entity"]["version"] in versions
        ]

    def passages(self, keys: Iterable[int]) -> dict[int, StoredPassage]:
        """The passages of these keys in this view (keys of other versions are absent)."""
        versions = self._view.versions
        keys = [int(key) for key in keys]
        found: dict[int, StoredPassage] = {}
        for start in range(0, len(keys), 500):
            rows = self._index.client.query(
                self._index.passages_collection, filter=_key_in(keys[start : start + 500]),
                output_fields=[*_PASSAGE_FIELDS, "version"], consistency_level=CONSISTENCY,
            )
            found.update((int(row["key"]), _stored_passage(row)) for row in rows if row["version"] in versions)
        return found

    def neighbours(self, document_id: str, first: int, last: int) -> list[StoredPassage]:
        """The passages of one document's visible version in this view at positions ``first``..``last``, in
        reading order."""
        row = self._view.visible.get(document_id)
        if row is None:
            return []
        rows = self._index.client.query(
            self._index.passages_collection,
            filter=f"version == {int(row.version)} and position >= {int(first)} and position <= {int(last)}",
            output_fields=_PASSAGE_FIELDS, consistency_level=CONSISTENCY,
        )
        return sorted(map(_stored_passage, rows), key=lambda stored: stored.passage.position)

    def vectors(self, key: int) -> dict[str, np.ndarray]:
        """Each encoder's vector of one passage of this view (KeyError when absent)."""
        rows = self._index.client.query(
            self._index.passages_collection, filter=f"key == {int(key)}",
            output_fields=["version", *self._index.encoders], consistency_level=CONSISTENCY,
        )
        if not rows or rows[0]["version"] not in self._view.versions:
            raise KeyError(key)
        return {name: np.asarray(rows[0][name], dtype=np.float32) for name in self._index.encoders}


_LEDGER_FIELDS = [
    "version", "document", "state", "title", "source", "metadata", "content_hash",
    "created_at", "updated_at", "passages", "changed_at",
]
_PASSAGE_FIELDS = ["key", "id", "document", "title", "heading", "text", "start", "end", "position"]


def _key_in(keys: Iterable[int]) -> str:
    return f"key in [{', '.join(map(str, keys))}]"


def _not_in(field_name: str, values: Iterable[int]) -> str:
    values = sorted(values)
    return f"{field_name} not in [{', '.join(map(str, values))}]" if values else ""


def _version_tuple(version: str) -> tuple[int, ...]:
    """``v2.5.10`` or ``2.4.0-rc`` as (2, 5, 10) / (2, 4, 0); unreadable parts count as 0."""
    numbers = [int(part) if part.isdigit() else 0 for part in version.lstrip("v").split("-")[0].split(".")[:3]]
    return tuple(numbers + [0] * (3 - len(numbers)))


def _epoch(generation: str | None) -> str | None:
    return generation.split("/", 1)[0] if generation else None


def _ledger_record(version: int, document: Document, state: str) -> dict:
    return {
        "version": version,
        "document": document.id,
        "state": state,
        "title": document.title,
        "source": document.source,
        "metadata": document.metadata,
        "content_hash": document.content_hash,
        "created_at": float(document.created_at),
        "updated_at": float(document.updated_at),
        "passages": int(document.passages),
        "changed_at": time.time_ns() // 1000,
        PLACEHOLDER: [1.0, 0.0],
    }


def _ledger_row(row: Mapping) -> LedgerRow:
    document = Document(
        id=row["document"], title=row["title"], source=row["source"], metadata=dict(row["metadata"] or {}),
        content_hash=row["content_hash"], created_at=float(row["created_at"]), updated_at=float(row["updated_at"]),
        passages=int(row["passages"]),
    )
    return LedgerRow(int(row["version"]), document, row["state"], int(row["changed_at"]))


def _stored_passage(row: Mapping) -> StoredPassage:
    passage = Passage(
        id=row["id"], document_id=row["document"], document_title=row["title"], heading=row["heading"],
        text=row["text"], start=int(row["start"]), end=int(row["end"]), position=int(row["position"]),
    )
    return StoredPassage(key=int(row["key"]), passage=passage)
