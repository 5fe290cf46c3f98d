"""Ingest benchmark: throughput, adding to a large index, and searching during an ingest.

    python benchmarks/ingest.py [--paragraphs 1000] [--large 100000] [--json benchmarks/ingest-results.json]

- ingest throughput: a folder of Chinese text files made from the public benchmark
  passages (``../shared/evals``), indexed file by file as ``python -m qa add`` does;
- one more document into an index of ``--large`` passages (synthetic vectors and texts,
  real encoders for the new document): wall time of ``add_document`` and the growth of
  the process's resident memory;
- /ask latency (in-process) while another thread ingests, against the same questions idle.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qa.config import Settings  # noqa: E402
from qa.corpus import corpus_files  # noqa: E402
from qa.documents.passages import Passage  # noqa: E402
from qa.documents.readers import read_document_file  # noqa: E402
from qa.index.passage_index import Document, Embedding, NewPassage  # noqa: E402
from qa.library import Library, embedding_key  # noqa: E402
from qa.tools.eval import load_benchmark, percentile  # noqa: E402
from qa.vectors.embedder import load_encoders  # noqa: E402

EVALS = ROOT.parent / "shared" / "evals"
QUESTIONS = ["城市管理应该像什么一样精细？", "和顺县委书记是谁？", "Who is the curator of the Gao Junyu memorial?"]


def resident_mb() -> float:
    """Current resident set size of this process, in MB (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def write_paragraph_folder(folder: Path, paragraphs: int, per_file: int = 20) -> int:
    """Chinese text files of ``per_file`` paragraphs each, from the public benchmark passages."""
    texts = [row["text"] for name in ("cmrc2018-dev", "drcd-dev") for row in load_benchmark(EVALS / name).documents]
    texts = texts[:paragraphs]
    folder.mkdir(parents=True)
    for start in range(0, len(texts), per_file):
        (folder / f"part-{start // per_file:03d}.txt").write_text("\n\n".join(texts[start : start + per_file]))
    return len(texts)


def ingest_throughput(library: Library, folder: Path) -> dict:
    started = time.perf_counter()
    passages = 0
    for path, document_id in corpus_files([folder]):
        text, title = read_document_file(path)
        passages += library.add_document(text, document_id, title=title).document.passages
    seconds = time.perf_counter() - started
    return {"files": len(list(folder.iterdir())), "passages": passages, "seconds": round(seconds, 1),
            "passages_per_s": round(passages / seconds, 1)}


def fill_with_synthetic_passages(library: Library, count: int, per_document: int = 100) -> None:
    """``count`` passages with random unit vectors and random Chinese text, written straight to the index.

    The vectors are made up, not computed by the models, so they go through the index's own
    ``write_document`` rather than ``Library.add_document`` (which would embed the text).
    """
    generator = np.random.default_rng(0)
    alphabet = np.array([chr(code) for code in range(0x4E00, 0x9FA6)])  # CJK unified ideographs
    vectors = {
        name: generator.normal(size=(count, model.dimension)).astype(np.float32)
        for name, model in library.encoders.items()
    }
    for matrix in vectors.values():
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    for start in range(0, count, per_document):
        document_id = f"synthetic-{start // per_document:05d}"
        new_passages = []
        for index in range(start, min(count, start + per_document)):
            text = "".join(generator.choice(alphabet, size=80))
            passage = Passage(f"{document_id}:{index:012x}", document_id, document_id, None, text, 0, 80, index - start)
            embeddings = {
                name: Embedding(embedding_key(model.identity, f"synthetic {index}"), vectors[name][index])
                for name, model in library.encoders.items()
            }
            new_passages.append(NewPassage(passage, embeddings, terms=list(text), names=[]))
        document = Document(document_id, document_id, "benchmark", content_hash=document_id, passages=per_document)
        library.index.write_document(document, "", new_passages)


def add_to_large_index(index_dir: Path, size: int, encoders: tuple) -> dict:
    dense, crosslingual = encoders
    library = Library(index_dir, dense, crosslingual=crosslingual, progress=False)
    started = time.perf_counter()
    fill_with_synthetic_passages(library, size)
    library.close()
    filled = time.perf_counter() - started
    started = time.perf_counter()
    library = Library(index_dir, dense, crosslingual=crosslingual, progress=False)
    opened = time.perf_counter() - started
    page = (ROOT / "data" / "shanxi-daily-2025-07-page.txt").read_text(encoding="utf-8")
    document = page[:1500]
    memory_before = resident_mb()
    started = time.perf_counter()
    result = library.add_document(document, "new-document")
    added = time.perf_counter() - started
    memory_after = resident_mb()
    started = time.perf_counter()
    library.ask(QUESTIONS[0])
    asked = time.perf_counter() - started
    library.close()
    return {
        "passages_in_index": size,
        "fill_store_s": round(filled, 1),
        "open_index_s": round(opened, 1),
        "add_document_s": round(added, 2),
        "add_document_passages": result.document.passages,
        "resident_memory_growth_mb": round(memory_after - memory_before, 1),
        "resident_memory_mb": round(memory_after),
        "ask_after_add_ms": round(asked * 1000, 1),
    }


def latency_during_ingest(library: Library, folder: Path, rounds: int = 15) -> dict:
    def timed_questions() -> list[float]:
        timings = []
        for _ in range(rounds):
            for question in QUESTIONS:
                started = time.perf_counter()
                library.ask(question)
                timings.append((time.perf_counter() - started) * 1000)
        return timings

    idle = timed_questions()
    stop = threading.Event()

    def ingest() -> None:
        for path, document_id in corpus_files([folder]):
            if stop.is_set():
                return
            text, _ = read_document_file(path)
            library.add_document(text + "\n\n（再版）", f"again-{document_id}")

    writer = threading.Thread(target=ingest, daemon=True)
    writer.start()
    busy = timed_questions()
    stop.set()
    writer.join()
    return {
        "idle_p50_ms": round(statistics.median(idle), 1),
        "idle_p95_ms": round(percentile(idle, 0.95), 1),
        "during_ingest_p50_ms": round(statistics.median(busy), 1),
        "during_ingest_p95_ms": round(percentile(busy, 0.95), 1),
        "p50_ratio": round(statistics.median(busy) / statistics.median(idle), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paragraphs", type=int, default=1000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--json", type=Path)
    arguments = parser.parse_args()
    encoders = load_encoders(Settings(), progress=False)
    results: dict = {}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        folder = scratch / "paragraphs"
        results["paragraphs"] = write_paragraph_folder(folder, arguments.paragraphs)
        library = Library(scratch / "ingest-index", encoders[0], crosslingual=encoders[1], progress=False)
        library.add_document((ROOT / "data" / "shanxi-daily-2025-07-page.txt").read_text(encoding="utf-8"), "page")
        results["ingest"] = ingest_throughput(library, folder)
        results["search_during_ingest"] = latency_during_ingest(library, folder)
        library.close()
        results["add_to_large_index"] = add_to_large_index(scratch / "large-index", arguments.large, encoders)
    print(json.dumps(results, indent=2))
    if arguments.json:
        arguments.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
