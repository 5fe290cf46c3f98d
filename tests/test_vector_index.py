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


# -- exact below a size limit, approximate (IVF) above it -------------------------------------------
def clustered_rows(count: int, dimension: int = 32, centres: int = 40, seed: int = 1) -> np.ndarray:
    """Unit vectors around a few dozen directions, as passage embeddings of a few topics are."""
    rng = np.random.default_rng(seed)
    middle = rng.normal(size=(centres, dimension))
    rows = middle[rng.integers(0, centres, count)] + 0.6 * rng.normal(size=(count, dimension))
    rows = rows.astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def exact_moments(index: VectorIndex, vectors: np.ndarray, query: np.ndarray) -> tuple[float, float]:
    scores = vectors @ query
    return float(scores.mean()), float(scores.std())


def test_index_turns_approximate_above_the_limit_and_exact_again_below_it():
    vectors = clustered_rows(3000)
    index = VectorIndex(32, exact_limit=2000)
    index.add(np.arange(1500), vectors[:1500])
    assert not index.approximate
    index.add(np.arange(1500, 3000), vectors[1500:])
    assert index.approximate and len(index) == 3000
    assert sorted(index.keys().tolist()) == list(range(3000))
    np.testing.assert_allclose(index.vector(2999), vectors[2999], atol=1e-6)
    index.remove(range(1500))  # 1500 < 0.8 × 2000
    assert not index.approximate and sorted(index.keys().tolist()) == list(range(1500, 3000))


def test_approximate_search_finds_most_of_the_exact_top_10():
    vectors = clustered_rows(6000)
    exact = VectorIndex(32, exact_limit=10_000)
    approximate = VectorIndex(32, exact_limit=1000)
    for index in (exact, approximate):
        index.add(np.arange(6000), vectors)
    assert approximate.approximate and not exact.approximate
    queries = clustered_rows(100, seed=7)
    _, truth = exact.search(queries, 10)
    _, found = approximate.search(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth.tolist(), found.tolist())])
    assert recall >= 0.95, recall


def test_approximate_index_keeps_filters_exact_scores_and_collection_moments(tmp_path: Path):
    vectors = clustered_rows(3000)
    index = VectorIndex(32, exact_limit=1000)
    index.add(np.arange(3000), vectors)
    index.remove(range(0, 3000, 3))
    kept = np.array([key for key in range(3000) if key % 3], dtype=np.int64)
    query = clustered_rows(1, seed=9)[0]
    # small filter (scored exactly) and large filter (applied while scanning): only allowed keys, best first
    for allowed in (kept[:40], kept[::2]):
        scores, keys = index.search(query, 10, allowed_keys=allowed)
        assert set(keys[0].tolist()) <= set(allowed.tolist()) and (keys[0] >= 0).all()
        assert list(scores[0]) == sorted(scores[0], reverse=True)
    small = kept[:40]
    _, keys = index.search(query, 10, allowed_keys=small)
    assert keys[0].tolist() == small[np.argsort(-(vectors[small] @ query))][:10].tolist()
    assert index.scores_for(query, [1, 2, 3]) == pytest.approx(
        {1: float(vectors[1] @ query), 2: float(vectors[2] @ query)}, abs=1e-5
    )  # key 3 was removed: skipped
    assert index.score_moments(query) == pytest.approx(exact_moments(index, vectors[kept], query), abs=1e-6)
    index.save(tmp_path / "vectors.faiss")
    loaded = VectorIndex.load(tmp_path / "vectors.faiss", exact_limit=1000)
    assert loaded.approximate and loaded.describe() == index.describe()
    assert loaded.score_moments(query) == pytest.approx(index.score_moments(query), abs=1e-9)
    np.testing.assert_array_equal(loaded.search(query, 10)[1], index.search(query, 10)[1])


def test_a_snapshot_opened_with_a_higher_limit_becomes_exact(tmp_path: Path):
    vectors = clustered_rows(1500)
    index = VectorIndex(32, exact_limit=1000)
    index.add(np.arange(1500), vectors)
    index.save(tmp_path / "vectors.faiss")
    loaded = VectorIndex.load(tmp_path / "vectors.faiss", exact_limit=5000)
    assert not loaded.approximate and len(loaded) == 1500
