"""The dense index: FAISS inner product over unit vectors, keyed by the store's passage keys.

Exact search below a size limit, approximate above it. A flat scan of every vector costs time
in proportion to the collection (about 10 ms per encoder per question at 100,000 passages on
one core); an inverted-file index (IVF: vectors grouped around k-means centroids, a question
scans the groups nearest to it) scans a few percent. IVF rather than HNSW because passages are
removed and replaced all the time: IVF removes by id and gives vectors back by id (a direct
map), HNSW can do neither (benchmarks/vector_index.py measures both; README "Performance").
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import struct
import time
from collections.abc import Iterable
from pathlib import Path

import faiss
import numpy as np

from qa.config import DEFAULT_EXACT_SEARCH_LIMIT
from qa.files import write_atomically

log = logging.getLogger(__name__)

# Above this many vectors the index becomes approximate (IVF), and exact again below
# EXACT_RETURN_FRACTION of it (a margin, so adding and removing one document at the limit
# does not rebuild the index each time).
DEFAULT_EXACT_LIMIT = DEFAULT_EXACT_SEARCH_LIMIT
EXACT_RETURN_FRACTION = 0.8
# An IVF index is retrained when the collection has grown this much since its centroids were learnt.
RETRAIN_GROWTH = 4.0
# k-means sample per centroid when training, and iterations (faiss asks for >= 39 points per centroid).
TRAINING_POINTS_PER_LIST = 48
TRAINING_ITERATIONS = 10
# A filter allowing at most this many keys is scored exactly (vectors read back by id), whatever the index.
EXACT_FILTER_LIMIT = 4096

SNAPSHOT_MAGIC = b"QAVECTR1"


def list_count(size: int) -> int:
    """IVF lists for a collection of ``size``: about 2·√size, a power of two, with ≥ 39 vectors each to learn from."""
    lists = 2 ** round(math.log2(2 * math.sqrt(max(size, 1))))
    while lists > 16 and lists * 39 > size:
        lists //= 2
    return lists


def probe_count(lists: int) -> int:
    """Lists scanned per question: recall@10 ≥ 0.95 on structured e5 vectors at 1M (benchmarks/vector_index.py)."""
    return min(lists, max(16, lists // 32))


class VectorIndex:
    """Inner-product search (cosine, since vectors are unit length) with stable integer keys.

    Exact (``IndexIDMap2`` over a flat index) up to ``exact_limit`` vectors, IVF with a direct
    map beyond it; the switch both ways happens inside ``add``/``remove``. Either way a passage
    keeps its key across removals and its vector can be read back (``vector``). The mean and
    spread of a query's scores over the whole collection stay exact (kept from running sums).
    Not safe for a search during ``add``/``remove``: the caller holds a readers-writer lock.
    """

    def __init__(
        self,
        dimension: int,
        index: faiss.Index | None = None,
        exact_limit: int = DEFAULT_EXACT_LIMIT,
        moments: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.dimension = dimension
        self.exact_limit = max(1, exact_limit)
        self._index = index if index is not None else _exact_index(dimension)
        self._trained_size = len(self) if self.approximate else 0
        if moments is not None:
            self._sum, self._outer = (np.array(part, dtype=np.float64) for part in moments)
        else:
            # Sum and sum of outer products of all vectors: the mean and spread of a query's scores
            # over the whole collection follow from them exactly, without scoring every passage.
            self._sum = np.zeros(dimension, dtype=np.float64)
            self._outer = np.zeros((dimension, dimension), dtype=np.float64)
            keys = self.keys()
            for start in range(0, len(keys), 65536):
                self._accumulate(self._vectors_of(keys[start : start + 65536]), 1.0)

    # -- shape ---------------------------------------------------------------------------------
    @property
    def approximate(self) -> bool:
        """Whether searches scan only the nearest IVF lists."""
        return isinstance(self._index, faiss.IndexIVF)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def describe(self) -> dict:
        """What kind of index this is, for logs and benchmarks."""
        if self.approximate:
            return {"kind": "ivf", "vectors": len(self), "lists": int(self._index.nlist),
                    "probes": int(self._index.nprobe)}
        return {"kind": "exact", "vectors": len(self)}

    def _accumulate(self, matrix: np.ndarray, sign: float) -> None:
        if len(matrix):
            exact = matrix.astype(np.float64)
            self._sum += sign * exact.sum(axis=0)
            self._outer += sign * (exact.T @ exact)

    def _vectors_of(self, keys: np.ndarray) -> np.ndarray:
        if len(keys) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self._index.reconstruct_batch(np.ascontiguousarray(keys, dtype=np.int64))

    # -- writing -------------------------------------------------------------------------------
    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors (n, dimension) under their keys (n,)."""
        if len(keys):
            matrix = _as_matrix(vectors, self.dimension)
            self._index.add_with_ids(matrix, np.asarray(keys, dtype=np.int64))
            self._accumulate(matrix, 1.0)
            self._reshape_if_needed()

    def remove(self, keys: Iterable[int]) -> int:
        """Remove keys; returns how many were there."""
        present: dict[int, np.ndarray] = {}
        for key in map(int, keys):
            try:
                present[key] = self.vector(key)
            except KeyError:
                continue
        if not present:
            return 0
        self._accumulate(np.stack(list(present.values())), -1.0)
        removed = int(self._index.remove_ids(np.fromiter(present, dtype=np.int64)))
        self._reshape_if_needed()
        return removed

    def _reshape_if_needed(self) -> None:
        """Switch exact ↔ approximate at the limit, and retrain IVF lists grown out of shape."""
        size = len(self)
        if not self.approximate and size > self.exact_limit:
            self._rebuild(approximate=True)
        elif self.approximate and size < self.exact_limit * EXACT_RETURN_FRACTION:
            self._rebuild(approximate=False)
        elif self.approximate and size > self._trained_size * RETRAIN_GROWTH:
            self._rebuild(approximate=True)

    def _rebuild(self, approximate: bool) -> None:
        started = time.perf_counter()
        keys = self.keys()
        vectors = self._vectors_of(keys)
        # k-means and assigning every vector to its list use every core (OpenMP counts are per thread)
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        try:
            index = _ivf_index(vectors, self.dimension) if approximate else _exact_index(self.dimension)
            for start in range(0, len(keys), 65536):
                index.add_with_ids(vectors[start : start + 65536], keys[start : start + 65536])
        finally:
            faiss.omp_set_num_threads(threads)
        self._index = index
        self._trained_size = len(keys) if approximate else 0
        log.info("vector index rebuilt as %s in %.1f s", self.describe(), time.perf_counter() - started)

    # -- reading -------------------------------------------------------------------------------
    def score_moments(self, query: np.ndarray) -> tuple[float, float]:
        """Mean and standard deviation of ``query · v`` over every stored vector v."""
        count = len(self)
        if count == 0:
            return 0.0, 1.0
        query = np.asarray(query, dtype=np.float64).reshape(-1)
        mean = float(query @ self._sum) / count
        variance = float(query @ self._outer @ query) / count - mean * mean
        return mean, max(variance, 1e-12) ** 0.5

    def keys(self) -> np.ndarray:
        """Every key in the index (unordered)."""
        if not self.approximate:
            return faiss.vector_to_array(self._index.id_map).astype(np.int64)
        lists = self._index.invlists
        parts = [np.zeros(0, dtype=np.int64)]
        for number in range(self._index.nlist):
            size = lists.list_size(number)
            if size:
                parts.append(faiss.rev_swig_ptr(lists.get_ids(number), size).astype(np.int64).copy())
        return np.concatenate(parts)

    def vector(self, key: int) -> np.ndarray:
        """The stored vector of a key (KeyError when absent)."""
        try:
            return self._index.reconstruct(int(key))
        except RuntimeError:
            raise KeyError(key) from None

    def search(
        self, queries: np.ndarray, top_k: int, allowed_keys: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Best ``top_k`` (scores, keys) per query row, best first; key -1 pads missing results.

        ``allowed_keys`` restricts the search inside FAISS, so a filter never starves top-k; a
        small allowed set is scored exactly, a large one through the index with the filter
        applied while scanning (and more lists scanned if the first pass came back short).
        """
        queries = _as_matrix(queries, self.dimension)
        k = max(1, min(top_k, len(self)))
        if len(self) == 0 or (allowed_keys is not None and len(allowed_keys) == 0):
            empty_scores = np.full((len(queries), top_k), -np.inf, dtype=np.float32)
            return empty_scores, np.full((len(queries), top_k), -1, dtype=np.int64)
        if allowed_keys is not None and len(allowed_keys) <= EXACT_FILTER_LIMIT:
            return self._search_among(queries, k, np.asarray(allowed_keys, dtype=np.int64))
        selector = None
        if allowed_keys is not None:
            selector = faiss.IDSelectorBatch(np.asarray(allowed_keys, dtype=np.int64))
        if not self.approximate:
            params = faiss.SearchParameters(sel=selector) if selector is not None else None
            return self._index.search(queries, k, params=params)
        probes = int(self._index.nprobe)
        while True:
            params = faiss.SearchParametersIVF(sel=selector, nprobe=probes)
            scores, keys = self._index.search(queries, k, params=params)
            if selector is None or (keys >= 0).all() or probes >= self._index.nlist:
                return scores, keys
            probes = min(self._index.nlist, probes * 4)

    def _search_among(self, queries: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k among given keys (absent keys skipped)."""
        found = self.scores_matrix(queries, allowed)
        keys, scores = found
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(scores, order, axis=1).astype(np.float32)
        best_keys = keys[order] if len(keys) else np.zeros((len(queries), 0), dtype=np.int64)
        if best_keys.shape[1] < k:  # fewer allowed keys than k: pad like FAISS does
            pad = k - best_keys.shape[1]
            best_scores = np.hstack([best_scores, np.full((len(queries), pad), -np.inf, dtype=np.float32)])
            best_keys = np.hstack([best_keys, np.full((len(queries), pad), -1, dtype=np.int64)])
        return best_scores, best_keys

    def scores_matrix(self, queries: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(present keys, exact scores (queries × present keys)) — vectors read back by id."""
        keys = np.unique(np.asarray(keys, dtype=np.int64))
        try:
            vectors = self._vectors_of(keys)
        except RuntimeError:  # some key is absent: read them one by one
            present = {}
            for key in keys.tolist():
                try:
                    present[key] = self.vector(key)
                except KeyError:
                    continue
            keys = np.fromiter(present, dtype=np.int64, count=len(present))
            vectors = np.stack(list(present.values())) if present else self._vectors_of(keys)
        return keys, _as_matrix(queries, self.dimension) @ vectors.T

    def scores_for(self, query: np.ndarray, keys: Iterable[int]) -> dict[int, float]:
        """Exact scores of the query against the given keys (absent keys are skipped)."""
        wanted = np.fromiter(keys, dtype=np.int64)
        if len(wanted) == 0 or len(self) == 0:
            return {}
        present, scores = self.scores_matrix(query, wanted)
        return {int(key): float(score) for key, score in zip(present, scores[0])}

    # -- files ---------------------------------------------------------------------------------
    def save(self, path: Path) -> str:
        """Write the index and its score moments atomically; returns the SHA-256 of the bytes written.

        The moments travel in the same file, so opening a large index needs no pass over its vectors.
        """
        digest = hashlib.sha256()

        def write(temporary: Path) -> None:
            header = json.dumps({"dimension": self.dimension, "vectors": len(self)}).encode()
            with open(temporary, "wb") as file:
                def tee(data: bytes) -> None:
                    file.write(data)
                    digest.update(data)

                tee(SNAPSHOT_MAGIC + struct.pack("<Q", len(header)) + header)
                tee(self._sum.astype("<f8").tobytes())
                tee(self._outer.astype("<f8").tobytes())
                faiss.write_index(self._index, faiss.PyCallbackIOWriter(lambda data: tee(bytes(data)) or len(data)))

        write_atomically(path, write)
        return digest.hexdigest()

    @classmethod
    def load(cls, path: Path, exact_limit: int = DEFAULT_EXACT_LIMIT) -> VectorIndex:
        """Read an index written by ``save`` (or a plain FAISS file of an earlier version)."""
        with open(path, "rb") as file:
            if file.read(len(SNAPSHOT_MAGIC)) != SNAPSHOT_MAGIC:
                index = faiss.read_index(str(path))
                loaded = cls(index.d, index, exact_limit=exact_limit)
            else:
                try:
                    (length,) = struct.unpack("<Q", _read_exactly(file, 8))
                    dimension = int(json.loads(_read_exactly(file, length))["dimension"])
                except (ValueError, KeyError, TypeError, struct.error) as error:
                    raise RuntimeError(f"vector snapshot header unreadable: {error}") from None
                total = np.frombuffer(_read_exactly(file, 8 * dimension), dtype="<f8")
                outer = np.frombuffer(_read_exactly(file, 8 * dimension * dimension), dtype="<f8")
                index = faiss.read_index(faiss.PyCallbackIOReader(file.read))
                loaded = cls(dimension, index, exact_limit=exact_limit,
                             moments=(total, outer.reshape(dimension, dimension)))
        loaded._reshape_if_needed()  # the limit may have changed since it was written
        return loaded


def _read_exactly(file: io.BufferedReader, size: int) -> bytes:
    data = file.read(size)
    if len(data) != size:
        raise RuntimeError("vector snapshot is truncated")
    return data


def _exact_index(dimension: int) -> faiss.Index:
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))


def _ivf_index(vectors: np.ndarray, dimension: int) -> faiss.IndexIVFFlat:
    """An empty IVF index whose lists are k-means centroids of (a sample of) ``vectors``."""
    lists = list_count(len(vectors))
    quantizer = faiss.IndexFlatIP(dimension)
    index = faiss.IndexIVFFlat(quantizer, dimension, lists, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = TRAINING_ITERATIONS
    index.cp.max_points_per_centroid = TRAINING_POINTS_PER_LIST
    index.cp.seed = 1234
    sample = vectors
    if len(vectors) > lists * TRAINING_POINTS_PER_LIST:
        chosen = np.random.default_rng(1234).choice(len(vectors), lists * TRAINING_POINTS_PER_LIST, replace=False)
        sample = vectors[np.sort(chosen)]
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    index.quantizer_trains_alone = 0
    index.set_direct_map_type(faiss.DirectMap.Hashtable)
    index.nprobe = probe_count(lists)
    index.own_fields = True
    quantizer.this.disown()
    return index


def _as_matrix(vectors: np.ndarray, dimension: int) -> np.ndarray:
    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    if matrix.shape[1] != dimension:
        raise ValueError(f"vectors have dimension {matrix.shape[1]}, the index has {dimension}")
    return matrix
