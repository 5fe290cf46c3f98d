"""The dense index: FAISS inner product over unit vectors, keyed by the store's passage keys."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import faiss
import numpy as np

from qa.files import write_atomically


class VectorIndex:
    """Exact inner-product search (cosine, since vectors are unit length) with stable integer keys.

    ``IndexIDMap2`` keeps our keys, so a passage keeps its identity across removals,
    and can give a stored vector back (``vector``) for "more like this passage".
    Not safe for a search during ``add``/``remove``: the caller holds a readers-writer lock.
    """

    def __init__(self, dimension: int, index: faiss.Index | None = None) -> None:
        self.dimension = dimension
        self._index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))
        # Sum and sum of outer products of all vectors: the mean and spread of a query's scores
        # over the whole collection follow from them exactly, without scoring every passage.
        stored = self._all_vectors().astype(np.float64)
        self._sum = stored.sum(axis=0)
        self._outer = stored.T @ stored

    def _all_vectors(self) -> np.ndarray:
        if len(self) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self._index.index.reconstruct_n(0, len(self))

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors (n, dimension) under their keys (n,)."""
        if len(keys):
            matrix = _as_matrix(vectors, self.dimension)
            self._index.add_with_ids(matrix, np.asarray(keys, dtype=np.int64))
            self._sum += matrix.sum(axis=0)
            self._outer += matrix.T.astype(np.float64) @ matrix

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
        removed = np.stack(list(present.values())).astype(np.float64)
        self._sum -= removed.sum(axis=0)
        self._outer -= removed.T @ removed
        return int(self._index.remove_ids(np.fromiter(present, dtype=np.int64)))

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
        return faiss.vector_to_array(self._index.id_map).astype(np.int64)

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

        ``allowed_keys`` restricts the search inside FAISS, so a filter never starves top-k.
        """
        queries = _as_matrix(queries, self.dimension)
        k = max(1, min(top_k, len(self)))
        if len(self) == 0 or (allowed_keys is not None and len(allowed_keys) == 0):
            empty_scores = np.full((len(queries), top_k), -np.inf, dtype=np.float32)
            return empty_scores, np.full((len(queries), top_k), -1, dtype=np.int64)
        params = None
        if allowed_keys is not None:
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(np.asarray(allowed_keys, dtype=np.int64)))
        scores, keys = self._index.search(queries, k, params=params)
        return scores, keys

    def scores_for(self, query: np.ndarray, keys: Iterable[int]) -> dict[int, float]:
        """Exact scores of the query against the given keys (absent keys are skipped)."""
        wanted = np.fromiter(keys, dtype=np.int64)
        if len(wanted) == 0 or len(self) == 0:
            return {}
        scores, found = self.search(query, len(wanted), allowed_keys=wanted)
        return {int(key): float(score) for score, key in zip(scores[0], found[0]) if key >= 0}

    def save(self, path: Path) -> str:
        """Write the index atomically; returns the SHA-256 of the bytes written (not of ``path`` re-read later)."""
        digest = hashlib.sha256()

        def write(temporary: Path) -> None:
            faiss.write_index(self._index, str(temporary))
            digest.update(temporary.read_bytes())

        write_atomically(path, write)
        return digest.hexdigest()

    @classmethod
    def load(cls, path: Path) -> VectorIndex:
        """Read an index written by ``save``."""
        index = faiss.read_index(str(path))
        return cls(index.d, index)


def _as_matrix(vectors: np.ndarray, dimension: int) -> np.ndarray:
    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    if matrix.shape[1] != dimension:
        raise ValueError(f"vectors have dimension {matrix.shape[1]}, the index has {dimension}")
    return matrix
