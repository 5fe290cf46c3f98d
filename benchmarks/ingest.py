"""Ingest benchmark: HTTP and ``qa add`` throughput against torch, a large index, searching during an ingest.

    python benchmarks/ingest.py [--parts http,add,search,in-process,large] [--json benchmarks/ingest-results.json]

Public paragraphs (``../shared/evals``: cmrc2018-dev, then drcd-dev), distinct, each part on
its own slice of them. Every figure that is a ratio is measured in one run, interleaved, with
the load average before and after each part. Parts (``--parts``, all by default):

- ``http``: a real ``python server.py`` (its defaults, an empty index, ``--corpus ''``) gets
  one paragraph per ``POST /api/documents``; passages stored ÷ wall seconds. The reference:
  sentence-transformers + torch fp32 in this process embedding exactly the passages the
  service stored (split as the library splits, e5's passage prompt, sentence-transformers'
  default batch size), at 1 thread and at all cores, the better of the two. Round r: the
  HTTP ingest of chunk r, then torch on chunk r's passages;
- ``add``: ``python -m qa add FOLDER`` (one subprocess, one paragraph per file, batched
  across documents; its wall time includes start-up and loading the models) on another
  slice, between torch at 1 thread and torch at all cores on the same passages;
- ``search``: p50/p95 of ``POST /api/ask`` (the gold questions of ``evals/bundled-page``,
  question cache off, the bundled page indexed) when idle against while another client
  thread posts paragraphs to the same server, in alternating idle and busy phases;
- ``in-process``: a folder of files of 20 paragraphs indexed file by file in this process,
  then /ask latency in-process while another thread ingests;
- ``large``: one more document into an index of ``--large`` passages (synthetic vectors and
  texts, real encoders for the new document): wall time of ``add_document`` and the growth
  of the process's resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from benchmark import Connection, Server  # noqa: E402
from reporting import load_average  # noqa: E402

from qa.config import DEFAULT_MODEL, DEFAULT_MODELS_DIR, Settings  # noqa: E402
from qa.corpus import corpus_files  # noqa: E402
from qa.documents.passages import Passage, split_document  # noqa: E402
from qa.documents.readers import read_document_file  # noqa: E402
from qa.index.passage_index import Document, Embedding, NewPassage  # noqa: E402
from qa.library import Library, embedding_input, embedding_key  # noqa: E402
from qa.tools.eval import load_benchmark, percentile  # noqa: E402
from qa.vectors.embedder import load_encoders  # noqa: E402

EVALS = ROOT.parent / "shared" / "evals"
QUESTIONS = ["城市管理应该像什么一样精细？", "和顺县委书记是谁？", "Who is the curator of the Gao Junyu memorial?"]
PARTS = ("http", "add", "search", "in-process", "large")
ADDED = re.compile(r"\((\d+) passages\)")


def resident_mb() -> float:
    """Current resident set size of this process, in MB (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def public_paragraphs() -> list[str]:
    """The distinct paragraphs of the public benchmarks, cmrc2018-dev first (Chinese, ~500 characters each)."""
    texts = [row["text"] for name in ("cmrc2018-dev", "drcd-dev") for row in load_benchmark(EVALS / name).documents]
    return list(dict.fromkeys(texts))


def write_paragraph_folder(folder: Path, texts: list[str], per_file: int = 20) -> int:
    """Chinese text files of ``per_file`` paragraphs each."""
    folder.mkdir(parents=True)
    for start in range(0, len(texts), per_file):
        (folder / f"part-{start // per_file:04d}.txt").write_text("\n\n".join(texts[start : start + per_file]))
    return len(texts)


def passage_inputs(text: str, document_id: str, title: str | None = None) -> list[str]:
    """What the models embed for a document: its passages as the library splits them, as it feeds them."""
    budget = Settings().budgets().max_document_passages
    return [embedding_input(passage) for passage in split_document(text, document_id, title, max_passages=budget)]


class TorchPassages:
    """The reference: e5 by sentence-transformers + torch fp32 in this process (passage prompt, default batch size)."""

    def __init__(self) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        from qa.tools.bundled_model import ensure_bundled_model
        from qa.vectors.embedder import locate_model

        self.torch = torch
        folder = ensure_bundled_model(Path(locate_model(DEFAULT_MODEL, DEFAULT_MODELS_DIR)), progress=False)
        self.model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        self.threads = sorted({1, os.cpu_count() or 1})
        for threads in self.threads:  # warm-up
            self.seconds(["passage warm-up 预热"] * 4, threads)

    def seconds(self, texts: list[str], threads: int) -> float:
        self.torch.set_num_threads(threads)
        started = time.perf_counter()
        self.model.encode(texts, prompt_name="passage", normalize_embeddings=True, show_progress_bar=False)
        return time.perf_counter() - started


def torch_rates(passages: int, seconds: dict[int, float]) -> dict:
    """Passages/s per torch thread count and the better of them."""
    rates = {
        f"torch_{threads}_threads_passages_per_s": round(passages / spent, 2) for threads, spent in seconds.items()
    }
    rates["torch_best_passages_per_s"] = max(rates.values())
    return rates


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=120) as response:
        return json.load(response)


def post_document(server: Server, document_id: str, text: str) -> dict:
    """POST one document; the stored document's body (a background job is followed until it is done)."""
    body, _ = server.post("/api/documents", {"id": document_id, "text": text})
    while "state" in body:  # 202: a job
        if body["state"] == "done":
            return body["result"]
        if body["state"] in ("failed", "cancelled"):
            raise RuntimeError(f"job {body['id']} {body['state']}: {body.get('error')}")
        time.sleep(0.05)
        body = get_json(f"{server.url}/api/jobs/{body['id']}")
    return body


def http_ingest(index_dir: Path, paragraphs: list[str], rounds: int, reference: TorchPassages) -> dict:
    """One paragraph per POST /api/documents against torch on the same passages, chunk by chunk."""
    server = Server(index_dir, "--corpus", "")
    try:
        post_document(server, "warm-up", "龙井茶产于杭州西湖一带，以色绿、香郁、味甘、形美著称。")
        stored = embedded = 0
        http_seconds = 0.0
        torch_seconds = dict.fromkeys(reference.threads, 0.0)
        per_round = []
        size = -(-len(paragraphs) // rounds)
        for number, start in enumerate(range(0, len(paragraphs), size)):
            chunk = [(f"http-{start + offset:05d}", text)
                     for offset, text in enumerate(paragraphs[start : start + size])]
            began = time.perf_counter()
            bodies = [post_document(server, document_id, text) for document_id, text in chunk]
            spent = time.perf_counter() - began
            texts = [passage for document_id, text in chunk for passage in passage_inputs(text, document_id)]
            passages = sum(body["passages"] for body in bodies)
            if passages != len(texts):
                raise RuntimeError(f"the service stored {passages} passages, the library's split makes {len(texts)}")
            torch_round = {}
            for threads in reference.threads[:: 1 if number % 2 == 0 else -1]:
                torch_round[threads] = reference.seconds(texts, threads)
                torch_seconds[threads] += torch_round[threads]
            stored += passages
            embedded += sum(body["embedded"] for body in bodies)
            http_seconds += spent
            http_rate = passages / spent
            best = max(passages / value for value in torch_round.values())
            per_round.append({"documents": len(chunk), "passages": passages, "http_passages_per_s": round(http_rate, 2),
                              "torch_best_passages_per_s": round(best, 2), "ratio": round(http_rate / best, 2)})
    finally:
        server.stop()
    result = {"documents": len(paragraphs), "passages": stored, "embedded": embedded,
              "http_seconds": round(http_seconds, 1), "http_passages_per_s": round(stored / http_seconds, 2),
              **torch_rates(stored, torch_seconds)}
    result["http_over_torch"] = round(result["http_passages_per_s"] / result["torch_best_passages_per_s"], 2)
    result["rounds"] = per_round
    return result


def run_add(folder: Path, index_dir: Path) -> tuple[int, float]:
    """(passages stored, wall seconds) of one ``python -m qa add FOLDER`` into a fresh index."""
    began = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "qa", "add", str(folder), "--index-dir", str(index_dir)],
        cwd=ROOT, capture_output=True, text=True,
    )
    spent = time.perf_counter() - began
    match = ADDED.search(run.stdout)
    if run.returncode != 0 or match is None:
        raise RuntimeError(f"qa add failed ({run.returncode}):\n{run.stdout}\n{run.stderr[-2000:]}")
    return int(match.group(1)), spent


def cli_add(scratch: Path, paragraphs: list[str], reference: TorchPassages) -> dict:
    """``python -m qa add FOLDER`` (one file per paragraph) between torch at 1 thread and at all cores.

    Its start-up (imports, models, opening the index) is measured apart, by a ``qa add`` of one
    short file, and reported beside the rate.
    """
    folder = scratch / "add-folder"
    write_paragraph_folder(folder, paragraphs, per_file=1)
    write_paragraph_folder(scratch / "add-one", ["龙井茶产于杭州西湖一带，以色绿、香郁、味甘、形美著称。"])
    _, start_up = run_add(scratch / "add-one", scratch / "add-one-index")
    texts = []
    for path, document_id in corpus_files([folder]):
        text, title = read_document_file(path)
        texts.extend(passage_inputs(text, document_id, title))
    torch_seconds = {reference.threads[0]: reference.seconds(texts, reference.threads[0])}
    passages, spent = run_add(folder, scratch / "add-index")
    for threads in reference.threads[1:]:
        torch_seconds[threads] = reference.seconds(texts, threads)
    if passages != len(texts):
        raise RuntimeError(f"qa add stored {passages} passages, the library's split makes {len(texts)}")
    result = {"documents": len(paragraphs), "passages": passages, "seconds": round(spent, 1),
              "add_passages_per_s": round(passages / spent, 2), **torch_rates(passages, torch_seconds)}
    result["add_over_torch"] = round(result["add_passages_per_s"] / result["torch_best_passages_per_s"], 2)
    result["start_up_s"] = round(start_up, 1)  # qa add of one short file
    result["add_passages_per_s_less_start_up"] = round(passages / max(spent - start_up, 1e-9), 2)
    return result


def search_during_http_ingest(index_dir: Path, paragraphs: list[str], rounds: int, phase_seconds: float) -> dict:
    """POST /api/ask p50/p95 idle against while another client posts documents, in alternating phases."""
    questions = [question.question for question in load_benchmark(ROOT / "evals" / "bundled-page").questions]
    server = Server(index_dir, "--question-cache", "0")  # the bundled page, every question embedded
    timings: dict[str, list[float]] = {"idle": [], "busy": []}
    errors = {"idle": 0, "busy": 0}
    pool = iter(enumerate(paragraphs))
    ingested = {"documents": 0, "passages": 0, "seconds": 0.0}
    position = 0
    try:
        connection = Connection(server.url)
        for question in questions[:3]:  # warm-up
            connection.ask(question)

        def ingest(stop: threading.Event) -> None:
            began = time.perf_counter()
            while not stop.is_set() and (item := next(pool, None)) is not None:
                number, text = item
                body = post_document(server, f"busy-{number:05d}", text)
                ingested["documents"] += 1
                ingested["passages"] += body["passages"]
            ingested["seconds"] += time.perf_counter() - began

        def ask_for(phase: str) -> None:
            nonlocal position
            until = time.perf_counter() + phase_seconds
            while time.perf_counter() < until:
                status, elapsed = connection.ask(questions[position % len(questions)])
                position += 1
                if status == 200:
                    timings[phase].append(elapsed)
                else:
                    errors[phase] += 1

        for _ in range(rounds):
            ask_for("idle")
            stop = threading.Event()
            writer = threading.Thread(target=ingest, args=(stop,))
            writer.start()
            ask_for("busy")
            stop.set()
            writer.join()
    finally:
        server.stop()
    summary: dict = {"questions": len(questions), "rounds": rounds, "phase_seconds": phase_seconds}
    for phase, values in timings.items():
        summary[phase] = {"asks": len(values), "errors": errors[phase], "p50_ms": round(statistics.median(values), 1),
                          "p95_ms": round(percentile(values, 0.95), 1)}
    summary["busy_over_idle_p50"] = round(summary["busy"]["p50_ms"] / summary["idle"]["p50_ms"], 2)
    summary["busy_over_idle_p95"] = round(summary["busy"]["p95_ms"] / summary["idle"]["p95_ms"], 2)
    summary["ingest_while_busy"] = {**ingested, "seconds": round(ingested["seconds"], 1),
                                    "passages_per_s": round(ingested["passages"] / max(ingested["seconds"], 1e-9), 2)}
    if ingested["documents"] == len(paragraphs):
        summary["ingest_while_busy"]["ran_out_of_paragraphs"] = True
    return summary


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
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated parts to run, of {', '.join(PARTS)} (default: all)")
    parser.add_argument("--http-paragraphs", type=int, default=300, help="http: paragraphs posted, one per request")
    parser.add_argument("--http-rounds", type=int, default=6, help="http: chunks, each followed by torch on it")
    parser.add_argument("--add-paragraphs", type=int, default=300, help="add: paragraphs (files) for qa add")
    parser.add_argument("--search-rounds", type=int, default=3, help="search: idle + busy phase pairs")
    parser.add_argument("--phase-seconds", type=float, default=20.0, help="search: seconds of each phase")
    parser.add_argument("--paragraphs", type=int, default=1000, help="in-process: paragraphs indexed")
    parser.add_argument("--large", type=int, default=100_000, help="large: passages in the large index")
    parser.add_argument("--json", type=Path, help="also write the results here")
    arguments = parser.parse_args()
    parts = [part.strip() for part in arguments.parts.split(",") if part.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    paragraphs = public_paragraphs()
    # disjoint slices, so no part finds vectors another part already stored
    http_texts = paragraphs[: arguments.http_paragraphs]
    add_texts = paragraphs[len(http_texts) : len(http_texts) + arguments.add_paragraphs]
    busy_texts = paragraphs[len(http_texts) + len(add_texts) :]
    results: dict = {"cpu_count": os.cpu_count(), "parts": parts, "load_before": load_average()}
    reference = TorchPassages() if {"http", "add"} & set(parts) else None
    encoders = load_encoders(Settings(), progress=False) if {"in-process", "large"} & set(parts) else None
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for part in parts:
            load = {"load_before": load_average()}
            if part == "http":
                results[part] = http_ingest(scratch / "http-index", http_texts, arguments.http_rounds, reference)
            elif part == "add":
                results[part] = cli_add(scratch, add_texts, reference)
            elif part == "search":
                results[part] = search_during_http_ingest(
                    scratch / "search-index", busy_texts, arguments.search_rounds, arguments.phase_seconds
                )
            elif part == "in-process":
                folder = scratch / "paragraphs"
                library = Library(scratch / "ingest-index", encoders[0], crosslingual=encoders[1], progress=False)
                page = (ROOT / "data" / "shanxi-daily-2025-07-page.txt").read_text(encoding="utf-8")
                library.add_document(page, "page")
                results[part] = {
                    "paragraphs": write_paragraph_folder(folder, paragraphs[: arguments.paragraphs]),
                    "ingest": ingest_throughput(library, folder),
                    "search_during_ingest": latency_during_ingest(library, folder),
                }
                library.close()
            elif part == "large":
                results[part] = add_to_large_index(scratch / "large-index", arguments.large, encoders)
            results[part] = {**load, **results[part], "load_after": load_average()}
    results["load_after"] = load_average()
    print(json.dumps(results, indent=2, ensure_ascii=False))
    if arguments.json:
        arguments.json.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
