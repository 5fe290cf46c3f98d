"""The FAISS wrapper: stable keys, filtered search without starvation, atomic snapshots."""

from pathlib import Path

import numpy as np
import pytest

from qa.index.vector_index import VectorIndex


def unit_rows(count: int, dimension: int = 8, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(count, dimension)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_search_returns_keys_best_first_with_cosine_scores():
    vectors = unit_rows(20)
    index = VectorIndex(8)
    index.add(np.arange(100, 120), vectors)
    scores, keys = index.search(vectors[3], 3)
    assert keys[0][0] == 103
    assert scores[0][0] == pytest.approx(1.0, abs=1e-5)
    assert list(scores[0]) == sorted(scores[0], reverse=True)


def test_removed_keys_are_never_returned_and_others_keep_their_keys():
    vectors = unit_rows(10)
    index = VectorIndex(8)
    index.add(np.arange(10), vectors)
    assert index.remove([3, 4, 99]) == 2
    _, keys = index.search(vectors[3], 10)
    assert 3 not in keys[0] and 4 not in keys[0]
    assert sorted(index.keys().tolist()) == [0, 1, 2, 5, 6, 7, 8, 9]
    np.testing.assert_allclose(index.vector(7), vectors[7], atol=1e-6)


def test_filtered_search_fills_top_k_from_the_allowed_keys_only():
    vectors = unit_rows(500)
    index = VectorIndex(8)
    index.add(np.arange(500), vectors)
    allowed = np.arange(0, 500, 50)  # 10 keys, far from most queries' neighbours
    _, keys = index.search(vectors[7], 5, allowed_keys=allowed)
    assert len(keys[0]) == 5 and set(keys[0]) <= set(allowed.tolist())


def test_empty_index_and_empty_filter_return_padding():
    index = VectorIndex(8)
    scores, keys = index.search(unit_rows(1)[0], 4)
    assert keys.tolist() == [[-1, -1, -1, -1]]
    index.add(np.arange(3), unit_rows(3))
    _, keys = index.search(unit_rows(1)[0], 2, allowed_keys=np.array([], dtype=np.int64))
    assert keys.tolist() == [[-1, -1]]


def test_wrong_dimension_is_refused():
    with pytest.raises(ValueError, match="dimension"):
        VectorIndex(8).add(np.arange(2), unit_rows(2, dimension=4))


def test_snapshot_round_trip_keeps_keys_and_vectors(tmp_path: Path):
    vectors = unit_rows(30)
    index = VectorIndex(8)
    index.add(np.arange(1000, 1030), vectors)
    index.save(tmp_path / "vectors.faiss")
    loaded = VectorIndex.load(tmp_path / "vectors.faiss")
    assert loaded.dimension == 8 and len(loaded) == 30
    _, keys = loaded.search(vectors[5], 1)
    assert keys[0][0] == 1005
    assert [p.name for p in tmp_path.iterdir()] == ["vectors.faiss"]  # no temporary left behind
