"""One machine at scale: the vector index at 1,000,000 passages, exact against approximate.

    python benchmarks/vector_index.py [--vectors 1000000] [--queries 200] [--hnsw]
                                      [--json benchmarks/vector-index-results.json]

The vectors are structured like real ones, not uniform noise: the e5 vectors (default backend) of
the public passages (cmrc2018-dev and drcd-dev, cut into passages as the service cuts them),
mixed two at a time with random weights and perturbed with noise, then normalised; the queries
are e5 question vectors of the same sets. Reports, for the service's index (``VectorIndex``
above its exact limit: IVF) and for exact search (and HNSW with ``--hnsw``): build time, memory
(resident growth), p50 latency of one query, recall@10 against exact search, the snapshot's size
and its opening time (``VectorIndex.load``), and checks that a filter still returns allowed keys
only. Not part of the test suite (tests/test_vector_index.py checks the switch at small size).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reporting import load_average, write_results  # noqa: E402

from qa.config import DEFAULT_BACKEND, DEFAULT_MODEL, DEFAULT_MODELS_DIR  # noqa: E402
from qa.documents.passages import split_document  # noqa: E402
from qa.tools.eval import load_benchmark  # noqa: E402

EVALS = ROOT.parent / "shared" / "evals"
CACHE = ROOT / ".cache" / "benchmarks"


def resident_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def real_vectors(limit_questions: int) -> tuple[np.ndarray, np.ndarray]:
    """(passage vectors, question vectors) of the public sets with the default backend, cached."""
    from qa.vectors.embedder import load_embedder

    model = load_embedder(DEFAULT_MODEL, DEFAULT_MODELS_DIR, threads=2, backend=DEFAULT_BACKEND, progress=False)
    digest = hashlib.sha256(model.identity.encode()).hexdigest()[:12]
    cached = CACHE / f"e5-vectors-{digest}-{limit_questions}.npz"
    if cached.exists():
        stored = np.load(cached)
        return stored["passages"], stored["questions"]
    passages, questions = [], []
    for name in ("cmrc2018-dev", "drcd-dev"):
        benchmark = load_benchmark(EVALS / name)
        for document in benchmark.documents:
            passages.extend(p.text for p in split_document(document["text"], document["id"], document.get("title")))
        questions.extend(q.question for q in benchmark.questions[: limit_questions // 2])
    print(f"embedding {len(passages)} passages and {len(questions)} questions once (cached)", flush=True)
    passage_vectors = model.embed_passages(passages)
    question_vectors = model.embed_queries(questions)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(cached, passages=passage_vectors, questions=question_vectors)
    return passage_vectors, question_vectors


def structured_vectors(base: np.ndarray, count: int, seed: int = 7, noise: float = 0.015) -> np.ndarray:
    """``count`` unit vectors: random two-way mixtures of real vectors plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    out = np.empty((count, base.shape[1]), dtype=np.float32)
    for start in range(0, count, 100_000):
        size = min(100_000, count - start)
        first, second = rng.integers(0, len(base), size), rng.integers(0, len(base), size)
        weight = rng.uniform(0.5, 1.0, size).astype(np.float32)[:, None]
        rows = weight * base[first] + (1 - weight) * base[second]
        rows += rng.normal(scale=noise, size=rows.shape).astype(np.float32)
        out[start : start + size] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return out


def latencies(search, queries: np.ndarray) -> float:
    timings = []
    for query in queries:
        started = time.perf_counter()
        search(query)
        timings.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(timings), 2)


def recall_at_10(found: np.ndarray, truth: np.ndarray) -> float:
    return round(float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found.tolist(), truth.tolist())])), 4)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--exact-limit", type=int, default=None, help="the service's limit (default: its setting)")
    parser.add_argument("--noise", type=float, default=0.015,
                        help="Gaussian noise per dimension (0.015: neighbours as close as real ones)")
    parser.add_argument("--hnsw", action="store_true", help="also build an HNSW index (slow) for comparison")
    parser.add_argument("--json", type=Path)
    arguments = parser.parse_args()

    import faiss

    from qa.index.vector_index import DEFAULT_EXACT_LIMIT, VectorIndex

    results: dict = {"cpu_count": os.cpu_count(), "load_before": load_average()}
    base, queries = real_vectors(arguments.queries)
    results["real_passage_vectors"] = len(base)
    vectors = structured_vectors(base, arguments.vectors, noise=arguments.noise)
    results["noise_per_dimension"] = arguments.noise
    keys = np.arange(arguments.vectors, dtype=np.int64) + 1
    results["vectors"] = arguments.vectors
    nearest = np.sort(base[:2000] @ base[:2000].T, axis=1)[:, -2]
    results["real_nearest_neighbour_cosine_median"] = round(float(np.median(nearest)), 3)
    sample = vectors[:2000] @ vectors[:200_000].T
    results["synthetic_nearest_neighbour_cosine_median"] = round(float(np.median(np.sort(sample, axis=1)[:, -2])), 3)
    del sample
    print(json.dumps(results), flush=True)

    # exact search: the reference
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    _, truth = exact.search(queries, 10)
    truth = keys[truth]
    results["exact"] = {"p50_ms_one_query": latencies(lambda q: exact.search(q[None, :], 10), queries[:50])}
    exact = None
    gc.collect()

    # the service's index: VectorIndex above its limit
    limit = arguments.exact_limit or DEFAULT_EXACT_LIMIT
    before = resident_mb()
    started = time.perf_counter()
    index = VectorIndex(vectors.shape[1], exact_limit=limit)
    index.add(keys, vectors)
    build = time.perf_counter() - started
    gc.collect()
    service = {"exact_limit": limit, **index.describe(), "build_s": round(build, 1),
               "resident_growth_mb": round(resident_mb() - before)}
    _, answers = index.search(queries, 10)
    service["recall_at_10"] = recall_at_10(answers, truth)
    service["p50_ms_one_query"] = latencies(lambda q: index.search(q, 100), queries[:100])
    service["p50_ms_moments_and_100_candidates"] = latencies(
        lambda q: (index.search(q, 100), index.score_moments(q)), queries[:100]
    )
    allowed = keys[::7]
    _, filtered = index.search(queries[:20], 10, allowed_keys=allowed)
    service["filter_returns_allowed_only"] = bool(np.isin(filtered[filtered >= 0], allowed).all())
    service["p50_ms_filtered_1_in_7"] = latencies(lambda q: index.search(q, 10, allowed_keys=allowed), queries[:20])
    if index.approximate:
        lists = index._index.nlist
        probes = {}
        for probe in (8, 16, 32, 64, 128):
            if probe <= lists:
                index._index.nprobe = probe
                _, found = index.search(queries, 10)
                probes[str(probe)] = {"recall_at_10": recall_at_10(found, truth),
                                      "p50_ms": latencies(lambda q: index.search(q, 100), queries[:50])}
        index._index.nprobe = service["probes"]
        service["by_probes"] = probes
    with tempfile.TemporaryDirectory(dir=ROOT / ".cache") as folder:
        path = Path(folder) / "vectors.faiss"
        started = time.perf_counter()
        index.save(path)
        service["save_s"] = round(time.perf_counter() - started, 1)
        service["file_mb"] = round(path.stat().st_size / 2**20)
        index = None
        gc.collect()
        started = time.perf_counter()
        loaded = VectorIndex.load(path, exact_limit=limit)
        service["open_s"] = round(time.perf_counter() - started, 2)
        from qa.files import file_sha256

        started = time.perf_counter()
        file_sha256(path)
        service["snapshot_digest_check_s"] = round(time.perf_counter() - started, 2)
        service["opened_same_answers"] = bool(np.array_equal(loaded.search(queries, 10)[1], answers))
        del loaded
    results["service_index"] = service
    print(json.dumps(results["service_index"]), flush=True)
    gc.collect()

    if arguments.hnsw:
        before = resident_mb()
        started = time.perf_counter()
        hnsw = faiss.IndexHNSWFlat(vectors.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = 64
        hnsw.add(vectors)
        entry = {"M": 32, "efConstruction": 64, "build_s": round(time.perf_counter() - started, 1),
                 "resident_growth_mb": round(resident_mb() - before), "by_ef_search": {}}
        for ef in (32, 64, 128):
            hnsw.hnsw.efSearch = ef
            _, found = hnsw.search(queries, 10)
            entry["by_ef_search"][str(ef)] = {
                "recall_at_10": recall_at_10(keys[found], truth),
                "p50_ms": latencies(lambda q: hnsw.search(q[None, :], 100), queries[:50]),
            }
        results["hnsw"] = entry
        print(json.dumps(entry), flush=True)
    results["load_after"] = load_average()
    write_results(results, arguments.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
