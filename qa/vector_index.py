"""The dense index: FAISS inner product over unit vectors, keyed by the store's passage keys."""

from __future__ import annotations

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

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors (n, dimension) under their keys (n,)."""
        if len(keys):
            self._index.add_with_ids(_as_matrix(vectors, self.dimension), np.asarray(keys, dtype=np.int64))

    def remove(self, keys: Iterable[int]) -> int:
        """Remove keys; returns how many were there."""
        keys = np.fromiter(keys, dtype=np.int64)
        return int(self._index.remove_ids(keys)) if len(keys) else 0

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

    def save(self, path: Path) -> None:
        """Write the index atomically."""
        write_atomically(path, lambda temporary: faiss.write_index(self._index, str(temporary)))

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
