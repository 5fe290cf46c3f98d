"""Time outside the question encoders: asks whose question vectors are cached, on a large index.

    python benchmarks/overhead.py [--passages 100000] [--json benchmarks/overhead-results.json]

The index holds ``--passages`` synthetic passages (random vectors and Chinese text written straight
to the index, as ``benchmarks/ingest.py`` makes them; above the exact-search limit the vector index is
IVF) plus the bundled page. Each of the 80 gold questions is asked once to fill the question cache,
then again per mode: what is timed is everything but the question encoders (SQL, FAISS, BM25, fusion,
term evidence, confidence, highlights and their sentence vectors).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ingest import fill_with_synthetic_passages  # noqa: E402
from reporting import load_average, write_results  # noqa: E402

from qa.config import Settings  # noqa: E402
from qa.library import Library  # noqa: E402
from qa.tools.eval import load_benchmark, percentile  # noqa: E402
from qa.vectors.embedder import load_encoders  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument("--json", type=Path, help="also write the results here")
    arguments = parser.parse_args()
    dense, crosslingual = load_encoders(Settings(), progress=False)
    page = load_benchmark(ROOT / "evals" / "bundled-page")
    questions = [question.question for question in page.questions]
    results: dict = {"cpu_count": os.cpu_count(), "load_before": load_average()}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "index"
        library = Library(folder, dense, crosslingual=crosslingual, progress=False)
        fill_with_synthetic_passages(library, arguments.passages)
        for document in page.documents:
            library.add_document(document["text"], document["id"], title=document.get("title"))
        library.close()
        library = Library(folder, dense, crosslingual=crosslingual, progress=False)
        library.warm_up()
        results["passages"] = library.count()
        for question in questions:
            library.ask(question)
        for mode in ("hybrid", "dense", "lexical"):
            timings = []
            for question in questions:
                started = time.perf_counter()
                library.ask(question, mode=mode)
                timings.append((time.perf_counter() - started) * 1000)
            results[mode] = {
                "p50_ms": round(statistics.median(timings), 2), "p95_ms": round(percentile(timings, 0.95), 2)
            }
        library.close()
    results["load_after"] = load_average()
    write_results(results, arguments.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
